"""Meetergo v4: both credential kinds, page-number reads that end and sweep only when complete,
both record and webhook shapes, URL-token webhooks, and booking answers (standard, provisional,
slot race), cancel and reschedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookingsync.adapters.base import BookingRequest, Capability, RawRecord, ReadContext
from bookingsync.adapters.meetergo import (
    SWEEP_SCOPE,
    AppointmentRead,
    MeetergoAdapter,
    MeetergoSettings,
    normalise_appointment,
)
from bookingsync.models.errors import (
    AnswerLost,
    ConfigError,
    NormaliseError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SlotUnavailable,
    WebhookMalformed,
    WebhookUnauthorized,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
PERSONAL = "rgo-personal-token"
PLATFORM = "ak_live:0b6f7c1e-0000-4000-8000-000000000000:s3cret"
SECRET = "mg-url-token-Zq9"
HOOK_URL = f"https://sync.example.com/webhooks/mg?token={SECRET}"


def appointment(aid: str, **extra) -> dict:
    """The paginated-listing shape: times in meetingInfo, host in hostingInfo."""
    base = {
        "id": aid,
        "secret": f"secret-{aid}",
        "ics": "BEGIN:VCALENDAR…",
        "meetingInfo": {
            "start": "2026-03-10T16:00:00+01:00",
            "end": "2026-03-10T16:30:00+01:00",
            "channel": "zoom",
            "meetingLink": "https://zoom.us/j/1",
        },
        "hostingInfo": {
            "mainHost": {"email": "Host@Seller.com"},
            "meetingLink": "https://zoom.us/j/1",
            "googleEventId": "g1",
            "calendarSyncProviders": {},
        },
        "attendees": [
            {
                "email": "Jane@Example.com",
                "firstname": "Jane",
                "lastname": "Doe",
                "timezone": "America/New_York",
            }
        ],
        "cancel": None,
    }
    base.update(extra)
    return base


def webhook_payload(aid: str = "appt-uuid-12345", kind: str = "booking_created") -> dict:
    """The documented booking_created payload."""
    return {
        "webhookType": kind,
        "id": aid,
        "secret": "secret-token-xyz",
        "start": "2024-01-15T09:00:00+01:00",
        "end": "2024-01-15T09:30:00+01:00",
        "location": None,
        "isCancelled": False,
        "rescheduledAt": None,
        "meetingInfo": {"channel": "zoom", "meetingLink": "https://zoom.us/j/123456789"},
        "attendees": [
            {
                "id": "att-uuid-789",
                "email": "customer@example.com",
                "firstname": "Jane",
                "lastname": "Doe",
                "fullname": "Jane Doe",
                "phone": "+1-555-123-4567",
                "timezone": "America/New_York",
                "language": "en",
            }
        ],
        "hosts": [{"id": "host-uuid-123", "email": "john@example.com", "fullName": "John Smith"}],
        "hostIds": ["host-uuid-123"],
        "meetingType": {
            "id": "mt-uuid-456",
            "slug": "discovery-call",
            "meetingInfo": {"name": "Discovery Call", "duration": 30},
        },
        "meetingTypeId": "mt-uuid-456",
        "companyId": "company-uuid-789",
        "createdAt": "2024-01-14T15:30:00Z",
        "updatedAt": "2024-01-14T15:30:00Z",
    }


class FakeMeetergo:
    """The documented endpoints. `answers[(method, path)]` overrides with a Response or a list of
    Responses (served in turn); the listing is 0-based unless `one_based`."""

    def __init__(
        self,
        appointments: list[dict] | None = None,
        *,
        one_based: bool = False,
        ignore_page: bool = False,
        with_total: bool = True,
        between_pages=None,
    ) -> None:
        self.appointments = list(appointments or [])
        self.one_based = one_based
        self.ignore_page = ignore_page
        self.with_total = with_total
        self.between_pages = between_pages
        self.answers: dict[tuple[str, str], object] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key in self.answers:
            answer = self.answers[key]
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            return answer  # type: ignore[return-value]
        if key == ("GET", "/v4/appointment/paginated"):
            return self._page(request)
        if request.url.path.startswith("/v4/appointment/"):
            aid = request.url.path.removeprefix("/v4/appointment/")
            found = next((a for a in self.appointments if a["id"] == aid), None)
            if found is None:
                return httpx.Response(
                    404, json={"statusCode": 404, "message": "Appointment not found", "error": "Not Found"}
                )
            if request.method == "GET":
                return httpx.Response(200, json=found)
            if request.method == "DELETE":
                found["cancel"] = {"actionSource": "api", "actionAt": "2026-03-02T12:00:00Z"}
                return httpx.Response(204)
        return httpx.Response(
            404,
            json={
                "statusCode": 404,
                "message": f"Cannot {request.method} {request.url.path}",
                "error": "Not Found",
            },
        )

    def _page(self, request: httpx.Request) -> httpx.Response:
        if self.between_pages is not None:
            self.between_pages(len(self.list_requests) - 1, self)
        page = int(request.url.params["page"])
        size = int(request.url.params["pageSize"])
        index = 0 if self.ignore_page else page - (1 if self.one_based else 0)
        index = max(index, 0)
        items = self.appointments[index * size : (index + 1) * size]
        body: dict = {"appointments": items}
        if self.with_total:
            body["total"] = len(self.appointments)
        return httpx.Response(200, json=body)

    @property
    def list_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v4/appointment/paginated"]

    @property
    def pages_asked(self) -> list[int]:
        return [int(r.url.params["page"]) for r in self.list_requests]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def adapter(server, **kwargs) -> MeetergoAdapter:
    kwargs.setdefault("token", PERSONAL)
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("requests_per_minute", 1e9)
    kwargs.setdefault("webhook_secret", SECRET)
    return MeetergoAdapter(
        connection_id="mg",
        base_url="https://api.meetergo.com",
        transport=httpx.MockTransport(server),
        **kwargs,
    )


def writer(server, **kwargs) -> MeetergoAdapter:
    return adapter(server, meeting_type_id="mt-1", host_ids=["host-1"], **kwargs)


def context() -> ReadContext:
    return ReadContext(now=NOW)


def many(n: int) -> list[dict]:
    return [appointment(f"a{i:03d}") for i in range(n)]


def request_for(title: str = "Intro call") -> BookingRequest:
    meeting = Meeting(
        status=MeetingStatus.SCHEDULED,
        title=title,
        start=START,
        end=START + timedelta(minutes=30),
        timezone="Europe/Berlin",
        attendee=Person(email="ann@buyer.com", name="Ann Buyer"),
        hosts=("rep@seller.com",),
    )
    return BookingRequest(meeting=meeting, reference="mtg_123")


# -- configuration and auth -----------------------------------------------------------------------


def test_capabilities():
    assert MeetergoAdapter.provider == "meetergo"
    assert MeetergoAdapter.capabilities == {
        Capability.LIST_CHANGES,
        Capability.RECEIVE_WEBHOOKS,
        Capability.CREATE,
        Capability.CANCEL,
        Capability.FIND_BOOKING,
    }
    base = {"base_url": "https://api.meetergo.com", "token": "t"}
    assert MeetergoSettings(**base, meeting_type_id="mt-1", host_ids=("h",)).booking_problem() is None
    assert "meeting_type_id" in (MeetergoSettings(**base).booking_problem() or "")


def test_a_personal_token_never_sends_the_user_header():
    server = FakeMeetergo()
    list(adapter(server).read(None, context()))
    (sent,) = server.requests
    assert sent.headers["Authorization"] == f"Bearer {PERSONAL}"
    assert "x-meetergo-api-user-id" not in sent.headers
    assert sent.url.host == "api.meetergo.com" and sent.url.path == "/v4/appointment/paginated"


def test_a_platform_key_names_its_user_on_every_request():
    server = FakeMeetergo([appointment("a1")])
    a = MeetergoAdapter(
        connection_id="mg",
        base_url="https://api.meetergo.com/v4/",
        token=PLATFORM,
        user_id="user-42",
        transport=httpx.MockTransport(server),
        sleep=Sleeps(),
        requests_per_minute=1e9,
    )
    list(a.read(None, context()))
    a.get_meeting("a1")
    assert len(server.requests) == 2
    for sent in server.requests:
        assert sent.headers["Authorization"] == f"Bearer {PLATFORM}"
        assert sent.headers["x-meetergo-api-user-id"] == "user-42"
        assert sent.url.path.startswith("/v4/appointment/")  # a base_url ending in /v4 is not doubled


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"token": PLATFORM}, "set user_id"),
        ({"token": PERSONAL, "user_id": "user-42"}, "remove user_id"),
        ({"token": "  "}, "token is empty"),
        ({"page_size": 101}, "between 1 and 100"),
        ({"meeting_type_id": "mt-1"}, "needs host_ids or queue_id"),
        ({"meeting_type_id": "mt-1", "host_ids": ["h1"], "queue_id": "q1"}, "not both"),
        ({"host_ids": ["h1"]}, "add meeting_type_id"),
        ({"meeting_type_id": "mt-1", "host_ids": "h1"}, "not one string"),
        ({"webhook_secret": " "}, "webhook_secret is blank"),
    ],
)
def test_configuration_errors_are_sentences(kwargs, words):
    kwargs = {"token": PERSONAL, **kwargs}
    with pytest.raises(ConfigError, match=words) as caught:
        MeetergoAdapter(connection_id="mg", base_url="https://api.meetergo.com", **kwargs)
    assert "connection 'mg'" in str(caught.value)


# -- read -----------------------------------------------------------------------------------------


def test_pages_from_zero_to_total_and_sweeps_a_complete_read():
    server = FakeMeetergo(many(250))
    pages = list(adapter(server).read(None, context()))
    assert server.pages_asked == [0, 1, 2]
    assert {r.url.params["pageSize"] for r in server.list_requests} == {"100"}
    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert [p.cursor["page"] for p in pages] == [1, 2, 0]  # saved per page; a finished read restarts
    assert all(p.sweep is None for p in pages[:-1])
    sweep = pages[-1].sweep
    assert sweep.scope == SWEEP_SCOPE and sweep.window_start == NOW and len(sweep.seen) == 250
    assert {r.scope for p in pages for r in p.records} == {SWEEP_SCOPE}


def test_without_total_the_read_ends_on_an_empty_page_and_never_sweeps():
    server = FakeMeetergo(many(150), with_total=False)
    pages = list(adapter(server).read(None, context()))
    assert server.pages_asked == [0, 1, 2]
    assert [len(p.records) for p in pages] == [100, 50, 0]
    assert all(p.sweep is None for p in pages)


def test_an_empty_listing_is_a_complete_read():
    (page,) = adapter(FakeMeetergo([])).read(None, context())
    assert page.records == [] and page.sweep is not None and page.sweep.seen == frozenset()


def test_a_server_that_ignores_page_cannot_loop_forever():
    server = FakeMeetergo(many(250), ignore_page=True)
    pages = list(adapter(server).read(None, context()))
    assert len(server.list_requests) <= 3
    assert all(p.sweep is None for p in pages)
    assert pages[-1].cursor["page"] == pages[-1].cursor["first_page"]


def test_a_one_based_server_is_detected_when_page_one_repeats_page_zero():
    server = FakeMeetergo(many(250), one_based=True)
    pages = list(adapter(server).read(None, context()))
    assert server.pages_asked == [0, 1, 2, 3]
    assert len({r.external_id for p in pages for r in p.records}) == 250
    assert pages[-1].sweep is not None and len(pages[-1].sweep.seen) == 250
    assert pages[-1].cursor == {"page": 1, "first_page": 1, "page_size": 100}
    server.requests.clear()
    list(adapter(server).read(pages[-1].cursor, context()))
    assert server.pages_asked == [1, 2, 3]


def test_a_refused_page_zero_falls_back_to_page_one():
    server = FakeMeetergo(many(3), one_based=True)
    refusal = httpx.Response(
        400, json={"statusCode": 400, "message": "page must not be less than 1", "error": "Bad Request"}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "0":
            server.requests.append(request)
            return refusal
        return server(request)

    (page,) = adapter(handler).read(None, context())
    assert server.pages_asked == [0, 1]
    assert page.sweep is not None and page.cursor["first_page"] == 1


def test_a_listing_that_changes_during_the_read_is_not_swept():
    def grow(request_index: int, server: FakeMeetergo) -> None:
        if request_index == 1:
            server.appointments.insert(0, appointment("new"))

    server = FakeMeetergo(many(150), between_pages=grow)
    pages = list(adapter(server).read(None, context()))
    assert pages[-1].cursor["page"] == 0 and all(p.sweep is None for p in pages)


def test_a_crashed_read_resumes_at_the_saved_page_without_a_sweep():
    server = FakeMeetergo(many(250))
    pages = list(adapter(server).read({"page": 2, "first_page": 0, "page_size": 100}, context()))
    assert server.pages_asked == [2]
    assert [len(p.records) for p in pages] == [50] and pages[0].sweep is None
    assert pages[0].cursor["page"] == 0


@pytest.mark.parametrize(
    "cursor", [{"page": "x"}, {"page": -1}, {"page": 3, "page_size": 50}, {"first_page": 7}]
)
def test_an_unusable_cursor_reads_from_the_first_page(cursor):
    server = FakeMeetergo(many(3))
    (page,) = adapter(server).read(cursor, context())
    assert server.pages_asked == [0] and page.sweep is not None


def test_an_item_without_an_id_drops_the_sweep_but_keeps_the_records():
    server = FakeMeetergo(many(2) + [{"meetingInfo": {}}])
    (page,) = adapter(server).read(None, context())
    assert len(page.records) == 3 and page.sweep is None


def test_429_backs_off_then_succeeds():
    server = FakeMeetergo(many(2))
    limited = httpx.Response(
        429, json={"statusCode": 429, "message": "Too Many Requests", "error": "Too Many Requests"}
    )
    ok = httpx.Response(200, json={"appointments": many(2), "total": 2})
    server.answers[("GET", "/v4/appointment/paginated")] = [limited, limited, ok]
    sleeps = Sleeps()
    (page,) = adapter(server, sleep=sleeps).read(None, context())
    assert len(page.records) == 2 and len(server.requests) == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # 2^attempt s, jittered


def test_429_that_persists_is_rate_limited_with_meetergos_message():
    server = FakeMeetergo()
    server.answers[("GET", "/v4/appointment/paginated")] = httpx.Response(
        429, json={"statusCode": 429, "message": "Too Many Requests", "error": "Too Many Requests"}
    )
    with pytest.raises(RateLimited, match="Too Many Requests"):
        list(adapter(server).read(None, context()))
    assert len(server.requests) == 6  # the first try and 5 retries, as the docs advise


def test_error_envelope_details_reach_the_message():
    server = FakeMeetergo()
    server.answers[("GET", "/v4/appointment/paginated")] = httpx.Response(
        400,
        json={
            "statusCode": 400,
            "message": "Missing required header 'x-meetergo-api-user-id' for API key authentication",
            "error": "Bad Request",
            "errors": [{"field": "x-meetergo-api-user-id", "message": "required"}],
        },
    )
    with pytest.raises(ProviderRejected) as caught:
        list(adapter(server).read({"page": 1, "first_page": 1, "page_size": 100}, context()))
    assert caught.value.message == (
        "Missing required header 'x-meetergo-api-user-id' for API key authentication "
        "(x-meetergo-api-user-id: required)"
    )


def test_paging_state_is_pure_and_stops_on_a_repeat():
    state = AppointmentRead.start(None, 2)
    assert state.params() == {"page": 0, "pageSize": 2}
    assert state.take(["a", "b"], 6) is False
    assert state.take(["c", "d"], 6) is False
    assert state.take(["c", "d"], 6) is True and state.disturbed and not state.complete()


# -- normalise ------------------------------------------------------------------------------------


def test_normalise_the_listing_shape():
    record = adapter(FakeMeetergo()).normalise(RawRecord(payload=appointment("a1"), scope=SWEEP_SCOPE))
    meeting = record.meeting
    assert record.external_id == "a1" and record.scope == SWEEP_SCOPE
    assert meeting.status is MeetingStatus.SCHEDULED
    assert meeting.start == START and meeting.end == START + timedelta(minutes=30)
    assert meeting.attendee == Person(email="jane@example.com", name="Jane Doe")
    assert meeting.timezone == "America/New_York"
    assert meeting.hosts == ("host@seller.com",) and meeting.conference_url == "https://zoom.us/j/1"


def test_normalise_the_documented_webhook_shape():
    record = normalise_appointment(webhook_payload())
    meeting = record.meeting
    assert record.external_id == "appt-uuid-12345" and record.scope is None
    assert meeting.start == datetime(2024, 1, 15, 8, 0, tzinfo=UTC)
    assert meeting.title == "Discovery Call" and meeting.hosts == ("john@example.com",)
    assert meeting.attendee.email == "customer@example.com" and meeting.attendee.phone == "+1-555-123-4567"
    assert record.source_updated_at == datetime(2024, 1, 14, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "extra",
    [
        {
            "cancel": {
                "actionSource": "attendee",
                "actionAt": "2026-03-01T10:00:00Z",
                "actionBy": "x",
                "reason": "ill",
            }
        },
        {"isCancelled": True},
        {"status": "declined_by_host"},
    ],
)
def test_cancellation_markers(extra):
    assert normalise_appointment(appointment("a1", **extra)).meeting.status is MeetingStatus.CANCELLED


def test_an_empty_cancel_object_is_not_a_cancellation():
    cancel = {"actionSource": None, "actionAt": None, "actionBy": None, "reason": None}
    assert normalise_appointment(appointment("a1", cancel=cancel)).meeting.status is MeetingStatus.SCHEDULED


def test_a_pending_status_is_provisional_and_an_unknown_one_is_ignored():
    assert normalise_appointment(appointment("a1", status="pending")).meeting.status is MeetingStatus.PENDING
    assert (
        normalise_appointment(appointment("a1", status="whatever")).meeting.status is MeetingStatus.SCHEDULED
    )


def test_a_time_without_offset_is_utc_and_a_missing_end_comes_from_the_duration():
    payload = {"id": "a1", "start": "2026-03-10T15:00:00", "meetingType": {"meetingInfo": {"duration": 45}}}
    meeting = normalise_appointment(payload).meeting
    assert meeting.start == START and meeting.end == START + timedelta(minutes=45)


def test_missing_fields_are_named():
    with pytest.raises(NormaliseError, match=r"has no id, start, end \(or a duration\)"):
        normalise_appointment({"meetingInfo": {}})
    with pytest.raises(NormaliseError, match="appointment a1 has no start"):
        normalise_appointment({"id": "a1", "end": "2026-03-10T15:00:00Z"})


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([], "must be a JSON object"),
        ({"id": "a1", "start": "tomorrow", "end": "2026-03-10T15:00:00Z"}, "not an ISO 8601 time"),
        ({"id": "a1", "start": "2026-03-10T16:00:00Z", "end": "2026-03-10T15:00:00Z"}, "ends"),
        (appointment("a1", attendees=[{"email": "not-an-address"}]), "not an email address"),
    ],
)
def test_unusable_records_raise_normalise_error(payload, words):
    with pytest.raises(NormaliseError, match=words):
        normalise_appointment(payload)


# -- webhooks -------------------------------------------------------------------------------------


def deliver(a: MeetergoAdapter, payload, url: str = HOOK_URL, method: str = "POST"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return a.parse_webhook({"content-type": "application/json"}, body, NOW, method=method, url=url)


def test_a_delivery_with_the_right_token_is_accepted():
    delivery = deliver(adapter(FakeMeetergo()), webhook_payload())
    assert delivery.handled and delivery.event_type == "booking_created"
    (record,) = delivery.records
    assert record.external_id == "appt-uuid-12345" and record.scope is None
    assert normalise_appointment(record.payload).meeting.status is MeetingStatus.SCHEDULED


@pytest.mark.parametrize(
    "url",
    [
        "https://sync.example.com/webhooks/mg",
        "https://sync.example.com/webhooks/mg?token=",
        "https://sync.example.com/webhooks/mg?token=mg-url-token-Zq8",
        f"https://sync.example.com/webhooks/mg?token={SECRET}x",
        f"https://sync.example.com/webhooks/mg?token=forged&token={SECRET}",
        f"https://sync.example.com/webhooks/mg?secret={SECRET}",
        "",
    ],
)
def test_a_missing_or_forged_token_is_unauthorized(url):
    with pytest.raises(WebhookUnauthorized):
        deliver(adapter(FakeMeetergo()), webhook_payload(), url=url)


def test_the_token_is_checked_before_the_body():
    with pytest.raises(WebhookUnauthorized):
        deliver(adapter(FakeMeetergo()), b"not json", url="https://sync.example.com/webhooks/mg?token=nope")


def test_without_a_webhook_secret_every_delivery_is_refused():
    with pytest.raises(WebhookUnauthorized, match="no webhook_secret"):
        deliver(adapter(FakeMeetergo(), webhook_secret=None), webhook_payload())


def test_a_percent_encoded_token_matches():
    a = adapter(FakeMeetergo(), webhook_secret="a b/c")
    assert deliver(a, webhook_payload(), url="https://x.test/webhooks/mg?token=a%20b%2Fc&other=1").handled


def test_the_older_event_data_shape_is_accepted():
    payload = webhook_payload()
    payload.pop("webhookType")
    delivery = deliver(adapter(FakeMeetergo()), {"event": "booking_rescheduled", "data": payload})
    assert delivery.event_type == "booking_rescheduled"
    assert normalise_appointment(delivery.records[0].payload).external_id == "appt-uuid-12345"


def test_booking_cancelled_forces_cancelled_and_keeps_the_receipt_intact():
    payload = webhook_payload(kind="booking_cancelled")
    delivery = deliver(adapter(FakeMeetergo()), payload)
    assert normalise_appointment(delivery.records[0].payload).meeting.status is MeetingStatus.CANCELLED
    assert payload["isCancelled"] is False


@pytest.mark.parametrize("kind", ["new_employee", "form_submission", "something_new"])
def test_other_types_are_acknowledged_and_not_handled(kind):
    delivery = deliver(adapter(FakeMeetergo()), {"webhookType": kind, "email": "new@seller.com"})
    assert not delivery.handled and delivery.records == [] and delivery.event_type == kind


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"id": "a1"}).encode(), "neither 'webhookType' nor 'event'"),
        (json.dumps({"event": "booking_created", "data": [1]}).encode(), "'data' is not a JSON object"),
    ],
)
def test_malformed_deliveries_say_why(body, words):
    with pytest.raises(WebhookMalformed, match=words):
        deliver(adapter(FakeMeetergo()), body)


def test_a_get_is_not_a_delivery():
    with pytest.raises(WebhookMalformed, match="POST"):
        deliver(adapter(FakeMeetergo()), webhook_payload(), method="GET")


def test_the_delivery_id_is_stable_over_redelivery_and_differs_between_events():
    a = adapter(FakeMeetergo())
    payload = webhook_payload()
    first = deliver(a, payload).delivery_id
    reserialised = json.dumps(dict(reversed(list(payload.items()))), indent=2).encode()
    assert deliver(a, reserialised).delivery_id == first
    assert first.startswith("sha256:") and len(first) <= 255
    assert deliver(a, webhook_payload(kind="booking_cancelled")).delivery_id != first
    assert deliver(a, {**payload, "updatedAt": "2024-01-14T15:31:00Z"}).delivery_id != first


# -- write ----------------------------------------------------------------------------------------


def booked_server(answer: dict, status: int = 201) -> FakeMeetergo:
    server = FakeMeetergo([appointment("appt-1")])
    server.answers[("POST", "/v4/booking")] = httpx.Response(status, json=answer)
    return server


def test_create_posts_the_documented_body_and_reads_the_appointment_back():
    server = booked_server({"appointmentId": "appt-1", "secret": "s-1"})
    record = writer(server).create(request_for())
    post, get = server.requests
    body = json.loads(post.content)
    assert post.url.path == "/v4/booking"
    assert body == {
        "meetingTypeId": "mt-1",
        "start": "2026-03-10T15:00:00Z",
        "duration": 30,
        "hostIds": ["host-1"],
        "icsTitle": "Intro call",
        "attendee": {
            "email": "ann@buyer.com",
            "fullname": "Ann Buyer",
            "receiveReminders": False,
            "notes": {"bookingsyncReference": "mtg_123"},
            "timezone": "Europe/Berlin",
        },
    }
    assert get.method == "GET" and get.url.path == "/v4/appointment/appt-1"
    assert record.external_id == "appt-1" and record.meeting.status is MeetingStatus.SCHEDULED
    assert record.scope is None  # only a listing gives the sweep scope


def test_create_with_a_queue_sends_queue_id_not_host_ids():
    server = booked_server({"appointmentId": "appt-1", "secret": "s-1"})
    adapter(server, meeting_type_id="mt-1", queue_id="q-1").create(request_for())
    body = json.loads(server.requests[0].content)
    assert body["queueId"] == "q-1" and "hostIds" not in body


def test_a_booking_that_cannot_be_read_back_is_still_linked():
    server = booked_server({"appointmentId": "appt-9", "secret": "s-9"})  # GET answers 404
    record = writer(server).create(request_for())
    assert record.external_id == "appt-9" and record.meeting.status is MeetingStatus.SCHEDULED
    assert record.meeting.start == START


@pytest.mark.parametrize("kind", ["DoubleOptIn", "doubleOptIn", "requireHostConfirmation"])
def test_a_provisional_answer_is_pending_under_the_provisional_id(kind):
    server = booked_server({"bookingType": kind, "provisionalBookingId": "provisional-uuid-123"})
    record = writer(server).create(request_for())
    assert record.meeting.status is MeetingStatus.PENDING and not record.meeting.active
    assert record.external_id == "provisional:provisional-uuid-123"
    assert len(server.requests) == 1  # nothing to read back yet


def test_host_confirmation_with_only_an_appointment_id_is_pending_under_it():
    server = booked_server({"bookingType": "requireHostConfirmation", "appointmentId": "appt-1"})
    record = writer(server).create(request_for())
    assert record.external_id == "appt-1" and record.meeting.status is MeetingStatus.PENDING


def test_a_slot_taken_meanwhile_is_slot_unavailable():
    server = booked_server(
        {"statusCode": 400, "message": "Slot no longer available", "error": "Bad Request"}, 400
    )
    with pytest.raises(SlotUnavailable, match="Slot no longer available"):
        writer(server).create(request_for())
    assert len(server.requests) == 1


def test_another_400_stays_a_plain_rejection():
    server = booked_server(
        {
            "statusCode": 400,
            "message": "Validation failed",
            "error": "Bad Request",
            "errors": [{"field": "attendee.email", "message": "Invalid email format"}],
        },
        400,
    )
    with pytest.raises(ProviderRejected) as caught:
        writer(server).create(request_for())
    assert not isinstance(caught.value, SlotUnavailable)
    assert "attendee.email: Invalid email format" in caught.value.message


def test_create_without_booking_settings_is_a_config_error():
    with pytest.raises(ConfigError, match="meeting_type_id"):
        adapter(FakeMeetergo()).create(request_for())


def test_cancel_deletes_the_appointment():
    server = FakeMeetergo([appointment("appt-1")])
    writer(server).cancel("appt-1")
    (sent,) = server.requests
    assert sent.method == "DELETE" and sent.url.path == "/v4/appointment/appt-1"


def test_cancel_falls_back_to_the_mcp_route_when_delete_is_not_allowed():
    server = FakeMeetergo()
    server.answers[("DELETE", "/v4/appointment/appt-1")] = httpx.Response(
        405, json={"statusCode": 405, "message": "Method Not Allowed", "error": "Method Not Allowed"}
    )
    server.answers[("POST", "/v4/appointment/appt-1/cancel")] = httpx.Response(200, json={})
    writer(server).cancel("appt-1")
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("DELETE", "/v4/appointment/appt-1"),
        ("POST", "/v4/appointment/appt-1/cancel"),
    ]


def test_cancelling_an_unknown_appointment_is_not_found():
    with pytest.raises(ProviderNotFound):
        writer(FakeMeetergo()).cancel("nope")


def test_a_provisional_booking_cannot_be_cancelled():
    server = FakeMeetergo()
    with pytest.raises(ProviderRejected, match="provisional"):
        writer(server).cancel("provisional:p-1")
    assert server.requests == []


def test_a_booking_that_replaces_another_names_it_as_rescheduled_from():
    server = FakeMeetergo([appointment("old"), appointment("appt-1")])
    server.answers[("POST", "/v4/booking")] = httpx.Response(
        201, json={"appointmentId": "appt-1", "secret": "s"}
    )
    request = BookingRequest(meeting=request_for().meeting, reference="bsw_2", replaces="old")
    record = writer(server).create(request)
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("POST", "/v4/booking"),
        ("GET", "/v4/appointment/appt-1"),
    ]
    assert (
        json.loads(server.requests[0].content)["rescheduledFromId"] == "old"
    )  # the old one is cancelled apart
    assert record.external_id == "appt-1"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(504, json={"statusCode": 504, "message": "Gateway Timeout"}),
        httpx.Response(201, json={"secret": "s"}),  # 2xx naming no appointment
        httpx.Response(201, text="<html>ok</html>"),
    ],
)
def test_a_booking_whose_answer_is_lost_is_answer_lost_and_not_resent(answer):
    server = FakeMeetergo()
    server.answers[("POST", "/v4/booking")] = answer
    with pytest.raises(AnswerLost):
        writer(server).create(request_for())
    assert [r.method for r in server.requests] == ["POST"]


def with_notes(aid: str, reference: str | None, **extra) -> dict:
    attendee = {"email": "ann@buyer.com", "fullname": "Ann Buyer"}
    if reference is not None:
        attendee["notes"] = {"bookingsyncReference": reference}
    return appointment(
        aid,
        meetingInfo={"start": "2026-03-10T15:00:00Z", "end": "2026-03-10T15:30:00Z", "attendees": [attendee]},
        attendees=None,
        **extra,
    )


def test_the_reference_we_planted_is_read_back():
    record = adapter(FakeMeetergo()).normalise(RawRecord(payload=with_notes("a1", "bsw_7")))
    assert record.reference == "bsw_7"
    assert adapter(FakeMeetergo()).normalise(RawRecord(payload=webhook_payload())).reference is None


def test_a_lost_booking_is_found_by_our_reference_across_pages():
    server = FakeMeetergo(many(150) + [with_notes("other", "bsw_other"), with_notes("ours", "mtg_123")])
    found = writer(server).find_booking(request_for())
    assert found is not None and found.external_id == "ours"
    assert all(r.method == "GET" for r in server.requests)


def test_without_notes_the_one_live_appointment_of_that_attendee_and_slot_is_it():
    cancelled = with_notes("gone", None, cancel={"actionAt": "2026-03-01T10:00:00Z", "reason": "x"})
    found = writer(FakeMeetergo([cancelled, with_notes("live", None)])).find_booking(request_for())
    assert found is not None and found.external_id == "live"
    assert writer(FakeMeetergo(many(3))).find_booking(request_for()) is None
    with pytest.raises(ProviderUnavailable, match="cannot tell"):
        writer(FakeMeetergo([with_notes("x", None), with_notes("y", None)])).find_booking(request_for())
