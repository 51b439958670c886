"""The RocketLead Connect simulator over real HTTP: auth and scopes, lookups, availability,
booking with its transactional recheck and slot races, hard delete, faults, control API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bookingsync.sandbox import rocketlead
from bookingsync.sandbox.rocketlead import (
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_RESOURCE_IDS,
    DEFAULT_TOKEN,
    NOT_AVAILABLE,
    RocketLeadState,
)
from bookingsync.sandbox.server import serve_app

from .conftest import START, Clock, Served

ALEX, JAMIE = DEFAULT_RESOURCE_IDS
SLOT_KEYS = {
    "resourceId",
    "resourceName",
    "resourceColor",
    "resourceSlotId",
    "appointmentTypeId",
    "startDateTime",
    "endDateTime",
    "maxParallelBookings",
    "currentBookings",
    "available",
}


@pytest.fixture
def rl(clock: Clock) -> Iterator[Served]:
    state = RocketLeadState(now=clock)
    server = serve_app(rocketlead.create_app(state))
    with httpx.Client(
        base_url=server.url, timeout=5.0, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    ) as client:
        yield Served(state, server.url, client)
    server.stop()


def st(sandbox: Served) -> RocketLeadState:
    assert isinstance(sandbox.state, RocketLeadState)
    return sandbox.state


def iso(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def availability(sandbox: Served, start: float = 1, end: float = 3, **params: Any) -> httpx.Response:
    return sandbox.client.get(
        "/connect/availability/",
        params={
            "calendarId": DEFAULT_CALENDAR_ID,
            "appointmentTypeId": DEFAULT_APPOINTMENT_TYPE_ID,
            "start": iso(start),
            "end": iso(end),
            **params,
        },
    )


def booking_body(slot: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "calendarId": DEFAULT_CALENDAR_ID,
        "resourceId": slot["resourceId"],
        "appointmentTypeId": slot["appointmentTypeId"],
        "resourceSlotId": slot["resourceSlotId"],
        "startDateTime": slot["startDateTime"],
        "endDateTime": slot["endDateTime"],
        **extra,
    }


def book(sandbox: Served, slot: dict[str, Any], **extra: Any) -> httpx.Response:
    return sandbox.client.post("/connect/calendar_bookings/", json=booking_body(slot, **extra))


def first_slot(sandbox: Served, resource_id: str = ALEX) -> dict[str, Any]:
    return next(s for s in availability(sandbox).json()["data"] if s["resourceId"] == resource_id)


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Token " + DEFAULT_TOKEN, "Bearer lzy_at_x", "Bearer rocketlead_live_" + "0" * 64],
)
def test_401_for_missing_foreign_or_unknown_tokens(rl: Served, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{rl.url}/connect/calendar/", headers=headers)
    assert (response.status_code, response.json()) == (401, {"statusCode": 401, "message": "Unauthorized"})


def test_scopes_are_a_ladder_and_403_names_the_missing_scope(rl: Served) -> None:
    state = st(rl)
    reader, writer = state.new_token(["read"]), state.new_token(["write"])
    assert re.fullmatch(r"rocketlead_live_[0-9a-f]{64}", reader)
    assert re.fullmatch(r"rocketlead_live_[0-9a-f]{64}", DEFAULT_TOKEN)
    slot = first_slot(rl)

    def call(method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{rl.url}{path}", headers={"Authorization": f"Bearer {token}"}, **kw)

    assert call("GET", "/connect/calendar/", reader).status_code == 200
    assert call("HEAD", "/connect/calendar/", reader).status_code == 200
    denied = call("POST", "/connect/calendar_bookings/", reader, json=booking_body(slot))
    assert denied.status_code == 403
    assert denied.json() == {
        "statusCode": 403,
        "message": ("Forbidden: this API token lacks the write scope required for POST requests."),
    }
    made = call("POST", "/connect/calendar_bookings/", writer, json=booking_body(slot))
    assert made.status_code == 201  # write includes read's GETs too
    assert call("GET", "/connect/resources/", writer).status_code == 200
    refused = call("DELETE", f"/connect/calendar_bookings/{made.json()['id']}", writer)
    assert refused.status_code == 403 and "admin scope" in refused.json()["message"]
    assert len(state.bookings()) == 1
    assert state.token(writer).last_used_at == START  # type: ignore[union-attr]

    state.revoke_token(reader)
    assert call("GET", "/connect/calendar/", reader).status_code == 401
    expiring = state.new_token(["read"], expires_at=START + timedelta(minutes=5))
    assert call("GET", "/connect/calendar/", expiring).status_code == 200
    assert isinstance(state.now, Clock)
    state.now.advance(minutes=5)
    assert call("GET", "/connect/calendar/", expiring).status_code == 401


def test_control_api_adds_and_revokes_tokens(rl: Served) -> None:
    made = rl.client.post("/_sandbox/tokens", json={"scopes": ["read"]})
    assert made.status_code == 201
    token = made.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{rl.url}/connect/calendar/", headers=headers).status_code == 200
    assert httpx.delete(f"{rl.url}/connect/calendar_bookings/x", headers=headers).status_code == 403
    listed = rl.client.get("/_sandbox/tokens").json()["tokens"]
    assert {
        "token": token,
        "scopes": ["read"],
        "expires_at": None,
        "last_used_at": "2030-05-06T12:00:00.000Z",
        "revoked": False,
    } in listed
    assert rl.client.post("/_sandbox/tokens", json={"token": "plain", "scopes": ["read"]}).status_code == 400
    assert rl.client.delete(f"/_sandbox/tokens/{token}").status_code == 204
    assert httpx.get(f"{rl.url}/connect/calendar/", headers=headers).status_code == 401
    assert rl.client.delete("/_sandbox/tokens/rocketlead_nope").status_code == 404


def test_undocumented_routes_are_404_before_auth(rl: Served) -> None:
    listing = httpx.get(f"{rl.url}/connect/calendar_bookings/")
    assert listing.json() == {"statusCode": 404, "message": "Cannot GET /connect/calendar_bookings/"}
    patch = rl.client.patch("/connect/calendar_bookings/abc", json={})
    assert (patch.status_code, patch.json()["message"]) == (
        404,
        "Cannot PATCH /connect/calendar_bookings/abc",
    )


# -- lookups ------------------------------------------------------------------------------


def test_lookups_are_consistent(rl: Served) -> None:
    client = rl.client
    [calendar] = client.get("/connect/calendar/").json()
    assert calendar["id"] == DEFAULT_CALENDAR_ID and calendar["timezone"] == "Europe/Berlin"
    assert client.get(f"/connect/calendar/{DEFAULT_CALENDAR_ID}").json() == calendar
    assert client.get(f"/connect/calendar/{DEFAULT_CALENDAR_ID}/").json() == calendar
    missing = client.get("/connect/calendar/00000000-0000-4000-8000-000000000000")
    assert missing.json() == {"statusCode": 404, "message": "Calendar not found"}
    resources = client.get("/connect/resources").json()
    assert [r["id"] for r in resources] == [ALEX, JAMIE]
    assert all(r["maxParallelBookings"] == 1 for r in resources)
    [atype] = client.get("/connect/appointment_types/").json()
    assert (atype["id"], atype["bookingLength"], atype["bufferAfter"]) == (DEFAULT_APPOINTMENT_TYPE_ID, 30, 0)
    assert client.get(f"/connect/resources/{JAMIE}/").json()["name"] == "Jamie Novak"
    [table] = client.get("/connect/tables/").json()
    assert {s["name"] for s in table["leadStates"]} == {"New", "Meeting booked"}


# -- availability ---------------------------------------------------------------------------


def test_availability_shape_and_both_available_and_full_slots(rl: Served) -> None:
    state = st(rl)
    state.book(START + timedelta(hours=1), resource_id=ALEX)  # someone booked via the form
    response = availability(rl, 1, 2)
    assert response.status_code == 200
    body = response.json()
    assert body["meta"] == {
        "appointmentTypeName": "Intro Call",
        "defaultBookingLength": 30,
        "bufferAfter": 0,
        "dynamicLength": False,
    }
    data = body["data"]
    assert all(set(slot) == SLOT_KEYS for slot in data)
    assert [(s["startDateTime"], s["resourceName"], s["available"], s["currentBookings"]) for s in data] == [
        ("2030-05-06T13:00:00.000Z", "Alex Berger", False, 1),
        ("2030-05-06T13:00:00.000Z", "Jamie Novak", True, 0),
        ("2030-05-06T13:30:00.000Z", "Alex Berger", True, 0),
        ("2030-05-06T13:30:00.000Z", "Jamie Novak", True, 0),
    ]
    assert data[0]["endDateTime"] == "2030-05-06T13:30:00.000Z"
    assert data[0]["maxParallelBookings"] == 1 and data[0]["resourceColor"].startswith("#")
    assert data[0]["resourceSlotId"] == availability(rl, 1, 2).json()["data"][0]["resourceSlotId"]
    assert len({s["resourceSlotId"] for s in data}) == 4

    # The docs: full slots come back regardless; includeUnavailable does not filter them ...
    assert availability(rl, 1, 2, includeUnavailable="false").json()["data"] == data
    # ... unless the sandbox is switched to the other reading.
    rl.client.put("/_sandbox/settings", json={"include_unavailable_filters": True})
    filtered = availability(rl, 1, 2, includeUnavailable="false").json()["data"]
    assert [s["available"] for s in filtered] == [True, True, True]


def test_availability_grid_range_and_resource_filter(rl: Served) -> None:
    past_included = availability(rl, -2, 1.25).json()["data"]  # slots before now are not offered
    assert [s["startDateTime"] for s in past_included][::2] == [
        "2030-05-06T12:00:00.000Z",
        "2030-05-06T12:30:00.000Z",
    ]
    fifteen = availability(rl, 0.1, 1.5, stepLength=15, resourceId=JAMIE).json()["data"]
    assert [s["startDateTime"][11:16] for s in fifteen] == ["12:15", "12:30", "12:45", "13:00"]
    assert {s["resourceId"] for s in fifteen} == {JAMIE}
    rl.client.put("/_sandbox/settings", json={"step_minutes": 60, "booking_length": 45, "buffer_after": 15})
    hourly = availability(rl, 0, 3, resourceId=ALEX).json()
    assert [(s["startDateTime"][11:16], s["endDateTime"][11:16]) for s in hourly["data"]] == [
        ("12:00", "12:45"),
        ("13:00", "13:45"),
        ("14:00", "14:45"),
    ]
    assert hourly["meta"]["defaultBookingLength"] == 45 and hourly["meta"]["bufferAfter"] == 15


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"calendarId": None}, 400, "Validation failed: calendarId is required"),
        ({"appointmentTypeId": None}, 400, "Validation failed: appointmentTypeId is required"),
        ({"start": None}, 400, "Validation failed: start is required"),
        (
            {"start": "2030-05-06T13:00:00"},
            400,
            "Validation failed: start must be an ISO-8601 date-time with a UTC offset",
        ),
        ({"end": "2030-05-06T12:30:00Z"}, 400, "Validation failed: end must be after start"),
        (
            {"end": "2030-07-06T12:30:00Z"},
            400,
            "Validation failed: the range between start and end must not exceed 31 days",
        ),
        ({"stepLength": "0"}, 400, "Validation failed: stepLength must be an integer between 5 and 1440"),
        ({"includeUnavailable": "maybe"}, 400, "Validation failed: includeUnavailable must be a boolean"),
        ({"calendarId": "nope"}, 404, "Calendar not found"),
        ({"appointmentTypeId": "nope"}, 404, "Appointment type not found"),
        ({"resourceId": "nope"}, 404, "Resource not found"),
    ],
)
def test_availability_validation(rl: Served, params: dict[str, Any], status: int, message: str) -> None:
    query = {
        "calendarId": DEFAULT_CALENDAR_ID,
        "appointmentTypeId": DEFAULT_APPOINTMENT_TYPE_ID,
        "start": iso(1),
        "end": iso(2),
    } | params
    response = rl.client.get(
        "/connect/availability/", params={k: v for k, v in query.items() if v is not None}
    )
    assert response.json() == {"statusCode": status, "message": message}
    assert response.status_code == status


# -- booking ------------------------------------------------------------------------------------


def test_booking_happy_path_links_the_lead(rl: Served) -> None:
    lead = rl.client.post("/_sandbox/leads", json={"email": "pat@example.com", "first_name": "Pat"}).json()[
        "id"
    ]
    slot = first_slot(rl)
    response = book(rl, slot, entryId=lead, name="Intro with Pat")
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking == {
        "organizationId": rocketlead.ORGANIZATION_ID,
        "calendarId": DEFAULT_CALENDAR_ID,
        "tableEntryId": lead,
        "tableEntryData": {"firstName": {"value": "Pat"}, "email": {"value": "pat@example.com"}},
        "tableId": rocketlead.DEFAULT_TABLE_ID,
        "tableSchemaFields": booking["tableSchemaFields"],
        "resourceId": ALEX,
        "appointmentTypeId": DEFAULT_APPOINTMENT_TYPE_ID,
        "resourceSlotId": slot["resourceSlotId"],
        "id": booking["id"],
        "name": "Intro with Pat",
        "createdAt": "2030-05-06T12:00:00.000Z",
        "endDateTime": "2030-05-06T13:30:00.000Z",
        "startDateTime": "2030-05-06T13:00:00.000Z",
        "leadStateColor": "#3b82f6",
        "leadStateName": "New",
    }
    assert booking["tableSchemaFields"]["email"]["specialType"] == "email"
    assert re.fullmatch(r"[0-9a-f-]{36}", booking["id"])

    [listed] = rl.client.get("/_sandbox/bookings").json()["bookings"]
    assert listed == {"id": booking["id"], "source": "connect_api", "booking": booking}
    after = first_slot(rl)
    assert (after["currentBookings"], after["available"]) == (1, False)

    # tableEntryId is accepted too; without a lead or name the optional fields are absent.
    other = first_slot(rl, JAMIE)
    plain = book(rl, other, startDateTime="2030-05-06T15:00:00+02:00").json()
    assert plain["startDateTime"] == "2030-05-06T13:00:00.000Z"
    assert not {"tableEntryId", "name", "leadStateName"} & set(plain)
    assert (
        book(
            rl,
            first_slot(rl, JAMIE) | {"startDateTime": iso(1.5), "endDateTime": iso(2)},
            resourceSlotId=None,
            tableEntryId=lead,
        ).json()["tableEntryId"]
        == lead
    )


def test_slot_race_answers_the_documented_400(rl: Served) -> None:
    slot = first_slot(rl)
    armed = rl.client.post("/_sandbox/races", json={"start": slot["startDateTime"]})
    assert armed.status_code == 201 and len(armed.json()["races"]) == 1
    lost = book(rl, slot)
    assert (lost.status_code, lost.json()) == (400, {"statusCode": 400, "message": NOT_AVAILABLE})
    assert NOT_AVAILABLE == "The selected time slot is no longer available"
    [winner] = rl.client.get("/_sandbox/bookings").json()["bookings"]
    assert winner["source"] == "form_widget"
    assert rl.client.get("/_sandbox/races").json() == {"races": []}
    # The documented recovery: refetch, pick a fresh available slot, retry.
    fresh = next(s for s in availability(rl).json()["data"] if s["available"])
    assert fresh["resourceId"] == JAMIE and fresh["startDateTime"] == slot["startDateTime"]
    assert book(rl, fresh).status_code == 201


def test_race_via_mutate_fault_between_fetch_and_post(rl: Served) -> None:
    slot_start = iso(1)
    rl.client.post(
        "/_sandbox/faults",
        json={
            "kind": "mutate",
            "offset": 0,
            "action": {"op": "fill", "start": slot_start, "resource_id": ALEX},
        },
    ).raise_for_status()
    slot = first_slot(rl)
    assert slot["available"] is True  # computed before the form booking landed
    assert book(rl, slot).json()["message"] == NOT_AVAILABLE
    assert first_slot(rl)["available"] is False


def test_capacity_is_rechecked(rl: Served) -> None:
    resource = rl.client.patch(f"/_sandbox/resources/{ALEX}", json={"max_parallel_bookings": 2})
    assert resource.json()["maxParallelBookings"] == 2
    slot = first_slot(rl)
    assert slot["maxParallelBookings"] == 2
    assert book(rl, slot).status_code == 201
    half = first_slot(rl)
    assert (half["currentBookings"], half["available"]) == (1, True)
    assert book(rl, slot).status_code == 201
    full = book(rl, slot)
    assert (full.status_code, full.json()["message"]) == (400, NOT_AVAILABLE)
    assert len(st(rl).bookings()) == 2
    # An overlapping booking counts against a slot on a finer grid too.
    quarter = next(s for s in availability(rl, 1.25, 2, stepLength=15, resourceId=ALEX).json()["data"])
    assert (quarter["startDateTime"][11:16], quarter["currentBookings"]) == ("13:15", 2)
    filled = rl.client.post("/_sandbox/slots/fill", json={"start": iso(2)})
    assert len(filled.json()["bookings"]) == 2


def test_delete_is_hard(rl: Served) -> None:
    booking_id = book(rl, first_slot(rl)).json()["id"]
    deleted = rl.client.delete(f"/connect/calendar_bookings/{booking_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert rl.client.get("/_sandbox/bookings").json() == {"bookings": []}
    again = rl.client.delete(f"/connect/calendar_bookings/{booking_id}/")
    assert (again.status_code, again.json()) == (
        404,
        {"statusCode": 404, "message": "Calendar booking not found"},
    )
    assert first_slot(rl)["available"] is True
    form = st(rl).book(START + timedelta(hours=5), resource_id=JAMIE)
    assert rl.client.delete(f"/connect/calendar_bookings/{form.id}").status_code == 204


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"calendarId": None}, 400, "Validation failed: calendarId is required"),
        ({"startDateTime": None}, 400, "Validation failed: startDateTime is required"),
        ({"endDateTime": ""}, 400, "Validation failed: endDateTime is required"),
        ({"resourceId": None}, 400, "Validation failed: resourceId is required"),
        ({"appointmentTypeId": None}, 400, "Validation failed: appointmentTypeId is required"),
        ({"calendarId": 7}, 400, "Validation failed: calendarId must be a string"),
        (
            {"startDateTime": "tomorrow"},
            400,
            "Validation failed: startDateTime must be an ISO-8601 date-time with a UTC offset",
        ),
        (
            {"endDateTime": "2030-05-06T12:59:00Z"},
            400,
            "Validation failed: endDateTime must be after startDateTime",
        ),
        (
            {"endDateTime": "2030-05-06T14:00:00Z", "resourceSlotId": None},
            400,
            "Validation failed: endDateTime must be startDateTime plus the appointment type's "
            "bookingLength (30 minutes)",
        ),
        (
            {"resourceId": JAMIE},
            400,
            "Validation failed: resourceSlotId does not match resourceId, startDateTime and endDateTime",
        ),
        (
            {"entryId": "a", "tableEntryId": "b"},
            400,
            "Validation failed: entryId and tableEntryId name different table entries",
        ),
        ({"calendarId": "nope"}, 404, "Calendar not found"),
        ({"resourceId": "nope"}, 404, "Resource not found"),
        ({"appointmentTypeId": "nope"}, 404, "Appointment type not found"),
        ({"entryId": "nope"}, 404, "Table entry not found"),
        (
            {
                "startDateTime": "2030-05-06T11:00:00Z",
                "endDateTime": "2030-05-06T11:30:00Z",
                "resourceSlotId": None,
            },
            400,
            NOT_AVAILABLE,
        ),
    ],
)
def test_booking_validation(rl: Served, change: dict[str, Any], status: int, message: str) -> None:
    body = {k: v for k, v in (booking_body(first_slot(rl)) | change).items() if v is not None}
    response = rl.client.post("/connect/calendar_bookings/", json=body)
    assert (response.status_code, response.json()) == (status, {"statusCode": status, "message": message})
    assert st(rl).bookings() == []


def test_booking_body_must_be_json_object(rl: Served) -> None:
    response = rl.client.post(
        "/connect/calendar_bookings/", content=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert response.json() == {
        "statusCode": 400,
        "message": "Validation failed: the request body must be a JSON object",
    }


# -- faults and control ------------------------------------------------------------------------


def test_fault_injection(rl: Served) -> None:
    control = rl.client
    control.post("/_sandbox/faults", json={"kind": "429"}).raise_for_status()
    control.post("/_sandbox/faults", json={"kind": "429", "retry_after": 7}).raise_for_status()
    control.post("/_sandbox/faults", json={"kind": "500", "method": "POST"}).raise_for_status()
    first, second = availability(rl), availability(rl)
    assert (first.status_code, first.json()) == (429, {"statusCode": 429, "message": "Too Many Requests"})
    assert "retry-after" not in first.headers and second.headers["retry-after"] == "7"
    slot = first_slot(rl)  # the 500 waits for a POST
    failed = book(rl, slot)
    assert (failed.status_code, failed.json()) == (
        500,
        {"statusCode": 500, "message": "Internal server error"},
    )
    assert st(rl).bookings() == []
    control.post("/_sandbox/faults", json={"kind": "delay", "seconds": 1}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        rl.client.get("/connect/calendar/", timeout=0.2)
    # Auth is checked first: an unauthenticated call consumes no fault.
    control.post("/_sandbox/faults", json={"kind": "500"}).raise_for_status()
    assert httpx.get(f"{rl.url}/connect/calendar/").status_code == 401
    assert rl.client.get("/connect/calendar/").status_code == 500


@pytest.mark.parametrize("variant", ["bad_start_time", "missing_available"])
def test_malformed_slot(rl: Served, variant: str) -> None:
    rl.client.post("/_sandbox/faults", json={"kind": "malformed", "variant": variant})
    data = availability(rl, 1, 1.5).json()["data"]
    assert len(data) == 3
    if variant == "bad_start_time":
        assert data[-1]["startDateTime"] == "not-a-date"
    else:
        assert "available" not in data[-1]
    assert len(availability(rl, 1, 1.5).json()["data"]) == 2


def test_request_log_and_control_routes(rl: Served) -> None:
    rl.client.post("/_sandbox/bookings", json={"start": iso(2), "resource_id": JAMIE}).raise_for_status()
    availability(rl)
    [entry] = rl.client.get("/_sandbox/requests").json()["requests"]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/connect/availability/", 200)
    assert entry["headers"]["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    catalog = rl.client.get("/_sandbox/catalog").json()
    assert [r["id"] for r in catalog["resources"]] == [ALEX, JAMIE]
    settings = rl.client.put("/_sandbox/settings", json={"max_parallel_bookings": 3}).json()
    assert settings["max_parallel_bookings"] == {ALEX: 3, JAMIE: 3}
    assert rl.client.put("/_sandbox/settings", json={"step_minutes": 0}).status_code == 400
    assert rl.client.delete("/_sandbox/bookings/nope").status_code == 404
    assert rl.client.post("/_sandbox/races", json={"resource_id": "nope"}).status_code == 404
