"""The meetergo v4 simulator over real HTTP: auth, errors, booking flows, listing, webhooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bookingsync.sandbox import meetergo
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.meetergo import (
    DEFAULT_PLATFORM_KEY,
    DEFAULT_PLATFORM_USER_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER_ID,
    DOUBLE_OPT_IN_MEETING_TYPE_ID,
    HOST_CONFIRMATION_MEETING_TYPE_ID,
    MEETING_TYPE_ID,
    ROUND_ROBIN_MEETING_TYPE_ID,
    ROUND_ROBIN_QUEUE_ID,
    SECOND_USER_ID,
    MeetergoState,
)
from bookingsync.sandbox.server import serve_app

from .conftest import START, Clock, Receiver, Served

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
PLATFORM = {
    "Authorization": f"Bearer {DEFAULT_PLATFORM_KEY}",
    "x-meetergo-api-user-id": DEFAULT_PLATFORM_USER_ID,
}
# START is Monday 2030-05-06 12:00 UTC (14:00 in Berlin); Tuesday's slots are all free.
TUESDAY = "2030-05-07"
ATTENDEE = {
    "email": "pat@example.com",
    "firstname": "Pat",
    "lastname": "Prospect",
    "receiveReminders": True,
    "notes": {},
    "timezone": "America/New_York",
}


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[Served]:
    state = MeetergoState(now=clock)
    server = serve_app(meetergo.create_app(state))
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Served(state, server.url, client)
    server.stop()
    state.close()


def st(sandbox: Served) -> MeetergoState:
    assert isinstance(sandbox.state, MeetergoState)
    return sandbox.state


def slots(
    sandbox: Served, meeting_type_id: str = MEETING_TYPE_ID, day: str = TUESDAY, **params: str
) -> list[dict[str, Any]]:
    response = sandbox.client.get(
        "/v4/booking-availability",
        headers=AUTH,
        params={"meetingTypeId": meeting_type_id, "start": day, "end": day, **params},
    )
    assert response.status_code == 200, response.text
    return response.json()["availableSlots"]


def booking(start: str, meeting_type_id: str = MEETING_TYPE_ID, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"meetingTypeId": meeting_type_id, "start": start, "attendee": dict(ATTENDEE)}
    if meeting_type_id == ROUND_ROBIN_MEETING_TYPE_ID:
        body["queueId"] = ROUND_ROBIN_QUEUE_ID
    else:
        body["hostIds"] = [DEFAULT_USER_ID]
    return body | extra


def book(sandbox: Served, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = sandbox.client.post("/v4/booking", headers=AUTH, json=body)
    assert response.status_code == status, response.text
    return response.json()


def subscribe(sandbox: Served, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    response = sandbox.client.post(
        "/_sandbox/webhooks", json={"endpoint": f"{receiver.url}?token=conn-secret-1", **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


def received(sandbox: Served, receiver: Receiver) -> list[dict[str, Any]]:
    assert st(sandbox).flush_deliveries(timeout=10)
    return [json.loads(body) for _headers, body in receiver.received]


# -- auth and the error envelope ------------------------------------------------------------


def test_auth_errors_use_the_documented_envelope(sandbox: Served, clock: Clock) -> None:
    client = sandbox.client
    missing = client.get("/v4/appointment/paginated")
    assert missing.status_code == 401
    assert missing.json() == {
        "statusCode": 401,
        "message": "Missing authorization header",
        "error": "Unauthorized",
    }
    wrong = client.get("/v4/appointment/paginated", headers={"Authorization": "Bearer rgo-nope"})
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Invalid API key")
    no_user = client.get(
        "/v4/appointment/paginated", headers={"Authorization": f"Bearer {DEFAULT_PLATFORM_KEY}"}
    )
    assert no_user.status_code == 400
    assert no_user.json() == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Missing required header 'x-meetergo-api-user-id' for API key authentication",
    }
    stranger = client.get(
        "/v4/appointment/paginated",
        headers={**PLATFORM, "x-meetergo-api-user-id": "00000000-0000-0000-0000-000000000000"},
    )
    assert stranger.status_code == 403 and stranger.json()["error"] == "Forbidden"

    expiring = st(sandbox).add_platform_key(expires_at=START + timedelta(days=1))
    headers = {"Authorization": f"Bearer {expiring}", "x-meetergo-api-user-id": DEFAULT_USER_ID}
    assert client.get("/v4/appointment/paginated", headers=headers).status_code == 200
    clock.advance(days=1)
    expired = client.get("/v4/appointment/paginated", headers=headers)
    assert (expired.status_code, expired.json()["message"]) == (401, "API key has expired")


def test_both_credentials_work_and_personal_tokens_ignore_the_user_header(sandbox: Served) -> None:
    client = sandbox.client
    assert client.get("/v4/appointment/paginated", headers=PLATFORM).json() == {
        "appointments": [],
        "total": 0,
    }
    # A personal token acts as its owner whatever the header says.
    odd = {**AUTH, "x-meetergo-api-user-id": "not-a-user"}
    assert client.get("/v4/appointment/paginated", headers=odd).status_code == 200
    added = client.post("/_sandbox/api-keys", json={})
    assert added.status_code == 201 and added.json()["key"].startswith("ak_live:")
    assert (
        client.post("/_sandbox/tokens", json={"token": "rgo-second", "user_id": SECOND_USER_ID}).status_code
        == 201
    )
    assert (
        client.get("/v4/appointment/paginated", headers={"Authorization": "Bearer rgo-second"}).status_code
        == 200
    )
    logged = client.get("/_sandbox/requests").json()["requests"]
    assert logged[0]["headers"]["authorization"] == f"Bearer {DEFAULT_PLATFORM_KEY}"


def test_rate_limit_bucket_and_injected_faults(sandbox: Served, clock: Clock) -> None:
    client = sandbox.client
    assert (
        client.put(
            "/_sandbox/settings",
            json={
                "rate_limit_enabled": True,
                "rate_limit_burst": 3,
                "rate_limit_per_minute": 60,
            },
        ).status_code
        == 200
    )
    answers = [client.get("/v4/appointment/paginated", headers=AUTH) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json() == {
        "statusCode": 429,
        "message": "Too Many Requests",
        "error": "Too Many Requests",
    }
    assert "retry-after" not in answers[3].headers
    # Another credential has its own bucket; one second refills one request at 60/min.
    assert client.get("/v4/appointment/paginated", headers=PLATFORM).status_code == 200
    clock.advance(seconds=1)
    assert client.get("/v4/appointment/paginated", headers=AUTH).status_code == 200
    assert client.get("/v4/appointment/paginated", headers=AUTH).status_code == 429
    client.put("/_sandbox/settings", json={"rate_limit_enabled": False})

    client.post("/_sandbox/faults", json={"kind": "429", "retry_after": 7})
    client.post("/_sandbox/faults", json={"kind": "500", "path": "/v4/booking"})
    limited = client.get("/v4/appointment/paginated", headers=AUTH)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    failed = client.post("/v4/booking", headers=AUTH, json={})
    assert failed.status_code == 500
    assert failed.json() == {"statusCode": 500, "message": "Internal server error"}


# -- booking --------------------------------------------------------------------------------


def test_validation_errors_list_every_problem(sandbox: Served) -> None:
    start = slots(sandbox)[0]["start"]
    body = booking(start)
    body["attendee"] = {"email": "not-an-email", "firstname": "Pat"}
    body["hostId"] = DEFAULT_USER_ID
    answer = book(sandbox, body, 400)
    assert answer["message"] == "Validation failed" and answer["error"] == "Bad Request"
    fields = {e["field"] for e in answer["errors"]}
    assert fields == {
        "hostId",
        "attendee.email",
        "attendee.receiveReminders",
        "attendee.notes",
        "attendee.fullname",
    }
    naive = book(sandbox, booking(start.replace("Z", "")), 400)
    assert naive["errors"][0]["field"] == "start"
    assert book(sandbox, booking(start, meeting_type_id="mt-unknown"), 404)["message"] == (
        "Meeting type not found"
    )
    no_hosts = booking(start)
    del no_hosts["hostIds"]
    assert book(sandbox, no_hosts, 400)["errors"][0]["field"] == "hostIds"
    queued = book(sandbox, booking(start, queueId=ROUND_ROBIN_QUEUE_ID), 400)
    assert queued["errors"][0]["field"] == "queueId"
    assert book(sandbox, booking(start, duration=45), 400)["errors"][0]["field"] == "duration"
    fullname = booking(start)
    fullname["attendee"] = {
        "email": "solo@example.com",
        "fullname": "Solo",
        "receiveReminders": False,
        "notes": {},
    }
    assert "appointmentId" in book(sandbox, fullname)


def test_standard_booking_then_the_slot_is_taken(sandbox: Served, receiver: Receiver) -> None:
    subscribe(sandbox, receiver)
    offered = slots(sandbox)
    # Berlin 09:00-17:00 in 30 minute steps on a Tuesday.
    assert len(offered) == 16 and offered[0] == {
        "start": "2030-05-07T07:00:00Z",
        "end": "2030-05-07T07:30:00Z",
        "hostIds": [DEFAULT_USER_ID],
    }
    answer = book(sandbox, booking(offered[0]["start"], channel="google"))
    assert set(answer) == {"appointmentId", "secret", "attendeeEmail"}
    taken = book(sandbox, booking(offered[0]["start"]), 400)
    assert taken == {"statusCode": 400, "message": "Slot no longer available", "error": "Bad Request"}
    assert slots(sandbox)[0]["start"] == offered[1]["start"]
    assert book(sandbox, booking("2030-05-07T07:10:00Z"), 400)["message"] == ("Slot no longer available")

    appt = sandbox.client.get(f"/v4/appointment/{answer['appointmentId']}", headers=AUTH).json()
    assert appt["secret"] == answer["secret"] and appt["cancel"] is None
    info = appt["meetingInfo"]
    assert (info["start"], info["end"]) == ("2030-05-07T09:00:00+02:00", "2030-05-07T09:30:00+02:00")
    assert info["channel"] == "google" and info["meetingLink"].startswith("https://meet.google")
    assert info["attendees"][0]["email"] == "pat@example.com"
    assert appt["hostingInfo"]["mainHost"]["id"] == DEFAULT_USER_ID
    assert appt["hostingInfo"]["googleEventId"] and "BEGIN:VCALENDAR" in appt["ics"]
    missing = sandbox.client.get("/v4/appointment/nope", headers=AUTH)
    assert missing.json() == {"statusCode": 404, "message": "Appointment not found", "error": "Not Found"}

    [event] = received(sandbox, receiver)
    assert event["webhookType"] == "booking_created" and event["id"] == answer["appointmentId"]
    assert event["start"] == "2030-05-07T09:00:00+02:00" and event["isCancelled"] is False
    assert event["attendees"][0] | {"id": "x"} == {
        "id": "x",
        "email": "pat@example.com",
        "firstname": "Pat",
        "lastname": "Prospect",
        "fullname": "Pat Prospect",
        "phone": None,
        "timezone": "America/New_York",
        "language": "en",
    }
    assert event["hostIds"] == [DEFAULT_USER_ID] and event["hosts"][0]["givenName"] == "Jordan"
    assert event["meetingType"]["meetingInfo"] == {"name": "Discovery Call", "duration": 30}
    assert set(event) >= {
        "secret",
        "location",
        "rescheduledAt",
        "meetingInfo",
        "meetingTypeId",
        "companyId",
        "createdAt",
        "updatedAt",
    }


def test_double_opt_in_is_provisional_until_confirmed(sandbox: Served, receiver: Receiver) -> None:
    subscribe(sandbox, receiver)
    start = slots(sandbox, DOUBLE_OPT_IN_MEETING_TYPE_ID)[0]["start"]
    answer = book(sandbox, booking(start, DOUBLE_OPT_IN_MEETING_TYPE_ID))
    assert answer["bookingType"] == "doubleOptIn" and "appointmentId" not in answer
    provisional_id = answer["provisionalBookingId"]
    # The pending booking holds its slot and is not an appointment yet.
    assert book(sandbox, booking(start, DOUBLE_OPT_IN_MEETING_TYPE_ID), 400)["message"] == (
        "Slot no longer available"
    )
    listed = sandbox.client.get(
        "/v4/provisional-booking/paginated", headers=AUTH, params={"status": "pending"}
    ).json()
    assert listed["total"] == 1
    assert listed["provisionalBookings"][0]["id"] == provisional_id
    assert sandbox.client.get("/v4/appointment/paginated", headers=AUTH).json()["total"] == 0
    assert received(sandbox, receiver) == []

    confirmed = sandbox.client.post(f"/_sandbox/provisional-bookings/{provisional_id}/confirm")
    assert confirmed.status_code == 200
    appointment_id = confirmed.json()["appointment"]["id"]
    assert confirmed.json()["provisional_booking"]["status"] == "confirmed"
    assert confirmed.json()["provisional_booking"]["appointmentId"] == appointment_id
    [event] = received(sandbox, receiver)
    assert (event["webhookType"], event["id"]) == ("booking_created", appointment_id)
    again = sandbox.client.post(f"/_sandbox/provisional-bookings/{provisional_id}/confirm")
    assert again.status_code == 400

    sandbox.client.put("/_sandbox/settings", json={"booking_type_style": "guide"})
    other = book(
        sandbox,
        booking(slots(sandbox, DOUBLE_OPT_IN_MEETING_TYPE_ID)[0]["start"], DOUBLE_OPT_IN_MEETING_TYPE_ID),
    )
    assert other["bookingType"] == "DoubleOptIn"


def test_host_confirmation_decline_and_expiry(sandbox: Served, clock: Clock) -> None:
    offered = slots(sandbox, HOST_CONFIRMATION_MEETING_TYPE_ID)
    first = book(sandbox, booking(offered[0]["start"], HOST_CONFIRMATION_MEETING_TYPE_ID))
    second = book(sandbox, booking(offered[1]["start"], HOST_CONFIRMATION_MEETING_TYPE_ID))
    assert first["bookingType"] == "requireHostConfirmation"
    declined = sandbox.client.post(f"/_sandbox/provisional-bookings/{first['provisionalBookingId']}/decline")
    assert declined.json()["provisional_booking"]["status"] == "declined_by_host"
    clock.advance(hours=24)

    def listed(status: str) -> list[str]:
        page = sandbox.client.get(
            "/v4/provisional-booking/paginated", headers=AUTH, params={"status": status}
        ).json()
        return [p["id"] for p in page["provisionalBookings"]]

    assert listed("declined_by_host") == [first["provisionalBookingId"]]
    assert listed("expired") == [second["provisionalBookingId"]]
    assert listed("pending") == []
    bad = sandbox.client.get("/v4/provisional-booking/paginated", headers=AUTH, params={"status": "maybe"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"


def test_round_robin_needs_the_queue_and_spreads_hosts(sandbox: Served) -> None:
    start = slots(sandbox, ROUND_ROBIN_MEETING_TYPE_ID)[0]["start"]
    no_queue = booking(start, ROUND_ROBIN_MEETING_TYPE_ID)
    del no_queue["queueId"]
    assert book(sandbox, no_queue, 400)["errors"][0]["field"] == "queueId"
    ids = [book(sandbox, booking(start, ROUND_ROBIN_MEETING_TYPE_ID))["appointmentId"] for _ in range(2)]
    hosts = {
        sandbox.client.get(f"/v4/appointment/{i}", headers=AUTH).json()["hostingInfo"]["mainHost"]["id"]
        for i in ids
    }
    assert hosts == {DEFAULT_USER_ID, SECOND_USER_ID}
    assert book(sandbox, booking(start, ROUND_ROBIN_MEETING_TYPE_ID), 400)["message"] == (
        "Slot no longer available"
    )
    # A member sees only what it hosts; the admin sees the company.
    sandbox.client.post("/_sandbox/tokens", json={"token": "rgo-mika", "user_id": SECOND_USER_ID})
    member = sandbox.client.get(
        "/v4/appointment/paginated", headers={"Authorization": "Bearer rgo-mika"}
    ).json()
    assert member["total"] == 1
    assert sandbox.client.get("/v4/appointment/paginated", headers=AUTH).json()["total"] == 2


def test_calendar_sync_lag_offers_a_slot_that_is_gone(sandbox: Served) -> None:
    sandbox.client.put("/_sandbox/settings", json={"calendar_sync_lag_seconds": 120})
    start = slots(sandbox)[0]["start"]
    sandbox.client.post(
        "/_sandbox/busy", json={"host_id": DEFAULT_USER_ID, "start": start, "end": "2030-05-07T08:00:00Z"}
    )
    assert slots(sandbox)[0]["start"] == start
    assert book(sandbox, booking(start), 400)["message"] == "Slot no longer available"
    troubleshoot = sandbox.client.get(
        "/v4/booking-availability",
        headers=AUTH,
        params={"meetingTypeId": MEETING_TYPE_ID, "start": TUESDAY, "end": TUESDAY, "troubleshoot": "true"},
    ).json()
    assert troubleshoot["blockedSlots"] == []  # the block has not synced yet
    bad = sandbox.client.get(
        "/v4/booking-availability",
        headers=AUTH,
        params={"meetingTypeId": MEETING_TYPE_ID, "start": "2030-05-08", "end": TUESDAY},
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "end"


# -- listing --------------------------------------------------------------------------------


def create(sandbox: Served, start: str, email: str = "lead@example.com", **extra: Any) -> str:
    response = sandbox.client.post(
        "/_sandbox/appointments",
        json={"start": start, "attendee_email": email, "attendee_name": "Lee Lead", **extra},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_paginated_listing_reads_to_the_end(sandbox: Served) -> None:
    base = START + timedelta(days=2)
    ids = [create(sandbox, (base + timedelta(hours=n)).isoformat()) for n in range(25)]
    seen, page = [], 0
    while True:
        answer = sandbox.client.get(
            "/v4/appointment/paginated", headers=AUTH, params={"page": page, "pageSize": 10}
        ).json()
        assert answer["total"] == 25
        seen += [a["id"] for a in answer["appointments"]]
        if len(answer["appointments"]) < 10:
            break
        page += 1
    assert (page, seen) == (2, ids)
    default = sandbox.client.get("/v4/appointment/paginated", headers=AUTH).json()
    assert len(default["appointments"]) == 10
    too_big = sandbox.client.get("/v4/appointment/paginated", headers=AUTH, params={"pageSize": 101})
    assert too_big.status_code == 400 and too_big.json()["errors"] == [
        {"field": "pageSize", "message": "pageSize must not be greater than 100"}
    ]

    # Cancelled appointments stay listed with `cancel` set, unless hide_cancelled is on.
    sandbox.client.post(f"/_sandbox/appointments/{ids[0]}/cancel", json={"reason": "no"})
    first = sandbox.client.get("/v4/appointment/paginated", headers=AUTH).json()
    assert first["appointments"][0]["cancel"]["reason"] == "no" and first["total"] == 25
    sandbox.client.put("/_sandbox/settings", json={"hide_cancelled": True})
    assert sandbox.client.get("/v4/appointment/paginated", headers=AUTH).json()["total"] == 24


def test_listing_faults_malformed_and_mutate(sandbox: Served) -> None:
    base = START + timedelta(days=2)
    ids = [create(sandbox, (base + timedelta(hours=n)).isoformat()) for n in range(3)]
    client = sandbox.client
    client.post("/_sandbox/faults", json={"kind": "malformed"})
    broken = client.get("/v4/appointment/paginated", headers=AUTH).json()
    assert broken["total"] == 4 and broken["appointments"][-1]["meetingInfo"]["start"] == ("not-a-date")
    # After page 0 (size 2) is computed, the first appointment moves to the end.
    client.post(
        "/_sandbox/faults",
        json={
            "kind": "mutate",
            "offset": 0,
            "action": {
                "op": "reschedule",
                "id": ids[0],
                "start": (base + timedelta(days=1)).isoformat(),
                "new_id": False,
            },
        },
    )
    page0 = client.get("/v4/appointment/paginated", headers=AUTH, params={"page": 0, "pageSize": 2}).json()
    page1 = client.get("/v4/appointment/paginated", headers=AUTH, params={"page": 1, "pageSize": 2}).json()
    assert [a["id"] for a in page0["appointments"]] == ids[:2]
    assert [a["id"] for a in page1["appointments"]] == [ids[0]]  # ids[2] was skipped


# -- cancel and reschedule ------------------------------------------------------------------


def test_cancel_both_ways(sandbox: Served, receiver: Receiver) -> None:
    subscribe(sandbox, receiver)
    first = create(sandbox, "2030-05-08T08:00:00Z")
    second = create(sandbox, "2030-05-08T09:00:00Z")
    deleted = sandbox.client.request(
        "DELETE", f"/v4/appointment/{first}", headers=AUTH, json={"reason": "changed plans"}
    )
    assert deleted.status_code == 204
    posted = sandbox.client.post(f"/v4/appointment/{second}/cancel", headers=PLATFORM, json={})
    assert posted.status_code == 201 and posted.json()["cancel"]["actionSource"] == "api"
    again = sandbox.client.delete(f"/v4/appointment/{first}", headers=AUTH)
    assert again.status_code == 204
    gone = sandbox.client.delete("/v4/appointment/nope", headers=AUTH)
    assert gone.status_code == 404
    cancelled = sandbox.client.get(f"/v4/appointment/{first}", headers=AUTH).json()["cancel"]
    assert cancelled["reason"] == "changed plans" and cancelled["actionBy"] == DEFAULT_USER_ID
    assert cancelled["actionAt"] == "2030-05-06T12:00:00Z"

    events = received(sandbox, receiver)
    assert [e["webhookType"] for e in events] == [
        "booking_created",
        "booking_created",
        "booking_cancelled",
        "booking_cancelled",
    ]
    assert events[2]["id"] == first and events[2]["isCancelled"] is True
    assert events[2]["cancel"]["reason"] == "changed plans"


def test_reschedule_by_successor_and_in_place(sandbox: Served, receiver: Receiver) -> None:
    subscribe(sandbox, receiver)
    offered = slots(sandbox)
    old = book(sandbox, booking(offered[0]["start"]))["appointmentId"]
    new = book(sandbox, booking(offered[0]["start"], rescheduledFromId=old))["appointmentId"]
    assert new != old
    old_view = sandbox.client.get(f"/v4/appointment/{old}", headers=AUTH).json()
    assert old_view["cancel"]["actionSource"] == "reschedule"
    new_view = sandbox.client.get(f"/v4/appointment/{new}", headers=AUTH).json()
    assert new_view["rescheduledFromId"] == old and new_view["cancel"] is None
    # The docs' second step (cancel the old one) is harmless.
    assert sandbox.client.delete(f"/v4/appointment/{old}", headers=AUTH).status_code == 204

    moved = sandbox.client.post(
        f"/v4/appointment/{new}/reschedule", headers=AUTH, json={"start": offered[3]["start"]}
    )
    assert moved.status_code == 201 and moved.json()["id"] == new
    assert moved.json()["meetingInfo"]["start"] == "2030-05-07T10:30:00+02:00"
    taken = sandbox.client.post(
        f"/v4/appointment/{new}/reschedule", headers=AUTH, json={"start": "2030-05-07T03:00:00Z"}
    )
    assert taken.json()["message"] == "Slot no longer available"

    events = received(sandbox, receiver)
    assert [e["webhookType"] for e in events] == [
        "booking_created",
        "booking_rescheduled",
        "booking_rescheduled",
    ]
    successor = events[1]
    assert (successor["id"], successor["rescheduledFromId"]) == (new, old)
    assert successor["originalStart"] == "2030-05-07T09:00:00+02:00"
    assert successor["rescheduledAt"] == "2030-05-06T12:00:00Z"
    assert events[2]["start"] == "2030-05-07T10:30:00+02:00" and events[2]["id"] == new


# -- webhooks -------------------------------------------------------------------------------


def test_webhook_shapes_duplicates_and_redelivery(sandbox: Served, receiver: Receiver) -> None:
    hook = subscribe(sandbox, receiver, event_types=["booking_created", "new_employee"])
    assert set(hook) == {"id", "endpoint", "description", "eventTypes", "companyId", "createdAt"}
    client = sandbox.client
    client.put("/_sandbox/settings", json={"payload_shape": "legacy"})
    legacy_id = create(sandbox, "2030-05-08T08:00:00Z")
    client.put("/_sandbox/settings", json={"payload_shape": "flat", "duplicate_deliveries": True})
    twice_id = create(sandbox, "2030-05-08T09:00:00Z")
    client.post(f"/_sandbox/appointments/{twice_id}/cancel", json={})  # not subscribed
    client.post(
        "/_sandbox/webhooks/emit",
        json={"webhook_type": "new_employee", "data": {"id": "u-1", "email": "n@x.io"}},
    )
    events = received(sandbox, receiver)
    assert events[0]["event"] == "booking_created" and events[0]["data"]["id"] == legacy_id
    assert "webhookType" not in events[0]["data"]
    assert events[1] == events[2] and events[1]["id"] == twice_id
    assert events[3:] == [{"webhookType": "new_employee", "id": "u-1", "email": "n@x.io"}] * 2

    headers, _body = receiver.received[0]
    assert headers["content-type"] == "application/json"
    assert not any("signature" in name for name in headers)
    deliveries = client.get("/_sandbox/deliveries?wait=true").json()["deliveries"]
    assert len(deliveries) == 5 and all(d["succeeded"] for d in deliveries)
    assert deliveries[0]["target_url"].endswith("/hook?token=conn-secret-1")
    again = client.post(f"/_sandbox/deliveries/{deliveries[0]['delivery_id']}/redeliver")
    assert again.status_code == 201
    assert received(sandbox, receiver)[-1] == events[0]
    assert (
        client.get("/_sandbox/deliveries").json()["deliveries"][-1]["redelivery_of"]
        == (deliveries[0]["delivery_id"])
    )


def test_failed_delivery_is_recorded(sandbox: Served, receiver: Receiver) -> None:
    receiver.status = 500
    subscribe(sandbox, receiver)
    create(sandbox, "2030-05-08T08:00:00Z")
    assert st(sandbox).flush_deliveries(timeout=10)
    [attempt] = st(sandbox).deliveries()
    assert (attempt.status_code, attempt.succeeded) == (500, False)


def test_provider_webhook_management_and_limit(sandbox: Served) -> None:
    client = sandbox.client
    made = client.post(
        "/webhooks",
        headers=PLATFORM,
        json={"endpoint": "https://example.com/h?token=t", "eventTypes": ["booking_created"]},
    )
    assert made.status_code == 201 and made.json()["eventTypes"] == ["booking_created"]
    hook_id = made.json()["id"]
    patched = client.patch(
        f"/webhooks/{hook_id}",
        headers=PLATFORM,
        json={"eventTypes": ["booking_created", "booking_cancelled"]},
    )
    assert patched.json()["eventTypes"] == ["booking_created", "booking_cancelled"]
    bad = client.post(
        "/webhooks",
        headers=AUTH,
        json={"endpoint": "https://example.com/h", "eventTypes": ["booking.created"]},
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "eventTypes"
    for n in range(5):
        assert (
            client.post(
                "/webhooks",
                headers=AUTH,
                json={"endpoint": f"https://example.com/{n}", "eventTypes": ["booking_created"]},
            ).status_code
            == 201
        )
    full = client.post(
        "/webhooks",
        headers=AUTH,
        json={"endpoint": "https://example.com/7", "eventTypes": ["booking_created"]},
    )
    assert full.status_code == 406 and full.json() == {
        "statusCode": 406,
        "message": "Limit reached",
        "error": "Not Acceptable",
    }
    assert len(client.get("/webhooks", headers=AUTH).json()) == 6
    assert client.delete(f"/webhooks/{hook_id}", headers=AUTH).status_code == 204
    assert client.delete(f"/webhooks/{hook_id}", headers=AUTH).status_code == 404


def test_python_api_round_trip(clock: Clock) -> None:
    state = MeetergoState(now=clock)
    appt = state.create_appointment(START + timedelta(days=1), "a@example.com", attendee_name="Ann Attendee")
    moved = state.reschedule(appt.id, START + timedelta(days=1, hours=2), new_id=True)
    assert moved.id != appt.id and state.get(appt.id).is_cancelled
    state.cancel(moved.id, "bye")
    assert [a.is_cancelled for a in state.appointments()] == [True, True]
    state.add_fault(Fault(kind="500"))
    assert len(state.faults.pending()) == 1
    state.close()
