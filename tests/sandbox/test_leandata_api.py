"""The LeanData BookIt simulator over real HTTP: listing, single meeting, PATCH/DELETE, auth."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from bookingsync.sandbox.leandata import LeanDataState, to_epoch_ms

from .conftest import START, Served

PROSPECT = "pat.prospect@example.com"
NOW_MS = to_epoch_ms(START)
HOUR_MS = 3_600_000


def book(state: LeanDataState, hours_from_now: float, email: str = PROSPECT) -> str:
    start = START + timedelta(hours=hours_from_now)
    return state.book(
        "Intro Call",
        start,
        start + timedelta(minutes=30),
        email,
        "rep@example.com",
        guest_emails=["guest@example.com"],
    )


def listing(sandbox: Served, **params: object) -> httpx.Response:
    return sandbox.client.get("/v1/meetings", params={"prospectEmail": PROSPECT, **params})


def test_listing_is_an_array_of_the_openapi_shape(leandata_sandbox: Served) -> None:
    meeting_id = book(leandata_sandbox.state, 2)  # type: ignore[arg-type]
    response = listing(leandata_sandbox)
    assert response.status_code == 200 and response.headers["x-amzn-requestid"]
    [item] = response.json()
    assert len(meeting_id) == 52
    assert item == {
        "bookIt": {"status": "scheduled"},
        "calendarEvent": {
            "id": meeting_id,
            "title": "Intro Call",
            "status": "confirmed",
            "scheduledTime": {
                "start_time": NOW_MS + 2 * HOUR_MS,
                "end_time": NOW_MS + 2 * HOUR_MS + 30 * 60_000,
            },
            "organizer": {"email": "rep@example.com"},
            "attendees": [
                {"email": "rep@example.com", "responseStatus": "accepted", "organizer": True, "self": True},
                {"email": PROSPECT, "responseStatus": "needsAction"},
                {"email": "guest@example.com", "responseStatus": "needsAction"},
            ],
        },
    }


def test_prospect_email_is_required(leandata_sandbox: Served) -> None:
    response = leandata_sandbox.client.get("/v1/meetings")
    assert response.status_code == 400
    assert response.json() == {"error": "Validation Error: Missing required parameter: prospectEmail"}


def test_default_range_starts_now_and_time_filters_take_iso_or_epoch_ms(
    leandata_sandbox: Served,
) -> None:
    state: LeanDataState = leandata_sandbox.state  # type: ignore[assignment]
    past, soon, later = book(state, -48), book(state, 1), book(state, 30)
    book(state, 1, email="someone.else@example.com")

    def ids(**params: object) -> list[str]:
        return [m["calendarEvent"]["id"] for m in listing(leandata_sandbox, **params).json()]

    assert ids() == [soon, later]
    assert ids(start="2030-05-01T00:00:00.000Z") == [past, soon, later]
    assert ids(start=NOW_MS - 72 * HOUR_MS, end=NOW_MS + 2 * HOUR_MS) == [past, soon]
    assert ids(start="2030-05-06T13:00:00Z", end=str(NOW_MS + HOUR_MS)) == [soon]  # inclusive
    assert ids(end="2030-05-06T14:00:00Z") == [soon]
    assert listing(leandata_sandbox, start="last week").status_code == 400


def test_status_filter_and_canceled_meetings_listed(leandata_sandbox: Served) -> None:
    state: LeanDataState = leandata_sandbox.state  # type: ignore[assignment]
    kept, canceled = book(state, 1), book(state, 2)
    state.cancel(canceled)
    everything = listing(leandata_sandbox).json()
    assert [(m["bookIt"]["status"], m["calendarEvent"]["status"]) for m in everything] == [
        ("scheduled", "confirmed"),
        ("canceled", "canceled"),
    ]
    assert [m["calendarEvent"]["id"] for m in listing(leandata_sandbox, status="scheduled").json()] == [kept]
    assert listing(leandata_sandbox, status="deleted").status_code == 400


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}])
def test_gateway_401_envelope(leandata_sandbox: Served, headers: dict[str, str]) -> None:
    response = httpx.get(
        f"{leandata_sandbox.url}/v1/meetings", params={"prospectEmail": PROSPECT}, headers=headers
    )
    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
    assert response.headers["x-amzn-errortype"] == "UnauthorizedException"


def test_single_meeting_404_patch_and_delete(leandata_sandbox: Served) -> None:
    state: LeanDataState = leandata_sandbox.state  # type: ignore[assignment]
    client = leandata_sandbox.client
    meeting_id = book(state, 3)
    missing = client.get("/v1/meeting/" + "x" * 52)
    assert (missing.status_code, missing.json()) == (404, {"error": "Meeting not found"})

    new_start = NOW_MS + 5 * HOUR_MS
    patched = client.patch(
        f"/v1/meeting/{meeting_id}",
        json={
            "scheduledTime": {
                "start_time": new_start,
                "end_time": new_start + 900_000,
                "timezone": "America/Los_Angeles",
            }
        },
    )
    assert patched.json() == {"meetingId": meeting_id, "organizerEmail": "rep@example.com"}
    after = client.get(f"/v1/meeting/{meeting_id}").json()
    assert after["bookIt"]["status"] == "rescheduled"
    assert after["calendarEvent"]["scheduledTime"] == {
        "start_time": new_start,
        "end_time": new_start + 900_000,
    }
    bad = client.patch(f"/v1/meeting/{meeting_id}", json={"start_time": new_start})
    assert bad.status_code == 400 and bad.json()["error"].startswith("Validation Error:")

    deleted = client.delete(f"/v1/meeting/{meeting_id}")
    assert (deleted.status_code, deleted.content) == (200, b"")
    after = client.get(f"/v1/meeting/{meeting_id}").json()
    assert (after["bookIt"]["status"], after["calendarEvent"]["status"]) == ("canceled", "canceled")
    assert client.delete(f"/v1/meeting/{meeting_id}").status_code == 200
    assert client.delete("/v1/meeting/" + "y" * 52).status_code == 404


def test_flat_shape_flag(leandata_sandbox: Served) -> None:
    meeting_id = book(leandata_sandbox.state, 1)  # type: ignore[arg-type]
    settings = leandata_sandbox.client.put("/_sandbox/settings", json={"flat_shape": True})
    assert settings.json()["flat_shape"] is True
    [item] = listing(leandata_sandbox).json()
    assert set(item) == {"id", "title", "status", "scheduledTime", "organizer_email", "attendees"}
    assert (item["id"], item["status"], item["organizer_email"]) == (
        meeting_id,
        "confirmed",
        "rep@example.com",
    )
    assert leandata_sandbox.client.get(f"/v1/meeting/{meeting_id}").json()["id"] == meeting_id


def test_removed_meeting_vanishes(leandata_sandbox: Served) -> None:
    state: LeanDataState = leandata_sandbox.state  # type: ignore[assignment]
    gone, kept = book(state, 1), book(state, 2)
    response = leandata_sandbox.client.post(
        "/_sandbox/faults", json={"kind": "mutate", "offset": 0, "action": {"op": "remove", "id": gone}}
    )
    assert response.status_code == 201
    assert len(listing(leandata_sandbox).json()) == 2  # computed before the removal
    assert [m["calendarEvent"]["id"] for m in listing(leandata_sandbox).json()] == [kept]
    assert leandata_sandbox.client.get(f"/v1/meeting/{gone}").status_code == 404
    assert leandata_sandbox.client.delete(f"/_sandbox/meetings/{kept}").status_code == 204
    assert listing(leandata_sandbox).json() == []


def test_faults_use_the_gateway_envelope(leandata_sandbox: Served) -> None:
    control = leandata_sandbox.client
    control.post("/_sandbox/faults", json={"kind": "429"}).raise_for_status()
    control.post("/_sandbox/faults", json={"kind": "500"}).raise_for_status()
    throttled, failed = listing(leandata_sandbox), listing(leandata_sandbox)
    assert (throttled.status_code, throttled.json()) == (429, {"message": "Too Many Requests"})
    assert "retry-after" not in throttled.headers
    assert failed.status_code == 500 and "message" in failed.json()
    control.post("/_sandbox/faults", json={"kind": "delay", "seconds": 1}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        control.get("/v1/meetings", params={"prospectEmail": PROSPECT}, timeout=0.2)


@pytest.mark.parametrize("variant", ["bad_start_time", "missing_calendar_event"])
def test_malformed_fault(leandata_sandbox: Served, variant: str) -> None:
    book(leandata_sandbox.state, 1)  # type: ignore[arg-type]
    leandata_sandbox.client.post("/_sandbox/faults", json={"kind": "malformed", "variant": variant})
    good, broken = listing(leandata_sandbox).json()
    assert "calendarEvent" in good
    if variant == "bad_start_time":
        assert broken["calendarEvent"]["scheduledTime"]["start_time"] == "not-a-number"
    else:
        assert "calendarEvent" not in broken
    assert len(listing(leandata_sandbox).json()) == 1


def test_control_api_books_reschedules_and_cancels(leandata_sandbox: Served) -> None:
    control = leandata_sandbox.client
    created = control.post(
        "/_sandbox/meetings",
        json={
            "title": "Demo",
            "start": "2030-05-07T10:00:00Z",
            "end": NOW_MS + 23 * HOUR_MS,
            "prospect_email": PROSPECT,
        },
    )
    assert created.status_code == 201
    meeting_id = created.json()["id"]
    moved = control.post(
        f"/_sandbox/meetings/{meeting_id}/reschedule",
        json={"start": NOW_MS + 24 * HOUR_MS, "end": NOW_MS + 25 * HOUR_MS},
    )
    assert moved.json()["meeting"]["bookIt"]["status"] == "rescheduled"
    canceled = control.post(f"/_sandbox/meetings/{meeting_id}/cancel")
    assert canceled.json()["meeting"]["calendarEvent"]["status"] == "canceled"
    assert control.post("/_sandbox/meetings/nope/cancel").status_code == 404
    assert control.get("/_sandbox/requests").json()["requests"] == []  # control calls unlogged
