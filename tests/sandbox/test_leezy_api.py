"""The Leezy simulator's meetings API, auth, rate limits and faults, over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.leezy import DEFAULT_TOKEN, LeezyState
from bookingsync.sandbox.leezy.records import SCOPE_MEETINGS

from .conftest import START, Clock, Served

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
ATTRIBUTES = {
    "chatbot_id",
    "conversation_id",
    "title",
    "description",
    "start_time",
    "end_time",
    "timezone",
    "attendee",
    "status",
    "meeting_url",
    "meeting_provider",
    "cancelled_at",
    "cancelled_reason",
    "created_at",
    "updated_at",
}


def book(state: LeezyState, n: int = 0, **kwargs: object) -> str:
    start = START + timedelta(days=1, hours=n)
    return state.book(
        f"Meeting {n}",
        start,
        start + timedelta(minutes=30),
        "Europe/Berlin",
        f"person{n}@example.com",
        **kwargs,
    )  # type: ignore[arg-type]


def listing(sandbox: Served, **params: object) -> httpx.Response:
    return sandbox.client.get("/api/v1/meetings", params=params, headers=AUTH)


def test_envelope_matches_the_documented_shape(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    meeting_id = book(
        state,
        attendee_name="Lisa Thompson",
        phone="+1-555-0199",
        updated_at=START.replace(microsecond=123456),
    )
    body = listing(leezy_sandbox).json()
    assert set(body) == {"data", "meta"}
    assert body["meta"] == {
        "api_version": "2024-01-01",
        "total": 1,
        "limit": 20,
        "offset": 0,
        "has_more": False,
        "count": 1,
    }
    [record] = body["data"]
    assert record["id"] == meeting_id and meeting_id.startswith("meeting_")
    assert record["type"] == "meeting"
    attributes = record["attributes"]
    assert set(attributes) == ATTRIBUTES
    assert attributes["attendee"] == {
        "name": "Lisa Thompson",
        "email": "person0@example.com",
        "phone": "+1-555-0199",
    }
    assert attributes["start_time"] == "2030-05-07T12:00:00Z"
    assert attributes["updated_at"] == "2030-05-06T12:00:00.123456Z"
    assert attributes["cancelled_at"] is None and attributes["status"] == "scheduled"


def test_pages_with_limit_and_offset_in_updated_at_then_id_order(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    tie = START + timedelta(minutes=1)
    ids = [book(state, n, updated_at=tie if n < 3 else START + timedelta(minutes=n)) for n in range(5)]
    expected = sorted(ids[:3]) + ids[3:]
    seen, metas = [], []
    for offset in (0, 2, 4):
        body = listing(leezy_sandbox, limit=2, offset=offset).json()
        seen += [r["id"] for r in body["data"]]
        metas.append(body["meta"])
    assert seen == expected
    assert [(m["total"], m["count"], m["has_more"], m["offset"], m["limit"]) for m in metas] == [
        (5, 2, True, 0, 2),
        (5, 2, True, 2, 2),
        (5, 1, False, 4, 2),
    ]


def test_default_limit_is_twenty(leezy_sandbox: Served) -> None:
    for n in range(25):
        book(leezy_sandbox.state, n)  # type: ignore[arg-type]
    meta = listing(leezy_sandbox).json()["meta"]
    assert (meta["count"], meta["limit"], meta["total"], meta["has_more"]) == (20, 20, 25, True)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": -1},
        {"since": "yesterday"},
        {"upcoming": "maybe"},
    ],
)
def test_invalid_parameters_answer_400_invalid_request(
    leezy_sandbox: Served, params: dict[str, object]
) -> None:
    response = listing(leezy_sandbox, **params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"]


def test_since_is_strictly_after(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    t1, t2 = START, START + timedelta(microseconds=500)
    first = book(state, 0, updated_at=t1)
    tied = {book(state, 1, updated_at=t2), book(state, 2, updated_at=t2)}

    def ids(since: str) -> set[str]:
        return {r["id"] for r in listing(leezy_sandbox, since=since).json()["data"]}

    assert ids("2030-05-06T12:00:00Z") == tied
    assert ids("2030-05-06T12:00:00.000500Z") == set()
    assert ids("2030-05-06T11:59:59.999999Z") == tied | {first}


def test_filters_by_status_chatbot_and_upcoming(leezy_sandbox: Served, clock: Clock) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    past = state.book("Past", START - timedelta(hours=2), START - timedelta(hours=1), "UTC", "p@example.com")
    other = book(state, 1, chatbot_id="chatbot_other")
    cancelled = book(state, 2)
    state.cancel(cancelled, reason="no longer needed")

    def ids(**params: object) -> set[str]:
        return {r["id"] for r in listing(leezy_sandbox, **params).json()["data"]}

    assert ids(status="cancelled") == {cancelled}
    assert ids(chatbot_id="chatbot_other") == {other}
    assert ids(upcoming="true") == {other, cancelled}
    assert ids(upcoming="false") == {past, other, cancelled}
    record = listing(leezy_sandbox, status="cancelled").json()["data"][0]["attributes"]
    assert record["cancelled_reason"] == "no longer needed"
    assert record["cancelled_at"] == "2030-05-06T12:00:00Z"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-token"}]
)
def test_missing_or_invalid_token_is_401(leezy_sandbox: Served, headers: dict[str, str]) -> None:
    response = leezy_sandbox.client.get("/api/v1/meetings", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_token_without_meetings_scope_is_403(leezy_sandbox: Served) -> None:
    leezy_sandbox.state.add_token("lzy_at_leads", ["leads:read"])  # type: ignore[attr-defined]
    response = leezy_sandbox.client.get("/api/v1/meetings", headers={"Authorization": "Bearer lzy_at_leads"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_a_token_added_over_the_control_api_carries_its_scopes(leezy_sandbox: Served) -> None:
    control = leezy_sandbox.client
    added = control.post("/_sandbox/tokens", json={"token": "lzy_at_new", "scopes": ["a:b", SCOPE_MEETINGS]})
    assert (added.status_code, added.json()) == (
        201,
        {"token": "lzy_at_new", "scopes": ["a:b", SCOPE_MEETINGS]},
    )
    assert control.get("/api/v1/meetings", headers={"Authorization": "Bearer lzy_at_new"}).status_code == 200
    control.post("/_sandbox/tokens", json={"token": "lzy_at_hooks", "scopes": ["webhooks:manage"]})
    assert (
        control.get("/api/v1/meetings", headers={"Authorization": "Bearer lzy_at_hooks"}).status_code == 403
    )
    assert control.post("/_sandbox/tokens", json={"token": "lzy_at_none"}).status_code == 422


RATE_LIMIT_BODY = {
    "error": "rate_limit_exceeded",
    "error_description": "Too many requests. Please retry after 60 seconds.",
}


def test_injected_429_with_and_without_retry_after(leezy_sandbox: Served) -> None:
    control = leezy_sandbox.client
    control.post("/_sandbox/faults", json={"kind": "429"}).raise_for_status()
    control.post("/_sandbox/faults", json={"kind": "429", "retry_after": 7}).raise_for_status()
    plain, with_header, normal = (listing(leezy_sandbox) for _ in range(3))
    assert (plain.status_code, plain.json()) == (429, RATE_LIMIT_BODY)
    assert "retry-after" not in plain.headers
    assert (with_header.status_code, with_header.headers["retry-after"]) == (429, "7")
    assert with_header.json() == RATE_LIMIT_BODY
    assert normal.status_code == 200


def test_per_minute_rate_limit_per_token(leezy_sandbox: Served, clock: Clock) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    state.rate_limit_per_minute = 2
    assert [listing(leezy_sandbox).status_code for _ in range(3)] == [200, 200, 429]
    leezy_sandbox.client.put("/_sandbox/settings", json={"retry_after_header": True})
    assert listing(leezy_sandbox).headers["retry-after"] == "60"
    clock.advance(minutes=1)
    assert listing(leezy_sandbox).status_code == 200


def test_injected_500_and_delay(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    state.add_fault(Fault(kind="500"))
    assert listing(leezy_sandbox).status_code == 500
    state.add_fault(Fault(kind="delay", seconds=1.0))
    with pytest.raises(httpx.ReadTimeout):
        leezy_sandbox.client.get("/api/v1/meetings", headers=AUTH, timeout=0.2)
    assert listing(leezy_sandbox).status_code == 200


@pytest.mark.parametrize("variant", ["bad_start_time", "missing_attendee"])
def test_malformed_fault_adds_one_broken_record(leezy_sandbox: Served, variant: str) -> None:
    good = book(leezy_sandbox.state)  # type: ignore[arg-type]
    leezy_sandbox.client.post("/_sandbox/faults", json={"kind": "malformed", "variant": variant})
    body = listing(leezy_sandbox).json()
    assert body["meta"]["count"] == 2 and body["data"][0]["id"] == good
    broken = body["data"][1]["attributes"]
    if variant == "bad_start_time":
        assert broken["start_time"] == "not-a-date"
    else:
        assert "attendee" not in broken
    assert len(listing(leezy_sandbox).json()["data"]) == 1  # consumed


def test_update_between_pages_moves_record_to_the_end(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    a, b, c = (book(state, n, updated_at=START - timedelta(seconds=10 - n)) for n in range(3))
    response = leezy_sandbox.client.post(
        "/_sandbox/faults",
        json={
            "kind": "mutate",
            "offset": 0,
            "action": {"op": "update", "id": a, "fields": {"title": "Renamed"}},
        },
    )
    assert response.status_code == 201
    first = listing(leezy_sandbox, limit=1, offset=0).json()["data"]
    second = listing(leezy_sandbox, limit=1, offset=1).json()["data"]
    third = listing(leezy_sandbox, limit=1, offset=2).json()["data"]
    assert [r["id"] for r in first + second + third] == [a, c, a]  # b was skipped
    assert third[0]["attributes"]["title"] == "Renamed"
    assert b not in {r["id"] for r in first + second + third}


def test_request_log_records_client_requests_only(leezy_sandbox: Served) -> None:
    listing(leezy_sandbox, limit=5, since="2030-01-01T00:00:00Z")
    [entry] = leezy_sandbox.client.get("/_sandbox/requests").json()["requests"]
    assert entry["method"] == "GET" and entry["path"] == "/api/v1/meetings"
    assert entry["query"] == [["limit", "5"], ["since", "2030-01-01T00:00:00Z"]]
    assert entry["headers"]["authorization"] == AUTH["Authorization"]
    assert entry["status"] == 200


def test_control_api_drives_the_meeting_lifecycle(leezy_sandbox: Served) -> None:
    control = leezy_sandbox.client
    created = control.post(
        "/_sandbox/meetings",
        json={
            "title": "Demo",
            "start": "2030-06-01T10:00:00Z",
            "end": "2030-06-01T10:30:00Z",
            "timezone": "Europe/Berlin",
            "attendee_email": "x@example.com",
            "updated_at": "2030-05-06T12:00:00.000001Z",
        },
    )
    assert created.status_code == 201
    meeting_id = created.json()["id"]
    moved = control.post(
        f"/_sandbox/meetings/{meeting_id}/reschedule",
        json={"start": "2030-06-02T10:00:00Z", "end": "2030-06-02T11:00:00Z"},
    )
    assert moved.json()["meeting"]["attributes"]["end_time"] == "2030-06-02T11:00:00Z"
    patched = control.patch(f"/_sandbox/meetings/{meeting_id}", json={"status": "confirmed"})
    assert patched.json()["meeting"]["attributes"]["status"] == "confirmed"
    control.post(f"/_sandbox/meetings/{meeting_id}/complete", json={}).raise_for_status()
    [record] = listing(leezy_sandbox).json()["data"]
    assert record["attributes"]["status"] == "completed"
    assert record["attributes"]["start_time"] == "2030-06-02T10:00:00Z"
    missing = control.post("/_sandbox/meetings/meeting_nope/cancel", json={})
    assert missing.status_code == 404 and "meeting_nope" in missing.json()["error"]
    assert control.patch(f"/_sandbox/meetings/{meeting_id}", json={"colour": "red"}).status_code == 400


def test_after_page_hook_runs_once_between_pages(leezy_sandbox: Served) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    first = book(state, 0, updated_at=START - timedelta(minutes=1))
    state.after_page(0, lambda: state.cancel(first))
    page = listing(leezy_sandbox, offset=0).json()["data"]
    assert page[0]["attributes"]["status"] == "scheduled"  # the page was computed before
    again = listing(leezy_sandbox, offset=0).json()["data"]
    assert again[0]["attributes"]["status"] == "cancelled"
    assert state.faults.pending() == []
