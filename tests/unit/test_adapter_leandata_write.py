"""LeanData BookIt writes: create by either endpoint, form fields, races, lost answers, reschedule, cancel.

The fake speaks the bodies of LeanData's BookIt API OpenAPI file (request tables and examples;
https://bookit-api.leandata.com/) and its guides to booking and managing a meeting and problem types
(https://docs.leandata.com).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookingsync.adapters.base import BookingRequest, Capability
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.models.errors import (
    ConfigError,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person

START = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
START_MS = 1_773_158_400_000
END_MS = START_MS + 30 * 60_000
LATER_MS = START_MS + 24 * 3_600_000
MID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6"  # 52 characters, like BookIt's ids
REP = "rep@seller.com"
PROSPECT = "ada@buyer.com"
USERS = {"0": "0058c00000CssZGAAZ", "1": "0058c00000CtXJhAAN", "2": "0058c00000AukyPAAR"}
FORM = [
    {"name": "First Name", "type": "text", "required": True},
    {"name": "Last Name", "type": "text", "required": True},
    {"name": "Email", "type": "text", "required": True},
    {"name": "Additional Guest Emails", "type": "textarea", "required": False},
]
SLOTS = [
    (START_MS - 3_600_000, START_MS - 1_800_000, [0]),
    (START_MS, END_MS, [2, 0]),
    (LATER_MS, LATER_MS + 1_800_000, [1]),
]


def meeting(
    *,
    start_ms: int = START_MS,
    end_ms: int = END_MS,
    name: str | None = "Ada Lovelace",
    phone: str | None = "+1 555 0100",
    timezone: str | None = "Europe/London",
) -> Meeting:
    return Meeting(
        status=MeetingStatus.SCHEDULED,
        title="Intro call",
        start=START + timedelta(milliseconds=start_ms - START_MS),
        end=START + timedelta(milliseconds=end_ms - START_MS),
        timezone=timezone,
        attendee=Person(email=PROSPECT, name=name, phone=phone),
    )


def request(**kwargs) -> BookingRequest:
    return BookingRequest(meeting=meeting(**kwargs), reference="mtg_0001")


def availability(*, pool: bool | None = False, slots=SLOTS, form=FORM, prefill=None, current=None) -> dict:
    """A `fetch-availability` answer: meeting, pageInfo, userIdToInfoMap, availability[, calendarEvent]."""
    body = {
        "meeting": {
            "name": "Intro call",
            "duration": {"unit": "min", "value": 30},
            "formFields": form,
            "description": "",
            "redirectURL": "",
            "internalName": "intro",
            "pageStyle": {"styleColor": "#000"},
        },
        "pageInfo": {
            "displayAllPoolAvailability": pool,
            "userIds": [] if pool else [USERS["0"]],
            "nonSFDCUserIds": [],
            "prefillFields": prefill or {},
        },
        "userIdToInfoMap": {
            uid: {"FirstName": "Rep", "LastName": k, "Email": REP, "TimeZoneSidKey": "America/Los_Angeles"}
            for k, uid in USERS.items()
        },
        "availability": {
            "indexToUserIdMap": USERS,
            "timeSlots": [{"start_time": s, "end_time": e, "users": u} for s, e, u in slots],
        },
    }
    if current is not None:
        body["calendarEvent"] = {
            "id": MID,
            "title": "Intro call",
            "status": "confirmed",
            "scheduledTime": {"start_time": current[0], "end_time": current[1]},
        }
    return body


def routed(**kwargs) -> dict:
    """A `route-and-fetch-availability` answer routed to a calendar."""
    inner = availability(**kwargs)
    return {
        "routing": {
            "responseType": "calendar",
            "calendarLink": "https://x.my.leandata.com/l/abc",
            "token": "tok-1",
        },
        "scheduling": {k: inner[k] for k in ("meeting", "pageInfo", "availability", "userIdToInfoMap")},
    }


def booked(mid: str = MID, start_ms: int = START_MS, end_ms: int = END_MS, status: str = "scheduled") -> dict:
    """A meeting as `GET /v1/meeting/:id` and `GET /v1/meetings` describe it."""
    return {
        "bookIt": {"status": status},
        "calendarEvent": {
            "id": mid,
            "title": "Intro call",
            "status": "confirmed",
            "scheduledTime": {"start_time": start_ms, "end_time": end_ms},
            "organizer": {"email": REP},
            "attendees": [
                {"email": REP, "responseStatus": "accepted", "organizer": True, "self": True},
                {"email": PROSPECT, "responseStatus": "needsAction"},
            ],
        },
    }


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message})


TAKEN = error(400, "The selected time is no longer available.")


class FakeBookIt:
    """Answers per (METHOD, path) in order; the last answer repeats. An exception is raised."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list] = {("GET", "/v1/meetings"): [[]]}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers) -> FakeBookIt:
        self.routes[(method, path)] = list(answers)
        return self

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        answers = self.routes.get((req.method, req.url.path))
        if answers is None:
            return (
                error(404, "Meeting not found")
                if req.url.path.startswith("/v1/meeting/")
                else error(404, "no route")
            )
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def bodies(self, method: str, path: str) -> list:
        return [json.loads(r.content) for r in self.calls(method, path)]

    @property
    def booking_posts(self) -> list[httpx.Request]:
        return self.calls("POST", "/v1/meeting") + self.calls("POST", "/v1/round-robin-meeting")


def adapter(server: FakeBookIt, **kwargs) -> LeanDataAdapter:
    kwargs.setdefault("sleep", lambda s: None)
    return LeanDataAdapter(
        connection_id="ld",
        base_url="https://api.leandata.com",
        api_key="key-1",
        transport=httpx.MockTransport(server),
        requests_per_second=1000,
        **kwargs,
    )


def link_server(*answers, created=None) -> FakeBookIt:
    server = FakeBookIt()
    server.on("POST", "/v1/scheduling/fetch-availability", *(answers or (availability(),)))
    server.on("POST", "/v1/meeting", created or {"meetingId": MID, "organizerEmail": REP})
    server.on(
        "POST",
        "/v1/round-robin-meeting",
        created or {"meetingId": MID, "organizerEmail": REP, "selectedUserId": USERS["2"]},
    )
    server.on("GET", f"/v1/meeting/{MID}", booked())
    return server


# -- create: the endpoint the flag demands ------------------------------------------------------


@pytest.mark.parametrize("flag", [False, None])
def test_link_booking_without_pool_availability_posts_v1_meeting(flag):
    server = link_server(availability(pool=flag))
    record = adapter(server, link_id="Lw5mjKK").create(request())

    assert [(r.method, r.url.path) for r in server.requests] == [
        ("GET", "/v1/meetings"),  # is it booked already? (a replayed create)
        ("POST", "/v1/scheduling/fetch-availability"),
        ("POST", "/v1/meeting"),
        ("GET", f"/v1/meeting/{MID}"),
    ]
    assert server.bodies("POST", "/v1/scheduling/fetch-availability") == [{"linkId": "Lw5mjKK"}]
    assert server.bodies("POST", "/v1/meeting") == [
        {
            "linkId": "Lw5mjKK",
            "scheduledTime": {"start_time": START_MS, "end_time": END_MS, "timezone": "Europe/London"},
            "userFields": [
                {"name": "First Name", "type": "text", "value": "Ada"},
                {"name": "Last Name", "type": "text", "value": "Lovelace"},
                {"name": "Email", "type": "text", "value": PROSPECT},
                {"name": "Additional Guest Emails", "type": "textarea", "value": []},
            ],
        }
    ]
    assert record.external_id == MID
    assert record.scope == PROSPECT
    assert record.meeting.start == START and record.meeting.hosts == (REP,)
    assert record.meeting.attendee.email == PROSPECT


def test_pool_availability_books_round_robin_with_the_slots_users_in_order():
    server = link_server(availability(pool=True))
    record = adapter(server, link_id="Lw5mjKK").create(request())

    assert server.calls("POST", "/v1/meeting") == []
    [body] = server.bodies("POST", "/v1/round-robin-meeting")
    assert body["linkId"] == "Lw5mjKK"
    # slot users [2, 0] through indexToUserIdMap, order kept: it is the round-robin priority
    assert body["scheduledTime"] == {
        "start_time": START_MS,
        "end_time": END_MS,
        "timezone": "Europe/London",
        "users": [USERS["2"], USERS["0"]],
    }
    assert record.external_id == MID


def test_routing_books_with_the_token_and_fills_the_prospect_inputs():
    server = FakeBookIt()
    server.on("POST", "/v1/scheduling/route-and-fetch-availability", routed(pool=True))
    server.on(
        "POST",
        "/v1/round-robin-meeting",
        {"meetingId": MID, "organizerEmail": REP, "selectedUserId": USERS["2"]},
    )
    server.on("GET", f"/v1/meeting/{MID}", booked())
    ld = adapter(
        server,
        trigger_node="New Webform Prospect",
        routing_inputs={
            "Email": "{email}",
            "FirstName": "{first_name}",
            "LastName": "{last_name}",
            "PhoneNumber": "{phone}",
            "Company": "Buyer Inc",
            "ld_bookit_log_id": "{uid}",
        },
    )
    ld.create(request())

    [route] = server.bodies("POST", "/v1/scheduling/route-and-fetch-availability")
    assert route["triggerNode"] == "New Webform Prospect"
    assert str(uuid.UUID(route["uid"])) == route["uid"]
    assert route["prospect"] == {
        "Email": PROSPECT,
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "PhoneNumber": "+1 555 0100",
        "Company": "Buyer Inc",
        "ld_bookit_log_id": route["uid"],
    }
    [body] = server.bodies("POST", "/v1/round-robin-meeting")
    assert body["token"] == "tok-1" and "linkId" not in body


def test_routing_to_a_redirect_has_nothing_to_book():
    server = FakeBookIt()
    server.on(
        "POST",
        "/v1/scheduling/route-and-fetch-availability",
        {
            "routing": {"responseType": "redirect", "redirect": "https://buyer.example/thanks"},
            "scheduling": None,
        },
    )
    with pytest.raises(ProviderRejected, match="'redirect', not to a calendar"):
        adapter(server, trigger_node="New Webform Prospect").create(request())
    assert server.booking_posts == []


@pytest.mark.parametrize("page_info", [None, {"displayAllPoolAvailability": "yes"}])
def test_an_unreadable_pool_flag_is_not_guessed(page_info):
    body = availability()
    if page_info is None:
        del body["pageInfo"]
    else:
        body["pageInfo"] = page_info
    server = link_server(body)
    with pytest.raises(ProviderUnavailable, match="displayAllPoolAvailability"):
        adapter(server, link_id="Lw5mjKK").create(request())
    assert server.booking_posts == []


def test_a_connection_without_booking_settings_refuses_create_with_a_sentence():
    assert {Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL} <= LeanDataAdapter.capabilities
    server = link_server()
    with pytest.raises(ProviderRejected, match="set options.link_id .* or options.trigger_node"):
        adapter(server).create(request())
    assert server.requests == []


def test_a_meeting_already_booked_at_that_time_is_returned_without_booking():
    server = link_server()
    server.on("GET", "/v1/meetings", [booked("other", LATER_MS, LATER_MS + 1_800_000), booked(MID)])
    record = adapter(server, link_id="Lw5mjKK").create(request())
    assert record.external_id == MID
    assert [r.url.path for r in server.requests] == ["/v1/meetings"]
    lookup = server.requests[0].url.params
    assert lookup["prospectEmail"] == PROSPECT
    assert lookup["start"] == "2026-03-10T15:59:00.000Z" and lookup["end"] == "2026-03-10T16:01:00.000Z"


def test_a_cancelled_meeting_at_that_time_does_not_count_as_booked():
    server = link_server()
    server.on("GET", "/v1/meetings", [booked("old", status="canceled")])
    adapter(server, link_id="Lw5mjKK").create(request())
    assert len(server.booking_posts) == 1


# -- form fields ----------------------------------------------------------------------------------


def test_form_fields_come_from_the_attendee_prefill_and_form_defaults():
    form = [
        {"name": "First Name", "type": "text", "required": True},
        {"name": "Last Name", "type": "text", "required": True},
        {"name": "Email", "type": "text", "required": True},
        {"name": "Phone Number", "type": "text", "required": True},
        {"name": "Company", "type": "text", "required": True},
        {"name": "Job Title", "type": "text", "required": True},
        {"name": "Booked via", "type": "text", "required": False},
        {"name": "Anything else?", "type": "textarea", "required": False},
        {"name": "Additional Guest Emails", "type": "textarea", "required": False},
        {"name": "", "type": "text", "required": False},  # undefined: left out
    ]
    server = link_server(availability(form=form, prefill={"Job Title": "CTO"}))
    ld = adapter(
        server,
        link_id="Lw5mjKK",
        form_defaults={
            "company": "Buyer Inc",
            "Booked via": "bookingsync {reference}",
            "Additional Guest Emails": "a@buyer.com, b@buyer.com",
        },
    )
    ld.create(request())
    [body] = server.bodies("POST", "/v1/meeting")
    assert {f["name"]: f["value"] for f in body["userFields"]} == {
        "First Name": "Ada",
        "Last Name": "Lovelace",
        "Email": PROSPECT,
        "Phone Number": "+1 555 0100",  # the attendee's
        "Company": "Buyer Inc",  # form_defaults, label matched loosely
        "Job Title": "CTO",  # pageInfo.prefillFields
        "Booked via": "bookingsync mtg_0001",  # our reference, for want of a field of its own
        "Anything else?": "",  # optional, no value: sent empty
        "Additional Guest Emails": ["a@buyer.com", "b@buyer.com"],
    }
    assert [f["type"] for f in body["userFields"]][-1] == "textarea"


def test_the_standard_fields_are_sent_even_when_form_fields_omit_them():
    server = link_server(availability(form=[{"name": "Company", "type": "text", "required": False}]))
    adapter(server, link_id="Lw5mjKK").create(request())
    [body] = server.bodies("POST", "/v1/meeting")
    assert [f["name"] for f in body["userFields"]] == ["Company", "First Name", "Last Name", "Email"]


@pytest.mark.parametrize(
    ("form", "kwargs", "named"),
    [
        (FORM + [{"name": "Company", "type": "text", "required": True}], {}, "'Company'"),
        (FORM + [{"name": "Phone", "type": "text", "required": True}], {"phone": None}, "'Phone'"),
        (FORM, {"name": "Ada"}, "'Last Name'"),  # no surname is invented
    ],
)
def test_a_required_field_without_a_value_is_refused_before_booking(form, kwargs, named):
    server = link_server(availability(form=form))
    with pytest.raises(ProviderRejected, match=f"requires the form field {named}.*form_defaults"):
        adapter(server, link_id="Lw5mjKK").create(request(**kwargs))
    assert server.booking_posts == []


def test_form_defaults_fill_what_the_attendee_lacks():
    server = link_server()
    adapter(server, link_id="Lw5mjKK", form_defaults={"Last Name": "-"}).create(request(name="Ada"))
    [body] = server.bodies("POST", "/v1/meeting")
    assert body["userFields"][:2] == [
        {"name": "First Name", "type": "text", "value": "Ada"},
        {"name": "Last Name", "type": "text", "value": "-"},
    ]


# -- slots and races ------------------------------------------------------------------------------


def test_a_slot_that_is_not_offered_is_slot_unavailable_naming_the_time():
    server = link_server()
    with pytest.raises(SlotUnavailable, match=r"2026-03-10T16:15:00Z–16:45:00Z is not among the times"):
        adapter(server, link_id="Lw5mjKK").create(
            request(start_ms=START_MS + 900_000, end_ms=END_MS + 900_000)
        )
    assert server.booking_posts == []


def test_a_taken_slot_is_retried_on_fresh_availability_then_booked():
    server = link_server()
    server.on("POST", "/v1/meeting", TAKEN, {"meetingId": MID, "organizerEmail": REP})
    record = adapter(server, link_id="Lw5mjKK").create(request())
    assert record.external_id == MID
    assert len(server.calls("POST", "/v1/scheduling/fetch-availability")) == 2
    assert len(server.booking_posts) == 2


def test_a_slot_taken_every_time_ends_in_slot_unavailable_after_bounded_tries():
    server = link_server()
    server.on("POST", "/v1/meeting", TAKEN)
    with pytest.raises(SlotUnavailable, match="taken by another booking 3 times") as caught:
        adapter(server, link_id="Lw5mjKK").create(request())
    assert caught.value.status == 400
    assert len(server.booking_posts) == 3
    assert len(server.calls("POST", "/v1/scheduling/fetch-availability")) == 3


def test_a_taken_slot_that_fresh_availability_no_longer_offers_is_slot_unavailable_at_once():
    server = link_server(availability(), availability(slots=[s for s in SLOTS if s[0] != START_MS]))
    server.on("POST", "/v1/meeting", TAKEN)
    with pytest.raises(SlotUnavailable, match="not among the times BookIt offers .* after 1 race"):
        adapter(server, link_id="Lw5mjKK").create(request())
    assert len(server.booking_posts) == 1


def test_a_used_one_booking_link_is_rejected_with_a_sentence():
    server = link_server()
    server.on(
        "POST", "/v1/meeting", error(400, "This link only allows one booking and has already been used.")
    )
    with pytest.raises(ProviderRejected, match="Lw5mjKK only allows one booking") as caught:
        adapter(server, link_id="Lw5mjKK").create(request())
    assert not isinstance(caught.value, SlotUnavailable)
    assert len(server.booking_posts) == 1


def test_other_booking_errors_carry_leandatas_message():
    server = link_server()
    server.on(
        "POST",
        "/v1/meeting",
        error(400, "Validation Error: Scheduled time is before the minimum booking notice"),
    )
    with pytest.raises(ProviderRejected, match="minimum booking notice"):
        adapter(server, link_id="Lw5mjKK").create(request())
    assert len(server.booking_posts) == 1


# -- a booking whose answer was lost --------------------------------------------------------------


@pytest.mark.parametrize("lost", [httpx.ReadTimeout("read timed out"), error(502, "Bad Gateway")])
def test_a_lost_booking_answer_looks_the_meeting_up_and_never_posts_twice(lost):
    server = link_server(availability(pool=True))
    server.on("POST", "/v1/round-robin-meeting", lost)
    server.on("GET", "/v1/meetings", [], [booked(MID)])  # before booking: none; after the loss: there
    record = adapter(server, link_id="Lw5mjKK").create(request())
    assert record.external_id == MID
    assert len(server.booking_posts) == 1
    assert len(server.calls("GET", "/v1/meetings")) == 2


def test_a_lost_booking_answer_with_no_meeting_found_is_unavailable_and_not_resent():
    server = link_server()
    server.on("POST", "/v1/meeting", httpx.ReadTimeout("read timed out"))
    with pytest.raises(
        ProviderUnavailable, match="shows no meeting of ada@buyer.com at that time.*not re-sent"
    ):
        adapter(server, link_id="Lw5mjKK").create(request())
    assert len(server.booking_posts) == 1
    assert len(server.calls("GET", "/v1/meetings")) == 2


def test_a_booking_that_never_left_is_raised_without_a_lookup():
    server = link_server()
    server.on("POST", "/v1/meeting", httpx.ConnectError("connection refused"))
    with pytest.raises(ProviderUnavailable, match="failed"):
        adapter(server, link_id="Lw5mjKK").create(request())
    assert len(server.calls("GET", "/v1/meetings")) == 1  # only the one before booking


def test_a_booking_whose_re_read_fails_is_recorded_from_the_answer():
    server = link_server()
    server.on("GET", f"/v1/meeting/{MID}", error(404, "Meeting not found"))
    record = adapter(server, link_id="Lw5mjKK").create(request())
    assert record.external_id == MID
    assert record.meeting.start == START and record.meeting.status == MeetingStatus.SCHEDULED
    assert record.meeting.hosts == (REP,) and record.meeting.timezone == "Europe/London"


# -- reschedule -----------------------------------------------------------------------------------


def reschedule_server(*answers) -> FakeBookIt:
    server = FakeBookIt()
    server.on(
        "POST", "/v1/scheduling/fetch-availability", *(answers or (availability(current=(START_MS, END_MS)),))
    )
    server.on("PATCH", f"/v1/meeting/{MID}", {"meetingId": MID, "organizerEmail": REP})
    server.on("GET", f"/v1/meeting/{MID}", booked(MID, LATER_MS, LATER_MS + 1_800_000))
    return server


def test_reschedule_fetches_availability_by_meeting_id_and_patches_scheduled_time():
    server = reschedule_server()
    record = adapter(server).reschedule(
        MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000, timezone=None)
    )
    assert server.bodies("POST", "/v1/scheduling/fetch-availability") == [{"meetingId": MID}]
    assert server.bodies("PATCH", f"/v1/meeting/{MID}") == [
        {"scheduledTime": {"start_time": LATER_MS, "end_time": LATER_MS + 1_800_000, "timezone": "UTC"}}
    ]
    assert record.external_id == MID and record.meeting.start == START + timedelta(days=1)


def test_reschedule_uses_the_configured_timezone_when_the_meeting_has_none():
    server = reschedule_server()
    adapter(server, timezone="America/Los_Angeles").reschedule(
        MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000, timezone=None)
    )
    assert (
        server.bodies("PATCH", f"/v1/meeting/{MID}")[0]["scheduledTime"]["timezone"] == "America/Los_Angeles"
    )


def test_reschedule_to_a_time_not_offered_is_slot_unavailable_without_a_patch():
    server = reschedule_server()
    with pytest.raises(SlotUnavailable, match="not among the times BookIt offers to move meeting"):
        adapter(server).reschedule(MID, request(start_ms=LATER_MS + 60_000, end_ms=LATER_MS + 1_860_000))
    assert server.calls("PATCH", f"/v1/meeting/{MID}") == []


def test_reschedule_to_where_the_meeting_already_is_sends_no_patch():
    server = reschedule_server(availability(current=(LATER_MS, LATER_MS + 1_800_000)))
    record = adapter(server).reschedule(MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000))
    assert server.calls("PATCH", f"/v1/meeting/{MID}") == []
    assert record.external_id == MID


def test_a_timed_out_patch_that_went_through_is_not_sent_again():
    server = reschedule_server()
    server.on("PATCH", f"/v1/meeting/{MID}", httpx.ReadTimeout("read timed out"))
    record = adapter(server).reschedule(MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000))
    assert len(server.calls("PATCH", f"/v1/meeting/{MID}")) == 1
    assert record.meeting.start == START + timedelta(days=1)


def test_a_timed_out_patch_that_did_not_apply_is_sent_once_more_after_a_re_read():
    server = reschedule_server()
    server.on(
        "PATCH",
        f"/v1/meeting/{MID}",
        httpx.ReadTimeout("read timed out"),
        {"meetingId": MID, "organizerEmail": REP},
    )
    server.on("GET", f"/v1/meeting/{MID}", booked(MID), booked(MID, LATER_MS, LATER_MS + 1_800_000))
    record = adapter(server).reschedule(MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000))
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("POST", "/v1/scheduling/fetch-availability"),
        ("PATCH", f"/v1/meeting/{MID}"),
        ("GET", f"/v1/meeting/{MID}"),  # still at the old time
        ("POST", "/v1/scheduling/fetch-availability"),
        ("PATCH", f"/v1/meeting/{MID}"),
        ("GET", f"/v1/meeting/{MID}"),
    ]
    assert record.meeting.start == START + timedelta(days=1)


def test_a_patch_lost_twice_is_not_sent_a_third_time():
    server = reschedule_server()
    server.on("PATCH", f"/v1/meeting/{MID}", httpx.ReadTimeout("read timed out"))
    server.on("GET", f"/v1/meeting/{MID}", booked(MID))
    with pytest.raises(ProviderUnavailable, match="not sending it a third time"):
        adapter(server).reschedule(MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000))
    assert len(server.calls("PATCH", f"/v1/meeting/{MID}")) == 2


def test_a_reschedule_race_is_retried_then_slot_unavailable():
    server = reschedule_server()
    server.on("PATCH", f"/v1/meeting/{MID}", TAKEN)
    with pytest.raises(SlotUnavailable, match="3 times before meeting"):
        adapter(server).reschedule(MID, request(start_ms=LATER_MS, end_ms=LATER_MS + 1_800_000))
    assert len(server.calls("PATCH", f"/v1/meeting/{MID}")) == 3


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_deletes_the_meeting():
    server = FakeBookIt().on("DELETE", f"/v1/meeting/{MID}", httpx.Response(200))
    assert adapter(server).cancel(MID) is None
    assert [(r.method, r.url.path, r.content) for r in server.requests] == [
        ("DELETE", f"/v1/meeting/{MID}", b"")
    ]


def test_cancelling_a_meeting_leandata_no_longer_knows_counts_as_done():
    server = FakeBookIt().on("DELETE", f"/v1/meeting/{MID}", error(404, "Meeting not found"))
    adapter(server).cancel(MID)
    assert len(server.requests) == 1


def test_cancel_is_replayed_after_a_server_error():
    server = FakeBookIt().on("DELETE", f"/v1/meeting/{MID}", error(503, "unavailable"), httpx.Response(200))
    adapter(server).cancel(MID)
    assert len(server.requests) == 2


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"link_id": "Lw5mjKK", "trigger_node": "New Webform Prospect"},
            "either link_id or trigger_node, not both",
        ),
        ({"routing_inputs": {"Email": "{email}"}}, "routing_inputs only applies with trigger_node"),
        ({"link_id": "Lw5mjKK", "timezone": "Mars/Olympus"}, "not an IANA timezone"),
        ({"link_id": "Lw5mjKK", "form_defaults": {"Company": 5}}, r"form_defaults\['Company'\] must be text"),
        ({"link_id": "  "}, "link_id must be"),
    ],
)
def test_bad_booking_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        adapter(FakeBookIt(), **kwargs)


def test_a_whole_bookit_link_url_is_read_as_its_link_id():
    server = link_server()
    adapter(server, link_id="https://leandata.my.leandata.com/l/Lw5mjKK").create(request())
    assert server.bodies("POST", "/v1/scheduling/fetch-availability") == [{"linkId": "Lw5mjKK"}]
