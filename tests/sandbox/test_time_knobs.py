"""The simulators' time knobs: RocketLead's wall-time calendar and Leezy's clock running behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from bookingsync.sandbox import rocketlead
from bookingsync.sandbox.rocketlead import (
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_TOKEN,
    RocketLeadState,
)
from bookingsync.sandbox.server import serve_app

from .conftest import Clock, Served

FOLD_DAY = datetime(2027, 10, 30, 22, 0, tzinfo=UTC)  # midnight in Berlin before clocks go back


@pytest.fixture
def wall_rl() -> Iterator[Served]:
    state = RocketLeadState(now=Clock(datetime(2027, 10, 1, tzinfo=UTC)))
    state.wall_times = True
    server = serve_app(rocketlead.create_app(state))
    with httpx.Client(
        base_url=server.url, timeout=5.0, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    ) as client:
        yield Served(state, server.url, client)
    server.stop()


def fold_slots(sandbox: Served) -> list[dict]:
    answer = sandbox.client.get(
        "/connect/availability/",
        params={
            "calendarId": DEFAULT_CALENDAR_ID,
            "appointmentTypeId": DEFAULT_APPOINTMENT_TYPE_ID,
            "resourceId": rocketlead.DEFAULT_RESOURCE_IDS[0],
            "start": "2027-10-31T00:00:00.000Z",
            "end": "2027-10-31T02:00:00.000Z",
        },
    )
    assert answer.status_code == 200
    return answer.json()["data"]


def test_a_wall_time_calendar_lists_the_repeated_hour_twice_and_books_each_by_its_slot(
    wall_rl: Served,
) -> None:
    slots = fold_slots(wall_rl)
    assert [s["startDateTime"] for s in slots] == [
        "2027-10-31T02:00:00.000",
        "2027-10-31T02:30:00.000",
        "2027-10-31T02:00:00.000",
        "2027-10-31T02:30:00.000",
    ]
    first, second = slots[0], slots[2]
    assert first["resourceSlotId"] != second["resourceSlotId"]
    body = {
        "calendarId": DEFAULT_CALENDAR_ID,
        "resourceId": second["resourceId"],
        "appointmentTypeId": DEFAULT_APPOINTMENT_TYPE_ID,
        "startDateTime": second["startDateTime"],
        "endDateTime": second["endDateTime"],
    }
    ambiguous = wall_rl.client.post("/connect/calendar_bookings/", json=body)
    assert ambiguous.status_code == 400 and "occurs twice" in ambiguous.json()["message"]
    booked = wall_rl.client.post(
        "/connect/calendar_bookings/", json={**body, "resourceSlotId": second["resourceSlotId"]}
    )
    assert booked.status_code == 201 and booked.json()["startDateTime"] == "2027-10-31T02:00:00.000"
    (made,) = wall_rl.state.bookings()  # type: ignore[attr-defined]
    assert made.start == datetime(2027, 10, 31, 1, 0, tzinfo=UTC)  # the second 02:00
    # The first hour is still free, the second full.
    again = fold_slots(wall_rl)
    assert [s["available"] for s in again] == [True, True, False, True]


def test_a_leezy_clock_behind_stamps_and_dates_its_answers_in_its_own_time(leezy_sandbox: Served) -> None:
    real = leezy_sandbox.state.now()  # type: ignore[attr-defined]
    changed = leezy_sandbox.client.put("/_sandbox/settings", json={"clock_offset_seconds": -120})
    assert changed.status_code == 200 and changed.json()["clock_offset_seconds"] == -120
    made = leezy_sandbox.client.post(
        "/_sandbox/meetings",
        json={
            "title": "Demo",
            "start": "2030-06-01T10:00:00Z",
            "end": "2030-06-01T10:30:00Z",
            "attendee_email": "ann@acme.example",
        },
    )
    assert made.status_code == 201
    answer = leezy_sandbox.client.get("/api/v1/meetings", headers={"Authorization": "Bearer lzy_at_sandbox"})
    assert answer.status_code == 200
    assert parsedate_to_datetime(answer.headers["Date"]) == (real - timedelta(seconds=120)).replace(
        microsecond=0
    )
    assert answer.headers.get_list("Date") == [answer.headers["Date"]]  # one Date, the simulated clock's
    (record,) = answer.json()["data"]
    stamped = datetime.fromisoformat(record["attributes"]["updated_at"].replace("Z", "+00:00"))
    assert stamped == real - timedelta(seconds=120)
