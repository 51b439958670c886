"""RocketLead: exact-slot booking, the slot race, scope errors, hard delete, and normalising bookings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookingsync.adapters.base import (
    BookingRequest,
    Capability,
    Mover,
    RawRecord,
    Reader,
    WebhookReceiver,
    Writer,
)
from bookingsync.adapters.rocketlead import RocketLeadAdapter, error_message, normalise_booking
from bookingsync.models.errors import (
    AnswerLost,
    ConfigError,
    NormaliseError,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person

TOKEN = "rocketlead_live_" + "ab" * 32
START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 16:00 in Berlin
END = START + timedelta(minutes=30)


def slot(
    slot_id: str,
    *,
    start: str = "2026-03-10T15:00:00.000Z",
    end: str = "2026-03-10T15:30:00.000Z",
    available: bool = True,
    resource: str = "res-1",
) -> dict:
    return {
        "resourceId": resource,
        "resourceName": "Room",
        "resourceColor": "#fff",
        "resourceSlotId": slot_id,
        "appointmentTypeId": "apt-1",
        "startDateTime": start,
        "endDateTime": end,
        "maxParallelBookings": 1,
        "currentBookings": 0 if available else 1,
        "available": available,
    }


def availability(*slots: dict) -> dict:
    return {
        "data": list(slots),
        "meta": {
            "appointmentTypeName": "Demo",
            "defaultBookingLength": 30,
            "bufferAfter": 0,
            "dynamicLength": False,
        },
    }


def booked(body: dict, booking_id: str = "bk-1", **extra) -> dict:
    return {
        "organizationId": "org-1",
        "id": booking_id,
        "createdAt": "2026-03-02T12:00:00.000Z",
        **{k: v for k, v in body.items() if k != "entryId"},
        **({"tableEntryId": body["entryId"]} if "entryId" in body else {}),
        **extra,
    }


SLOT_TAKEN = httpx.Response(
    400, json={"statusCode": 400, "message": "The selected time slot is no longer available"}
)


class FakeRocketLead:
    """Queues of answers per route; the last answer of a queue repeats. POST answers may be callables."""

    def __init__(self, *, slots=None, posts=None, deletes=None, calendar=None) -> None:
        self.slots = list(slots or [availability(slot("rs-1"))])
        self.posts = list(posts or [booked])
        self.deletes = list(deletes or [httpx.Response(204)])
        self.calendar = calendar if calendar is not None else {"id": "cal-1", "timezone": "Europe/Berlin"}
        self.requests: list[httpx.Request] = []

    @staticmethod
    def _next(queue: list):
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if method == "GET" and path.startswith("/connect/calendar/"):
            answer = self.calendar
        elif method == "GET" and path == "/connect/availability/":
            answer = self._next(self.slots)
        elif method == "POST" and path == "/connect/calendar_bookings/":
            answer = self._next(self.posts)
            if callable(answer) and not isinstance(answer, httpx.Response):
                answer = answer(json.loads(request.content))
        elif method == "DELETE" and path.startswith("/connect/calendar_bookings/"):
            answer = self._next(self.deletes)
        else:
            answer = httpx.Response(404, json={"statusCode": 404, "message": "Cannot find route"})
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def sent(self, method: str, path_prefix: str = "/connect/") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.startswith(path_prefix)]

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.sent("POST")]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def adapter(server, **kwargs) -> RocketLeadAdapter:
    kwargs = {
        "calendar_id": "cal-1",
        "appointment_type_id": "apt-1",
        "token": TOKEN,
        "sleep": Sleeps(),
        **kwargs,
    }
    return RocketLeadAdapter(
        connection_id="rl",
        base_url="https://api.rocketlead.io",
        transport=httpx.MockTransport(server),
        **kwargs,
    )


def request(
    title: str | None = "Intro call",
    email: str | None = "Ann@Buyer.com",
    name: str | None = "Ann Lee",
    start: datetime = START,
    end: datetime = END,
) -> BookingRequest:
    meeting = Meeting(
        status=MeetingStatus.SCHEDULED,
        title=title,
        start=start,
        end=end,
        attendee=Person(email=email, name=name),
    )
    return BookingRequest(meeting=meeting, reference="m-123")


# -- create -------------------------------------------------------------------------------------


def test_books_the_exact_slot_with_the_modern_fields_and_returns_it_normalised():
    server = FakeRocketLead(
        slots=[
            availability(
                slot("rs-early", start="2026-03-10T14:30:00.000Z", end="2026-03-10T15:00:00.000Z"),
                slot("rs-1"),
            )
        ]
    )
    a = adapter(server, resource_id="res-1", table_entry_ids={"ann@buyer.com": "lead-9"})
    record = a.create(request())

    calendar, slots = server.sent("GET")
    assert calendar.url.path == "/connect/calendar/cal-1"
    assert slots.url.path == "/connect/availability/"
    assert dict(slots.url.params) == {
        "calendarId": "cal-1",
        "appointmentTypeId": "apt-1",
        "resourceId": "res-1",
        "start": "2026-03-10T12:00:00.000Z",  # three hours early: both readings of a fold
        "end": "2026-03-10T18:30:00.000Z",  # three hours late, the same
    }
    (post,) = server.sent("POST")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == {
        "calendarId": "cal-1",
        "appointmentTypeId": "apt-1",
        "resourceId": "res-1",
        "resourceSlotId": "rs-1",
        "entryId": "lead-9",
        "name": "Intro call [bookingsync m-123]",  # our reference, for a person to see
        "startDateTime": "2026-03-10T15:00:00.000Z",
        "endDateTime": "2026-03-10T15:30:00.000Z",
    }
    assert record.external_id == "bk-1"
    assert record.meeting.status is MeetingStatus.SCHEDULED
    assert (record.meeting.start, record.meeting.end) == (START, END)
    assert record.meeting.timezone == "Europe/Berlin" and record.meeting.title == "Intro call"
    assert record.reference == "m-123"  # read back out of the name
    assert record.source_updated_at == datetime(2026, 3, 2, 12, tzinfo=UTC)


def test_slot_times_in_another_offset_match_and_are_sent_back_unchanged():
    berlin = slot(
        "rs-b", start="2026-03-10T16:00:00+01:00", end="2026-03-10T16:30:00+01:00", resource="res-2"
    )
    server = FakeRocketLead(slots=[availability(slot("rs-full", available=False), berlin)])
    a = adapter(server)  # no resource configured: the chosen slot's resource is booked
    a.create(request(title=None, email="bob@buyer.com"))
    (body,) = server.bodies
    assert body["resourceId"] == "res-2" and body["resourceSlotId"] == "rs-b"
    assert (body["startDateTime"], body["endDateTime"]) == (
        "2026-03-10T16:00:00+01:00",
        "2026-03-10T16:30:00+01:00",
    )
    assert "entryId" not in body  # lead unknown: the field is omitted, not null
    assert body["name"] == "Ann Lee [bookingsync m-123]"  # no title: the attendee's name
    assert "resourceId" not in server.sent("GET", "/connect/availability/")[0].url.params


def test_a_slot_race_refetches_and_books_a_fresh_slot_at_the_same_time():
    server = FakeRocketLead(
        slots=[availability(slot("rs-1")), availability(slot("rs-2", resource="res-2"))],
        posts=[SLOT_TAKEN, booked],
    )
    record = adapter(server).create(request())
    assert [b["resourceSlotId"] for b in server.bodies] == ["rs-1", "rs-2"]
    assert len(server.sent("GET", "/connect/availability/")) == 2
    assert len(server.sent("GET", "/connect/calendar/")) == 1
    assert record.external_id == "bk-1"


def test_a_race_lost_every_time_is_slot_unavailable_after_the_retries():
    server = FakeRocketLead(posts=[SLOT_TAKEN])
    with pytest.raises(SlotUnavailable, match="taken between availability and booking 3 times") as caught:
        adapter(server, max_slot_retries=2).create(request())
    assert len(server.sent("POST")) == 3 and len(server.sent("GET", "/connect/availability/")) == 3
    assert caught.value.status == 400


def test_a_slot_that_fills_during_the_race_stops_at_once():
    server = FakeRocketLead(
        slots=[availability(slot("rs-1")), availability(slot("rs-1", available=False))], posts=[SLOT_TAKEN]
    )
    with pytest.raises(SlotUnavailable, match="is full"):
        adapter(server).create(request())
    assert len(server.sent("POST")) == 1


@pytest.mark.parametrize(
    "slots",
    [
        [],
        [slot("rs-x", start="2026-03-10T15:15:00.000Z", end="2026-03-10T15:45:00.000Z")],  # another time
        [slot("rs-x", end="2026-03-10T16:00:00.000Z")],  # same start, longer
        [
            slot("rs-x", start="2026-03-10T15:00:00", end="2026-03-10T15:30:00")
        ],  # no offset, calendar zone unknown
        [slot("rs-x", resource="res-other")],  # not the configured resource
        [{**slot("rs-x"), "available": "true"}],  # only a literal true is bookable
    ],
)
def test_no_available_slot_at_the_exact_time_is_slot_unavailable_without_booking(slots):
    server = FakeRocketLead(slots=[availability(*slots)], calendar={"id": "cal-1"})
    with pytest.raises(SlotUnavailable, match="keeps its exact time"):
        adapter(server, resource_id="res-1").create(request())
    assert server.sent("POST") == []


def test_a_time_without_offset_is_read_in_the_calendar_zone():
    server = FakeRocketLead(
        slots=[availability(slot("rs-1", start="2026-03-10T16:00:00", end="2026-03-10T16:30:00"))]
    )
    record = adapter(server).create(request())
    assert (record.meeting.start, record.meeting.end) == (START, END)


def test_another_400_is_rejected_as_is_and_not_retried():
    server = FakeRocketLead(
        posts=[httpx.Response(400, json={"statusCode": 400, "message": ["resourceId must be a string"]})]
    )
    with pytest.raises(ProviderRejected, match="resourceId must be a string") as caught:
        adapter(server).create(request())
    assert not isinstance(caught.value, SlotUnavailable)
    assert len(server.sent("POST")) == 1


@pytest.mark.parametrize(
    "answer, expected",
    [
        (lambda body: {"_id": "bk-2", **body}, "bk-2"),
        (lambda body: {"bookingId": 42, **body}, "42"),
        (lambda body: {"data": {"id": "bk-3", **body}}, "bk-3"),
        (lambda body: {"id": "bk-4"}, "bk-4"),  # an answer without times: what we sent is recorded
        (lambda body: {"id": "bk-5", "startDateTime": None, "endDateTime": "soon"}, "bk-5"),
    ],
)
def test_the_booking_id_is_read_defensively(answer, expected):
    record = adapter(FakeRocketLead(posts=[answer])).create(request())
    assert record.external_id == expected
    assert (record.meeting.start, record.meeting.end) == (START, END)


def test_an_answer_without_a_booking_id_is_a_lost_answer_so_it_is_not_booked_twice():
    server = FakeRocketLead(posts=[lambda body: {"organizationId": "org-1", **body}])
    with pytest.raises(AnswerLost, match="no booking id .* probably made"):
        adapter(server).create(request())
    assert len(server.sent("POST")) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(504, json={"statusCode": 504, "message": "Gateway Timeout"}),
        httpx.Response(500, json={"statusCode": 500, "message": "Internal server error"}),
        httpx.Response(201, text="not json"),
    ],
)
def test_a_booking_post_without_a_usable_answer_is_lost_and_never_resent(answer):
    server = FakeRocketLead(posts=[answer])
    with pytest.raises(AnswerLost):
        adapter(server).create(request())
    assert len(server.sent("POST")) == 1


def test_the_name_keeps_our_reference_apart_from_the_title():
    from bookingsync.adapters.rocketlead import booking_name, name_reference

    assert name_reference(booking_name(request().meeting, "bsw_1")) == ("Intro call", "bsw_1")
    assert name_reference("Plain [not ours]") == ("Plain [not ours]", None)
    assert name_reference(None) == (None, None)


def test_a_calendar_without_a_usable_zone_leaves_the_timezone_unset_and_is_looked_up_once():
    server = FakeRocketLead(calendar={"id": "cal-1", "timezone": "Mars/Olympus"})
    a = adapter(server)
    assert a.create(request()).meeting.timezone is None
    a.create(request())
    assert len(server.sent("GET", "/connect/calendar/")) == 1  # the answer is cached
    wrapped = FakeRocketLead(calendar={"data": {"timeZone": "America/New_York"}})
    assert adapter(wrapped).create(request()).meeting.timezone == "America/New_York"


def test_a_calendar_lookup_that_fails_for_now_is_a_retried_failure_not_a_refusal():
    """The zone is required before any wall time is read: a 5xx must not turn into "not offered"."""
    server = FakeRocketLead(
        calendar=httpx.Response(503, json={"statusCode": 503, "message": "Unavailable"}),
        slots=[availability(slot("rs-1", start="2026-03-10T16:00:00", end="2026-03-10T16:30:00"))],
    )
    a = adapter(server)
    with pytest.raises(ProviderUnavailable, match="timezone of calendar cal-1 .* retried later") as caught:
        a.create(request())
    assert not isinstance(caught.value, SlotUnavailable)
    assert server.sent("GET", "/connect/availability/") == [] and server.sent("POST") == []
    server.calendar = {"id": "cal-1", "timezone": "Europe/Berlin"}  # the calendar answers again
    record = a.create(request())
    assert (record.meeting.start, record.meeting.end, record.meeting.timezone) == (
        START,
        END,
        "Europe/Berlin",
    )
    lookups = len(server.sent("GET", "/connect/calendar/"))
    a.create(request())
    assert len(server.sent("GET", "/connect/calendar/")) == lookups  # found once, then cached


def test_a_missing_calendar_is_not_found():
    from bookingsync.models.errors import ProviderNotFound

    server = FakeRocketLead(
        calendar=httpx.Response(404, json={"statusCode": 404, "message": "Calendar not found"})
    )
    with pytest.raises(ProviderNotFound):
        adapter(server).create(request())
    assert server.sent("POST") == []


# -- clocks going back and forward (Europe/Berlin, 2026-10-25: 03:00 CEST -> 02:00 CET) -------------

FIRST_TWO = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST, the first 02:00
SECOND_TWO = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET, the second 02:00


def fold_slots(*, first: bool = True, second: bool = True) -> dict:
    """Slots written as local wall times, ordered by time, as a calendar in Berlin would list them."""
    listed = []
    if first:
        listed += [
            slot("rs-first", start="2026-10-25T02:00:00", end="2026-10-25T02:30:00"),
            slot("rs-first-b", start="2026-10-25T02:30:00", end="2026-10-25T02:00:00"),
        ]
    if second:
        listed += [slot("rs-second", start="2026-10-25T02:00:00", end="2026-10-25T02:30:00")]
    return availability(*listed)


@pytest.mark.parametrize("start, expected", [(FIRST_TWO, "rs-first"), (SECOND_TWO, "rs-second")])
def test_a_local_time_in_the_fold_books_the_slot_whose_instant_is_the_meetings(start, expected):
    server = FakeRocketLead(slots=[fold_slots()])
    record = adapter(server).create(request(start=start, end=start + timedelta(minutes=30)))
    assert server.bodies[-1]["resourceSlotId"] == expected
    # The mirror records the hour that was booked, not the first reading of "02:00".
    assert (record.meeting.start, record.meeting.end) == (start, start + timedelta(minutes=30))


def test_the_second_hour_alone_in_the_answer_is_not_guessed_from_the_window():
    # We ask from three hours before the meeting; a server that still lists "02:00" only once may
    # list from wherever it likes (undocumented), so that one listing may be either hour: refused.
    server = FakeRocketLead(slots=[fold_slots(first=False)])
    with pytest.raises(SlotUnavailable, match="occurs twice in Europe/Berlin"):
        adapter(server).create(request(start=SECOND_TWO, end=SECOND_TWO + timedelta(minutes=30)))
    assert server.sent("POST") == []


def test_the_second_hour_is_booked_when_both_hours_are_listed():
    server = FakeRocketLead(slots=[fold_slots()])
    adapter(server).create(request(start=SECOND_TWO, end=SECOND_TWO + timedelta(minutes=30)))
    assert server.bodies[-1]["resourceSlotId"] == "rs-second"


def test_a_fold_slot_nothing_settles_is_not_booked():
    # One listing of "02:00" while the meeting is the first 02:00: it may be either hour.
    server = FakeRocketLead(slots=[fold_slots(second=False)])
    server.slots = [
        availability(
            slot("rs-one", start="2026-10-25T02:00:00", end="2026-10-25T02:30:00"),
            slot("rs-one", start="2026-10-25T02:00:00", end="2026-10-25T02:30:00", resource="res-2"),
        )
    ]
    with pytest.raises(SlotUnavailable, match="occurs twice in Europe/Berlin"):
        adapter(server, resource_id="res-1").create(
            request(start=FIRST_TWO, end=FIRST_TWO + timedelta(minutes=30))
        )
    assert server.sent("POST") == []


def test_a_local_time_in_the_gap_is_no_slot():
    # 2026-03-29: Berlin skips 02:00-03:00. A slot listed at 02:30 local names no instant.
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET
    gap = availability(slot("rs-gap", start="2026-03-29T02:30:00", end="2026-03-29T03:00:00"))
    with pytest.raises(SlotUnavailable, match="is not offered"):
        adapter(FakeRocketLead(slots=[gap])).create(request(start=start, end=start + timedelta(minutes=30)))


def test_normalise_refuses_a_fold_time_it_cannot_settle_and_a_gap_time():
    with pytest.raises(NormaliseError, match="occurs twice"):
        normalise_booking(
            booking(startDateTime="2026-10-25T02:00:00", endDateTime="2026-10-25T02:30:00"),
            timezone="Europe/Berlin",
        )
    with pytest.raises(NormaliseError, match="does not exist"):
        normalise_booking(
            booking(startDateTime="2026-03-29T02:30:00", endDateTime="2026-03-29T03:30:00"),
            timezone="Europe/Berlin",
        )
    settled = normalise_booking(
        booking(startDateTime="2026-10-25T02:00:00", endDateTime="2026-10-25T02:30:00"),
        timezone="Europe/Berlin",
        at=(SECOND_TWO, SECOND_TWO + timedelta(minutes=30)),
    )
    assert settled.meeting.start == SECOND_TWO


# -- HTTP policy and errors ----------------------------------------------------------------------


def test_a_403_on_booking_names_the_write_scope():
    server = FakeRocketLead(posts=[httpx.Response(403, json={"statusCode": 403, "message": "Forbidden"})])
    with pytest.raises(
        ProviderAuthError, match="lacks the 'write' scope that booking a calendar slot needs"
    ) as caught:
        adapter(server).create(request())
    assert caught.value.status == 403 and "Forbidden" in str(caught.value)


def test_a_403_on_delete_names_the_admin_scope():
    server = FakeRocketLead(
        deletes=[httpx.Response(403, json={"statusCode": 403, "message": "Insufficient scope"})]
    )
    with pytest.raises(ProviderAuthError, match="lacks the 'admin' scope") as caught:
        adapter(server).cancel("bk-1")
    assert "Settings → API Tokens" in str(caught.value) and caught.value.status == 403


def test_a_401_says_the_token_is_refused():
    unauthorized = httpx.Response(401, json={"statusCode": 401, "message": "Unauthorized"})
    server = FakeRocketLead(slots=[unauthorized], calendar=unauthorized)
    with pytest.raises(ProviderAuthError, match="missing, malformed, expired or revoked") as caught:
        adapter(server).create(request())
    assert caught.value.status == 401 and server.sent("POST") == []


def test_a_5xx_on_availability_is_retried():
    server = FakeRocketLead(
        slots=[httpx.Response(503, json={"statusCode": 503, "message": "busy"}), availability(slot("rs-1"))]
    )
    sleeps = Sleeps()
    assert adapter(server, sleep=sleeps).create(request()).external_id == "bk-1"
    assert len(server.sent("GET", "/connect/availability/")) == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.Response(502, json={"statusCode": 502, "message": "Bad gateway"}),
    ],
)
def test_a_booking_post_is_not_replayed_after_a_timeout_or_5xx(failure):
    server = FakeRocketLead(posts=[failure])
    with pytest.raises(ProviderUnavailable):
        adapter(server).create(request())
    assert len(server.sent("POST")) == 1


def test_cancel_deletes_the_booking():
    server = FakeRocketLead()
    adapter(server).cancel("bk/1")
    (delete,) = server.sent("DELETE")
    assert delete.url.raw_path == b"/connect/calendar_bookings/bk%2F1"
    assert delete.headers["Authorization"] == f"Bearer {TOKEN}"


def test_cancel_of_a_booking_already_gone_succeeds():
    server = FakeRocketLead(
        deletes=[httpx.Response(404, json={"statusCode": 404, "message": "Booking not found"})]
    )
    adapter(server).cancel("bk-1")
    assert len(server.sent("DELETE")) == 1


def test_cancel_retries_a_5xx_because_delete_is_idempotent():
    server = FakeRocketLead(
        deletes=[httpx.Response(500, json={"statusCode": 500, "message": "oops"}), httpx.Response(204)]
    )
    adapter(server).cancel("bk-1")
    assert len(server.sent("DELETE")) == 2


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {"statusCode": 400, "message": "Validation failed: tableId is required"},
            "Validation failed: tableId is required",
        ),
        (
            {"statusCode": 400, "message": ["a is bad", "b is bad"], "error": "Bad Request"},
            "a is bad; b is bad",
        ),
        ({"statusCode": 400, "error": "Bad Request"}, "Bad Request"),
        (["not", "an", "envelope"], ""),
    ],
)
def test_error_message_reads_the_envelope(body, expected):
    assert error_message(httpx.Response(400, json=body)) == expected


# -- what the adapter does not do -----------------------------------------------------------------


def test_it_only_books_and_cancels():
    a = adapter(FakeRocketLead())
    assert a.capabilities == {Capability.CREATE, Capability.CANCEL}
    assert isinstance(a, Writer)
    # No read, webhook or in-place move: the adapter has no such methods, not stubs that refuse.
    assert not isinstance(a, Reader) and not isinstance(a, WebhookReceiver) and not isinstance(a, Mover)
    assert not any(hasattr(a, name) for name in ("read", "parse_webhook", "reschedule", "find_booking"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"token": "live_" + "ab" * 32}, "must start with 'rocketlead_'"),
        ({"token": "  "}, "token is empty"),
        ({"calendar_id": ""}, "calendar_id is empty"),
        ({"resource_id": " "}, "resource_id is empty"),
        ({"max_slot_retries": -1}, "max_slot_retries"),
        ({"table_entry_ids": {"not an email": "lead-1"}}, "not an email address"),
    ],
)
def test_config_errors_name_the_setting(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        adapter(FakeRocketLead(), **kwargs)


def test_a_base_url_ending_in_connect_is_not_doubled():
    server = FakeRocketLead()
    a = RocketLeadAdapter(
        connection_id="rl",
        base_url="https://api.rocketlead.io/connect/",
        token=TOKEN,
        calendar_id="cal-1",
        appointment_type_id="apt-1",
        transport=httpx.MockTransport(server),
    )
    a.cancel("bk-1")
    assert server.sent("DELETE")[0].url.path == "/connect/calendar_bookings/bk-1"
    a.close()


# -- normalise ------------------------------------------------------------------------------------


def booking(**fields) -> dict:
    return {
        "organizationId": "org-1",
        "calendarId": "cal-1",
        "id": "bk-1",
        "name": " Demo ",
        "createdAt": "2026-03-02T12:00:00Z",
        "startDateTime": "2026-03-10T15:00:00Z",
        "endDateTime": "2026-03-10T15:30:00Z",
        **fields,
    }


def test_normalise_a_booking_through_the_adapter_uses_the_calendar_zone():
    a = adapter(FakeRocketLead())
    a.create(request())  # learns the calendar's zone
    record = a.normalise(
        RawRecord(payload=booking(startDateTime="2026-03-10T16:00:00", endDateTime="2026-03-10T16:30:00"))
    )
    assert (record.meeting.start, record.meeting.end, record.meeting.timezone) == (
        START,
        END,
        "Europe/Berlin",
    )
    assert record.meeting.title == "Demo"


def test_normalise_reads_the_lead_through_the_schema_special_types():
    record = normalise_booking(
        booking(
            tableSchemaFields={
                "f1": {"friendlyName": "E-Mail", "type": "text", "specialType": "email"},
                "f2": {"friendlyName": "First", "type": "text", "specialType": "firstName"},
                "f3": {"friendlyName": "Last", "type": "text", "specialType": "lastName"},
                "f4": {"friendlyName": "Phone", "type": "text", "specialType": "phone"},
                "f5": {
                    "friendlyName": "Work mail",
                    "type": "text",
                    "specialType": "email",
                    "primaryOfSpecialType": True,
                },
            },
            tableEntryData={
                "data": {
                    "f1": "private@buyer.com",
                    "f2": "Ann",
                    "f3": "Lee",
                    "f4": "+49 30 1234",
                    "f5": " Ann@Buyer.com ",
                }
            },
        )
    )
    assert record.meeting.attendee == Person(email="ann@buyer.com", name="Ann Lee", phone="+49 30 1234")


def test_normalise_leaves_out_an_unusable_lead_email():
    record = normalise_booking(
        booking(
            tableSchemaFields={"f1": {"specialType": "email"}},
            tableEntryData={"data": {"f1": "not-an-email"}},
        )
    )
    assert record.meeting.attendee == Person()


def test_normalise_a_booking_with_deleted_at_is_cancelled():
    record = normalise_booking(booking(deletedAt="2026-03-03T09:00:00Z"))
    assert record.meeting.status is MeetingStatus.CANCELLED
    assert normalise_booking(booking(deletedAt=None)).meeting.status is MeetingStatus.SCHEDULED


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "must be a JSON object"),
        (booking(id=None), "has no id"),
        (booking(id=""), "has no id"),
        (booking(startDateTime="2026-03-10T16:00:00"), "not an ISO 8601 time with an offset"),
        (booking(endDateTime="tomorrow"), "endDateTime 'tomorrow'"),
        (booking(endDateTime="2026-03-10T14:00:00Z"), "ends .* before it starts"),
    ],
)
def test_normalise_refuses_what_it_cannot_read(payload, message):
    with pytest.raises(NormaliseError, match=message):
        normalise_booking(payload)


def test_normalise_ignores_an_unreadable_created_at_and_an_invalid_zone():
    record = normalise_booking(booking(createdAt="yesterday"), timezone="Not/AZone")
    assert record.source_updated_at is None and record.meeting.timezone is None
