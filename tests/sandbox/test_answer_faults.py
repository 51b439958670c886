"""Answer-loss faults over real HTTP: the simulator acts in full, then the client's answer is a
gateway's 504, a connection closed mid-answer, or late. Shown on RocketLead's booking POST and
on Meetergo, whose webhook about the booking goes out before the late answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from bookingsync.sandbox import meetergo
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.rocketlead import DEFAULT_RESOURCE_IDS
from bookingsync.sandbox.server import serve_app

from .conftest import Served
from .test_rocketlead import book, first_slot, rl, st  # noqa: F401 - the rl fixture

BOOKINGS = "/connect/calendar_bookings/"


def test_a_504_after_the_booking_was_stored(rl: Served) -> None:  # noqa: F811
    st(rl).add_fault(Fault(kind="lost_504", path=BOOKINGS, method="POST"))
    answer = book(rl, first_slot(rl), name="Demo")
    assert answer.status_code == 504 and b"Gateway Time-out" in answer.content
    assert [b.name for b in st(rl).bookings()] == ["Demo"]  # stored all the same
    assert (
        book(rl, first_slot(rl, DEFAULT_RESOURCE_IDS[1]), name="Next").status_code == 201
    )  # one fault, once


def test_a_connection_closed_before_the_answer_after_the_booking_was_stored(rl: Served) -> None:  # noqa: F811
    answer = rl.client.post(
        "/_sandbox/faults", json={"kind": "lost_drop", "path": BOOKINGS, "method": "POST"}
    )
    assert answer.status_code == 201
    with pytest.raises(httpx.RemoteProtocolError):
        book(rl, first_slot(rl), name="Demo")
    assert len(st(rl).bookings()) == 1


def test_faults_after_the_answer_leave_other_endpoints_and_the_control_api_alone(rl: Served) -> None:  # noqa: F811
    st(rl).add_fault(Fault(kind="lost_504", path=BOOKINGS, method="POST"))
    assert rl.client.get("/_sandbox/bookings").status_code == 200
    assert rl.client.get("/connect/calendar/").status_code == 200
    assert [f["kind"] for f in rl.client.get("/_sandbox/faults").json()["faults"]] == ["lost_504"]


@pytest.fixture
def mg() -> Iterator[Served]:
    state = meetergo.MeetergoState()
    server = serve_app(meetergo.create_app(state))
    with httpx.Client(
        base_url=server.url, timeout=10.0, headers={"Authorization": f"Bearer {meetergo.DEFAULT_TOKEN}"}
    ) as client:
        yield Served(state, server.url, client)
    server.stop()
    state.close()


def test_a_slow_answer_lets_the_booking_webhook_arrive_first(mg: Served) -> None:
    received: list[float] = []
    receiver = serve_app(_echo_app(received))
    state = mg.state
    assert isinstance(state, meetergo.MeetergoState)
    state.add_webhook(f"{receiver.url}/hook", ["booking_created"])
    state.add_fault(Fault(kind="slow_answer", path="/v4/booking", method="POST", seconds=1.0))
    slot = mg.client.get(
        "/v4/booking-availability",
        params={"meetingTypeId": meetergo.MEETING_TYPE_ID, "start": _day(1), "end": _day(7)},
    ).json()["availableSlots"][0]
    sent = time.monotonic()
    answer = mg.client.post(
        "/v4/booking",
        json={
            "meetingTypeId": meetergo.MEETING_TYPE_ID,
            "start": slot["start"],
            "hostIds": [meetergo.DEFAULT_USER_ID],
            "attendee": {"email": "ann@buyer.com", "fullname": "Ann", "receiveReminders": False, "notes": {}},
        },
    )
    answered = time.monotonic()
    receiver.stop()
    assert answer.status_code == 201 and answered - sent >= 1.0
    assert received and received[0] < answered  # the echo came before the answer


def _day(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def _echo_app(received: list[float]) -> FastAPI:
    """A webhook receiver noting when each delivery came."""
    app = FastAPI()

    @app.post("/hook")
    async def hook() -> Response:
        received.append(time.monotonic())
        return Response(status_code=200)

    return app
