"""HubSpot: v3 webhook signatures, full-pass paging with `after`, normalise, and booking via a meeting link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest

from bookingsync.adapters.base import BookingRequest, Capability, RawRecord, ReadContext
from bookingsync.adapters.hubspot import HubSpotAdapter, HubSpotSettings
from bookingsync.models.errors import (
    AnswerLost,
    ConfigError,
    NormaliseError,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
    WebhookMalformed,
    WebhookUnauthorized,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HOOK = "https://hooks.example.com/webhooks/hubspot-main"
SLUG = "alice-demo"
START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
MIN = 60_000


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def adapter(handler, **kwargs) -> HubSpotAdapter:
    kwargs.setdefault("page_size", 2)
    kwargs.setdefault("meeting_slug", SLUG)
    return HubSpotAdapter(
        connection_id="hubspot-main",
        base_url="https://api.hubapi.com",
        token="pat-na1-x",
        webhook_secret=SECRET,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
        **kwargs,
    )


def crm(mid: str, *, outcome: str | None = "SCHEDULED", archived: bool = False, **props) -> dict:
    properties = {
        "hs_meeting_title": f"Demo {mid}",
        "hs_meeting_start_time": "2026-03-10T15:00:00Z",
        "hs_meeting_end_time": "2026-03-10T15:30:00.000Z",
        "hs_meeting_outcome": outcome,
        "hs_meeting_external_url": "https://meet.google.com/abc-defg-hij",
        "hs_timestamp": "2026-03-10T15:00:00Z",
    }
    properties.update(props)
    obj = {
        "id": mid,
        "properties": properties,
        "createdAt": "2026-03-01T10:00:00Z",
        "updatedAt": "2026-03-01T11:00:00Z",
        "archived": archived,
    }
    if archived:
        obj["archivedAt"] = "2026-03-02T09:00:00Z"
    return obj


# -- webhook signature v3 -----------------------------------------------------------------------


def sign(uri_as_signed: str, body: bytes, timestamp: str, method: str = "POST", secret: str = SECRET) -> str:
    """Written out from HubSpot's "Validating requests" page, independent of the adapter's code."""
    source = (method + uri_as_signed).encode("utf-8") + body + timestamp.encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), source, hashlib.sha256).digest()).decode()


def ts(when: datetime = NOW) -> str:
    return str(ms(when))


EVENT = {
    "eventId": 100,
    "subscriptionId": 12345,
    "portalId": 62515,
    "occurredAt": 1772452800000,
    "subscriptionType": "object.propertyChange",
    "attemptNumber": 0,
    "objectId": 987,
    "objectTypeId": "0-47",
    "propertyName": "hs_meeting_outcome",
    "propertyValue": "CANCELED",
    "changeSource": "CRM",
    "appId": 54321,
}
BODY = json.dumps([EVENT]).encode()


def deliver(
    a: HubSpotAdapter,
    *,
    url: str = HOOK,
    signed_uri: str | None = None,
    body: bytes = BODY,
    stamp: str | None = None,
    method: str = "POST",
    now: datetime = NOW,
    signature: str | None = None,
):
    stamp = stamp or ts()
    signature = signature or sign(signed_uri or url, body, stamp, method)
    headers = {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": stamp,
        "Content-Type": "application/json",
    }
    return a.parse_webhook(headers, body, now, method=method, url=url)


def no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"parse_webhook must not call HubSpot ({request.url})")


def test_valid_v3_signature_is_accepted_and_headers_are_case_insensitive():
    a = adapter(no_http)
    stamp = ts()
    headers = {"x-hubspot-signature-v3": sign(HOOK, BODY, stamp), "x-hubspot-request-timestamp": stamp}
    delivery = a.parse_webhook(headers, BODY, NOW, method="POST", url=HOOK)
    assert delivery.handled and delivery.records == []


def test_forged_signature_and_wrong_secret_are_refused():
    a = adapter(no_http)
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        deliver(a, signature=sign(HOOK, BODY, ts(), secret="another-apps-secret"))
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        deliver(a, signature=base64.b64encode(b"\0" * 32).decode())


def test_tampered_body_method_url_or_timestamp_breaks_the_signature():
    a = adapter(no_http)
    stamp = ts()
    good = sign(HOOK, BODY, stamp)
    cases = [
        dict(body=BODY.replace(b"CANCELED", b"COMPLETED")),
        dict(method="PUT"),
        dict(url=HOOK + "?x=1"),
        dict(stamp=str(int(stamp) + 1)),
    ]
    for case in cases:
        with pytest.raises(WebhookUnauthorized):
            deliver(a, signature=good, **{"stamp": stamp, **case})


def test_stale_and_future_timestamps_are_refused_even_when_signed():
    a = adapter(no_http)
    for when in (NOW - timedelta(minutes=5, seconds=1), NOW + timedelta(minutes=5, seconds=1)):
        with pytest.raises(WebhookUnauthorized, match="5 minutes"):
            deliver(a, stamp=ts(when))
    # Inside the window, both sides.
    deliver(a, stamp=ts(NOW - timedelta(minutes=4, seconds=59)))
    deliver(a, stamp=ts(NOW + timedelta(minutes=4)))


def test_timestamp_is_milliseconds_not_seconds():
    a = adapter(no_http)
    with pytest.raises(WebhookUnauthorized):
        deliver(a, stamp=str(int(NOW.timestamp())))  # seconds: 1970 in milliseconds
    with pytest.raises(WebhookUnauthorized, match="milliseconds"):
        deliver(a, stamp="2026-03-02T12:00:00Z")


def test_missing_headers_missing_secret_and_missing_url_are_refused():
    a = adapter(no_http)
    with pytest.raises(WebhookUnauthorized, match="X-HubSpot-Signature-v3"):
        a.parse_webhook({"X-HubSpot-Request-Timestamp": ts()}, BODY, NOW, method="POST", url=HOOK)
    with pytest.raises(WebhookUnauthorized, match="X-HubSpot-Request-Timestamp"):
        a.parse_webhook(
            {"X-HubSpot-Signature-v3": sign(HOOK, BODY, ts())}, BODY, NOW, method="POST", url=HOOK
        )
    with pytest.raises(WebhookUnauthorized, match="URL"):
        deliver(a, url="", signed_uri=HOOK)
    nosecret = HubSpotAdapter(connection_id="h", token="t", transport=httpx.MockTransport(no_http))
    with pytest.raises(WebhookUnauthorized, match="webhook_secret"):
        deliver(nosecret)


def test_v1_and_v2_signatures_alone_are_not_accepted():
    a = adapter(no_http)
    v1 = hashlib.sha256(SECRET.encode() + BODY).hexdigest()
    with pytest.raises(WebhookUnauthorized):
        a.parse_webhook(
            {"X-HubSpot-Signature": v1, "X-HubSpot-Signature-Version": "v1"},
            BODY,
            NOW,
            method="POST",
            url=HOOK,
        )


# The table of HubSpot's "Validating requests" page, written out again here.
DECODED = [
    ("%3A", ":"),
    ("%2F", "/"),
    ("%3F", "?"),
    ("%40", "@"),
    ("%21", "!"),
    ("%24", "$"),
    ("%27", "'"),
    ("%28", "("),
    ("%29", ")"),
    ("%2A", "*"),
    ("%2C", ","),
    ("%3B", ";"),
]


@pytest.mark.parametrize(("encoded", "char"), DECODED)
def test_each_listed_escape_is_decoded_in_the_signed_uri(encoded, char):
    a = adapter(no_http)
    url = f"{HOOK}?redirect=https{encoded}x{encoded.lower()}y"
    delivery = deliver(a, url=url, signed_uri=f"{HOOK}?redirect=https{char}x{char}y")
    assert delivery.handled
    with pytest.raises(WebhookUnauthorized):  # signed over the raw URL: not what HubSpot signs
        deliver(a, url=url, signed_uri=url)


@pytest.mark.parametrize("encoded", ["%20", "%2B", "%25", "%3D", "%26", "%23", "%5B", "%7E", "%C3%A9"])
def test_escapes_not_in_the_table_stay_encoded(encoded):
    a = adapter(no_http)
    url = f"{HOOK}?q=a{encoded}b"
    deliver(a, url=url, signed_uri=url)
    with pytest.raises(WebhookUnauthorized):
        deliver(a, url=url, signed_uri=unquote(url))


def test_an_encoded_percent_before_listed_hex_is_not_decoded_twice():
    a = adapter(no_http)
    url = f"{HOOK}?v=%253A%2540"
    deliver(a, url=url, signed_uri=url)
    with pytest.raises(WebhookUnauthorized):
        deliver(a, url=url, signed_uri=f"{HOOK}?v=%25:%25@")


def test_query_order_and_literal_question_mark_are_kept():
    a = adapter(no_http)
    url = f"{HOOK}?b=2&a=1%2C3"
    deliver(a, url=url, signed_uri=f"{HOOK}?b=2&a=1,3")
    with pytest.raises(WebhookUnauthorized):
        deliver(a, url=url, signed_uri=f"{HOOK}?a=1,3&b=2")


# -- webhook body -------------------------------------------------------------------------------


def test_meeting_events_are_handled_without_records_and_id_is_the_event():
    delivery = deliver(adapter(no_http))
    assert delivery.handled is True
    assert delivery.records == []
    assert delivery.event_type == "object.propertyChange"
    assert delivery.delivery_id == "62515.12345.100"


def test_batch_delivery_id_is_stable_across_retries_and_order():
    events = [
        dict(EVENT, eventId=1, subscriptionType="object.creation"),
        dict(EVENT, eventId=2, subscriptionType="object.deletion"),
    ]
    a = adapter(no_http)
    first = deliver(a, body=json.dumps(events).encode())
    retried = [dict(e, attemptNumber=1) for e in reversed(events)]
    second = deliver(a, body=json.dumps(retried).encode())
    assert first.delivery_id == second.delivery_id and first.delivery_id.startswith("batch-")
    assert first.event_type == "object.creation,object.deletion"
    other = deliver(a, body=json.dumps([events[0], dict(events[1], eventId=3)]).encode())
    assert other.delivery_id != first.delivery_id


def test_other_object_types_are_not_handled():
    contact = {
        "eventId": 1,
        "subscriptionId": 12345,
        "portalId": 62515,
        "occurredAt": 1564113600000,
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
        "objectId": 123,
        "changeSource": "CRM",
        "changeFlag": "NEW",
        "appId": 54321,
    }
    deal = dict(EVENT, objectTypeId="0-3")
    for event in (contact, deal):
        delivery = deliver(adapter(no_http), body=json.dumps([event]).encode())
        assert delivery.handled is False and delivery.records == []


def test_a_single_event_object_is_accepted():
    delivery = deliver(adapter(no_http), body=json.dumps(EVENT).encode())
    assert delivery.handled and delivery.delivery_id == "62515.12345.100"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"text"',
        b"[1]",
        json.dumps([{"eventId": 1}]).encode(),
        json.dumps([{"subscriptionType": "object.creation"}]).encode(),
    ],
)
def test_malformed_bodies_are_400(body):
    with pytest.raises(WebhookMalformed):
        deliver(adapter(no_http), body=body)


# -- normalise ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("SCHEDULED", MeetingStatus.SCHEDULED),
        ("RESCHEDULED", MeetingStatus.SCHEDULED),
        ("COMPLETED", MeetingStatus.COMPLETED),
        ("NO_SHOW", MeetingStatus.NO_SHOW),
        ("no show", MeetingStatus.NO_SHOW),
        ("CANCELED", MeetingStatus.CANCELLED),
        ("cancelled", MeetingStatus.CANCELLED),
        (None, MeetingStatus.SCHEDULED),
        ("", MeetingStatus.SCHEDULED),
    ],
)
def test_outcomes_map_to_statuses(outcome, status):
    record = adapter(no_http).normalise(RawRecord(payload=crm("7", outcome=outcome)))
    assert record.meeting.status is status


def test_crm_meeting_normalises():
    record = adapter(no_http).normalise(RawRecord(payload=crm("7")))
    assert record.external_id == "7"
    assert record.meeting.title == "Demo 7"
    assert (record.meeting.start, record.meeting.end) == (START, START + timedelta(minutes=30))
    assert record.meeting.conference_url == "https://meet.google.com/abc-defg-hij"
    assert record.meeting.attendee == Person() and record.meeting.hosts == ()
    assert record.source_updated_at == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert record.scope is None


def test_archived_wins_over_outcome():
    record = adapter(no_http).normalise(RawRecord(payload=crm("7", outcome="COMPLETED", archived=True)))
    assert record.meeting.status is MeetingStatus.CANCELLED


def test_restored_meeting_with_a_stale_archived_at_is_live():
    payload = dict(crm("7"), archivedAt="2026-03-02T09:00:00Z")
    assert adapter(no_http).normalise(RawRecord(payload=payload)).meeting.status is MeetingStatus.SCHEDULED
    del payload["archived"]
    assert adapter(no_http).normalise(RawRecord(payload=payload)).meeting.status is MeetingStatus.CANCELLED


def test_location_url_is_the_conference_url_when_no_external_url():
    payload = crm("7", hs_meeting_external_url=None, hs_meeting_location="https://zoom.us/j/9")
    assert (
        adapter(no_http).normalise(RawRecord(payload=payload)).meeting.conference_url == "https://zoom.us/j/9"
    )
    payload = crm("7", hs_meeting_external_url=None, hs_meeting_location="Room 4")
    assert adapter(no_http).normalise(RawRecord(payload=payload)).meeting.conference_url is None


def test_epoch_millisecond_times_are_read():
    payload = crm("7", hs_meeting_start_time=str(ms(START)), hs_meeting_end_time=str(ms(START) + 30 * MIN))
    record = adapter(no_http).normalise(RawRecord(payload=payload))
    assert record.meeting.start == START


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (crm("7", outcome="RAINED_OFF"), "RAINED_OFF"),
        (crm("7", hs_meeting_start_time=None), "hs_meeting_start_time"),
        (crm("7", hs_meeting_end_time=""), "hs_meeting_end_time"),
        (crm("7", hs_meeting_start_time="2026-03-10T15:00:00"), "offset"),
        (crm("7", hs_meeting_start_time="1741618800"), "milliseconds"),
        (crm("7", hs_meeting_end_time="2026-03-10T14:00:00Z"), "before it starts"),
        ({"id": "7"}, "neither"),
        ({"id": None, "properties": {}}, "no id"),
    ],
)
def test_unusable_records_name_the_reason(payload, reason):
    with pytest.raises(NormaliseError, match=reason):
        adapter(no_http).normalise(RawRecord(payload=payload))


def test_non_http_external_url_is_not_a_conference_url():
    record = adapter(no_http).normalise(
        RawRecord(payload=crm("7", hs_meeting_external_url="javascript:alert(1)"))
    )
    assert record.meeting.conference_url is None


# -- paging -------------------------------------------------------------------------------------


class FakeCrm:
    """GET /crm/objects/2026-03/meetings: `after` is the id of the last record of the previous page."""

    def __init__(self, active: list[dict], archived: list[dict] | None = None) -> None:
        self.lists = {"false": active, "true": archived or []}
        self.requests: list[httpx.Request] = []
        self.script: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)
        assert request.url.path == "/crm/objects/2026-03/meetings"
        params = request.url.params
        rows = sorted(self.lists[params.get("archived", "false")], key=lambda r: int(r["id"]))
        after = params.get("after")
        if after is not None:
            if not after.isdigit():
                return httpx.Response(
                    400,
                    json={"message": "Invalid after", "category": "VALIDATION_ERROR", "correlationId": "c-1"},
                )
            rows = [r for r in rows if int(r["id"]) > int(after)]
        limit = int(params.get("limit", 10))
        chunk = rows[:limit]
        body: dict = {"results": chunk}
        if len(rows) > limit:
            body["paging"] = {"next": {"after": chunk[-1]["id"], "link": "https://api.hubapi.com/…"}}
        return httpx.Response(200, json=body)


def read_all(a: HubSpotAdapter, cursor=None):
    pages = list(a.read(cursor, ReadContext(now=NOW)))
    return pages, [r.external_id for p in pages for r in p.records]


def test_full_pass_reads_live_then_archived_with_after_and_starts_over():
    server = FakeCrm([crm(str(i)) for i in (1, 2, 3, 4, 5)], archived=[crm("9", archived=True)])
    pages, ids = read_all(adapter(server))
    assert ids == ["1", "2", "3", "4", "5", "9"]
    first = server.requests[0]
    assert first.headers["Authorization"] == "Bearer pat-na1-x"
    assert dict(first.url.params) == {
        "limit": "2",
        "archived": "false",
        "properties": "hs_meeting_title,hs_meeting_start_time,hs_meeting_end_time,hs_meeting_outcome,"
        "hs_meeting_external_url,hs_meeting_location,hs_timestamp,hs_lastmodifieddate,hs_unique_id",
    }
    assert [(r.url.params.get("archived"), r.url.params.get("after")) for r in server.requests] == [
        ("false", None),
        ("false", "2"),
        ("false", "4"),
        ("true", None),
    ]
    assert [p.cursor for p in pages] == [
        {"phase": "active", "after": "2"},
        {"phase": "active", "after": "4"},
        {"phase": "archived", "after": None},
        {"phase": "active", "after": None},
    ]
    assert all(p.sweep is None for p in pages)  # deletions come as archived records, never from absence
    assert adapter(server).normalise(pages[-1].records[0]).meeting.status is MeetingStatus.CANCELLED


class CrmWithContacts(FakeCrm):
    """The list with `associations=contacts`, and `GET …/contacts/{id}` for their emails."""

    def __init__(self, active: list[dict], emails: dict[str, str]) -> None:
        super().__init__(active)
        self.emails = emails

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/crm/objects/2026-03/contacts/"):
            self.requests.append(request)
            contact = request.url.path.rsplit("/", 1)[-1]
            if contact not in self.emails:
                return httpx.Response(
                    404, json={"message": "Object not found", "category": "OBJECT_NOT_FOUND"}
                )
            return httpx.Response(200, json={"id": contact, "properties": {"email": self.emails[contact]}})
        return super().__call__(request)


def _with_contacts(meeting: dict, *contacts: str) -> dict:
    return meeting | {
        "associations": {"contacts": {"results": [{"id": c, "type": "meeting_to_contact"} for c in contacts]}}
    }


def test_a_listed_meeting_has_its_associated_contact_as_attendee_read_once_per_contact():
    """Issue 16: without the attendee a HubSpot meeting can never be matched to the same demo
    booked elsewhere (attendee + start). Each contact is read once; one that is gone gives none."""
    server = CrmWithContacts(
        [
            _with_contacts(crm("1"), "c-1"),
            _with_contacts(crm("2"), "c-gone", "c-1"),
            _with_contacts(crm("3"), "c-gone"),
            crm("4"),
        ],
        {"c-1": "Lisa@Acme.example"},
    )
    plain = adapter(server)  # off by default: the contacts read is outside the specs we follow
    pages, _ = read_all(plain)
    assert {plain.normalise(r).meeting.attendee.email for p in pages for r in p.records} == {None}
    assert not [r for r in server.requests if "/contacts/" in r.url.path]
    server.requests.clear()
    a = adapter(server, read_attendees=True)
    pages, ids = read_all(a)
    emails = {r.external_id: a.normalise(r).meeting.attendee.email for p in pages for r in p.records}
    assert emails == {"1": "lisa@acme.example", "2": "lisa@acme.example", "3": None, "4": None}
    contact_reads = [r.url.path for r in server.requests if "/contacts/" in r.url.path]
    assert contact_reads == ["/crm/objects/2026-03/contacts/c-1", "/crm/objects/2026-03/contacts/c-gone"]
    assert all(
        r.url.params.get("associations") == "contacts"
        for r in server.requests
        if r.url.path.endswith("meetings")
    )


def test_a_crash_resumes_at_the_saved_page():
    server = FakeCrm([crm(str(i)) for i in (1, 2, 3, 4, 5)])
    _, ids = read_all(adapter(server), {"phase": "active", "after": "4"})
    assert ids == ["5"]
    _, ids = read_all(adapter(server), {"phase": "archived", "after": None})
    assert ids == [] and len(server.requests) == 3  # 2 for the first read (rest + archived), 1 here


def test_a_refused_saved_token_restarts_that_list():
    server = FakeCrm([crm("1"), crm("2"), crm("3")])
    pages, ids = read_all(adapter(server), {"phase": "active", "after": "expired-token"})
    assert ids == ["1", "2", "3"]
    assert server.requests[1].url.params.get("after") is None
    assert pages[-1].cursor == {"phase": "active", "after": None}


def test_a_refusal_on_a_fresh_pass_is_raised():
    server = FakeCrm([])
    server.script = [httpx.Response(400, json={"message": "bad properties", "category": "VALIDATION_ERROR"})]
    with pytest.raises(ProviderRejected, match="bad properties"):
        read_all(adapter(server))


def test_unusable_cursor_starts_a_full_pass():
    server = FakeCrm([crm("1")])
    _, ids = read_all(adapter(server), {"phase": "sideways", "after": 3})
    assert ids == ["1"]


def test_repeated_after_token_ends_the_list_instead_of_looping():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("archived") == "true":
            return httpx.Response(200, json={"results": []})
        return httpx.Response(200, json={"results": [crm("1")], "paging": {"next": {"after": "same"}}})

    pages, _ = read_all(adapter(handler), {"phase": "active", "after": "same"})
    assert [p.cursor for p in pages] == [
        {"phase": "archived", "after": None},
        {"phase": "active", "after": None},
    ]


def test_429_then_success_honours_retry_after():
    server = FakeCrm([crm("1")])
    server.script = [
        httpx.Response(
            429,
            headers={"Retry-After": "2"},
            json={
                "status": "error",
                "errorType": "RATE_LIMIT",
                "correlationId": "c-429",
                "message": "You have reached your ten_secondly_rolling limit.",
            },
        )
    ]
    slept: list[float] = []
    a = HubSpotAdapter(
        connection_id="h",
        token="t",
        transport=httpx.MockTransport(server),
        sleep=slept.append,
        requests_per_second=1e9,
    )
    _, ids = read_all(a)
    assert ids == ["1"] and 2.0 in slept


def test_error_envelope_is_surfaced():
    server = FakeCrm([])
    server.script = [
        httpx.Response(
            403,
            json={
                "status": "error",
                "message": "This app hasn't been granted all required scopes to make this call.",
                "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
                "category": "MISSING_SCOPES",
                "errors": [
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": ["crm.objects.contacts.read"]},
                    }
                ],
            },
        )
    ]
    with pytest.raises(ProviderAuthError) as info:
        read_all(adapter(server))
    text = str(info.value)
    assert "granted all required scopes" in text and "MISSING_SCOPES" in text
    assert "aeb5f871-7f07-4993-9211-075dc63e7cbf" in text and "One or more" in text and "(HTTP 403)" in text


def test_non_envelope_error_body_still_shows_the_status():
    server = FakeCrm([])
    server.script = [httpx.Response(502, text="Bad Gateway")] * 5
    with pytest.raises(ProviderUnavailable, match="Bad Gateway.*502"):
        read_all(adapter(server))


def test_answer_without_results_is_a_provider_fault():
    server = FakeCrm([])
    server.script = [httpx.Response(200, json={"items": []})]
    with pytest.raises(ProviderUnavailable, match="results"):
        read_all(adapter(server))


# -- constructor --------------------------------------------------------------------------------


def test_capabilities_are_honest():
    assert HubSpotAdapter.capabilities == frozenset(
        {
            Capability.LIST_CHANGES,
            Capability.RECEIVE_WEBHOOKS,
            Capability.CREATE,
            Capability.RESCHEDULE,
            Capability.CANCEL,
            Capability.FIND_BOOKING,
        }
    )
    assert HubSpotSettings(token="t", meeting_slug="intro").booking_problem() is None
    assert "meeting_slug" in (HubSpotSettings(token="t").booking_problem() or "")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(token=" "), "token"),
        (dict(base_url="api.hubapi.com"), "https"),
        (dict(page_size=101), "page_size"),
        (dict(booking_timezone="Mars/Base"), "booking_timezone"),
        (dict(meeting_slug=" "), "meeting_slug"),
        (dict(requests_per_second=0), "requests_per_second"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HubSpotAdapter(**{"connection_id": "h", "token": "t", **kwargs})


def test_base_url_defaults_to_hubapi():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"results": []})

    read_all(HubSpotAdapter(connection_id="h", token="t", transport=httpx.MockTransport(handler)))
    assert str(seen[0].url).startswith("https://api.hubapi.com/crm/objects/2026-03/meetings?")


# -- booking ------------------------------------------------------------------------------------

# ExternalMeetingBooking.required in HubSpot's Scheduler Meetings 2026-03 OpenAPI file.
BOOKING_REQUIRED = {
    "duration",
    "email",
    "firstName",
    "formFields",
    "lastName",
    "legalConsentResponses",
    "likelyAvailableUserIds",
    "slug",
    "startTime",
}
BOOKING_PROPERTIES = BOOKING_REQUIRED | {"locale", "timezone"}


def meeting(**changes) -> Meeting:
    base = dict(
        status=MeetingStatus.SCHEDULED,
        title="Intro",
        start=START,
        end=START + timedelta(minutes=30),
        timezone="Europe/Berlin",
        attendee=Person(email="Lisa.Thompson@Acme.com", name="Lisa van Thompson", phone="+1-555-0199"),
    )
    base.update(changes)
    return Meeting(**base)


def form_field(name: str, required: bool = True) -> dict:
    return {
        "name": name,
        "label": name,
        "fieldType": "text",
        "type": "string",
        "isCustom": False,
        "isRequired": required,
        "options": [],
    }


class FakeScheduler:
    def __init__(
        self, slots: dict[int, list[tuple[int, int]]] | None = None, durations=(30 * MIN, 60 * MIN)
    ) -> None:
        # monthOffset -> [(startMillis, durationMillis)]
        self.slots = (
            {0: [(ms(START), 30 * MIN), (ms(START) + 30 * MIN, 30 * MIN), (ms(START), 60 * MIN)]}
            if slots is None
            else slots
        )
        self.durations = list(durations)
        self.form_fields = [
            form_field("firstname"),
            form_field("lastname"),
            form_field("email"),
            form_field("phone", required=False),
        ]
        self.consent: dict = {"legalConsentEnabled": False}
        self.post_answers: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict] = []
        # The CRM side: meetings by CRM id (with hs_unique_id = the calendar event id), their
        # contact ids, and contact emails; empty means HubSpot has not made the CRM record yet.
        self.crm: dict[str, dict] = {}
        self.contacts_of: dict[str, list[str]] = {}
        self.emails: dict[str, str] = {}
        self.patches: list[tuple[str, dict]] = []

    def _crm(self, request: httpx.Request, path: str) -> httpx.Response | None:
        base = "/crm/objects/2026-03/meetings"
        if path == f"{base}/search" and request.method == "POST":
            body = json.loads(request.content)
            assert {"after", "filterGroups", "limit", "properties", "sorts"} <= set(body)
            [group] = body["filterGroups"]
            start = next(f["value"] for f in group["filters"] if f["propertyName"] == "hs_meeting_start_time")
            hits = [
                m
                for m in self.crm.values()
                if ms(datetime.fromisoformat(m["properties"]["hs_meeting_start_time"])) == int(start)
                and m["properties"].get("hs_unique_id")
            ]
            return httpx.Response(200, json={"total": len(hits), "results": hits})
        if path.startswith("/crm/objects/2026-03/contacts/"):
            cid = path.rsplit("/", 1)[1]
            return httpx.Response(200, json={"id": cid, "properties": {"email": self.emails[cid]}})
        if not path.startswith(f"{base}/"):
            return None
        key = path.rsplit("/", 1)[1]
        if request.url.params.get("idProperty") == "hs_unique_id":
            key = next((mid for mid, m in self.crm.items() if m["properties"].get("hs_unique_id") == key), "")
        if key not in self.crm:
            return httpx.Response(404, json={"message": "Object not found", "category": "OBJECT_NOT_FOUND"})
        if request.method == "PATCH":
            props = json.loads(request.content)["properties"]
            self.patches.append((key, props))
            self.crm[key]["properties"].update(props)
        found = dict(self.crm[key])
        if request.url.params.get("associations") == "contacts":
            found["associations"] = {
                "contacts": {
                    "results": [
                        {"id": c, "type": "meeting_event_to_contact"} for c in self.contacts_of.get(key, [])
                    ]
                }
            }
        return httpx.Response(200, json=found)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        answer = self._crm(request, path)
        if answer is not None:
            return answer
        base = "/scheduler/2026-03/meetings/meeting-links/book"
        if request.method == "GET" and path == f"{base}/{SLUG}":
            assert request.url.params["timezone"]
            return httpx.Response(
                200,
                json={
                    "allUsersBusyTimes": [],
                    "isOffline": False,
                    "linkId": "123",
                    "linkType": "ROUND_ROBIN_CALENDAR",
                    "customParams": {
                        "availability": {},
                        "durations": self.durations,
                        "formFields": self.form_fields,
                        "meetingBufferTime": 0,
                        "ownerPrioritized": False,
                        "startTimeIncrementMinutes": "FIFTEEN",
                        "weeksToAdvertise": 8,
                        **self.consent,
                    },
                },
            )
        if request.method == "GET" and path == f"{base}/availability-page/{SLUG}":
            assert request.url.params["timezone"]
            offset = int(request.url.params.get("monthOffset", 0))
            by_duration: dict = {}
            for begin, length in self.slots.get(offset, []):
                entry = by_duration.setdefault(
                    str(length), {"meetingDurationMillis": length, "availabilities": []}
                )
                entry["availabilities"].append({"startMillisUtc": begin, "endMillisUtc": begin + length})
            return httpx.Response(
                200,
                json={
                    "allUsersBusyTimes": [
                        self._user("11", []),
                        self._user("12", [(ms(START) - 15 * MIN, ms(START) + MIN)]),
                        self._user("13", [(ms(START) + 30 * MIN, ms(START) + 60 * MIN)]),
                    ],
                    "linkAvailability": {
                        "hasMore": offset < max(self.slots, default=0),
                        "linkAvailabilityByDuration": by_duration,
                    },
                },
            )
        if request.method == "POST" and path == base:
            body = json.loads(request.content)
            self.bodies.append(body)
            if self.post_answers:
                return self.post_answers.pop(0)
            end = datetime.fromisoformat(body["startTime"]) + timedelta(milliseconds=body["duration"])
            return httpx.Response(
                200,
                json={
                    "bookingTimezone": body["timezone"],
                    "calendarEventId": "ce-555",
                    "contactId": "901",
                    "duration": body["duration"],
                    "start": body["startTime"],
                    "end": end.isoformat().replace("+00:00", "Z"),
                    "formFields": [
                        {"isCustom": False, "label": "Email", "name": "email", "value": body["email"]},
                        {
                            "isCustom": False,
                            "label": "First name",
                            "name": "firstname",
                            "value": body["firstName"],
                        },
                    ],
                    "guestEmails": [],
                    "isOffline": False,
                    "legalConsentResponses": [],
                    "subject": "Intro with Alice",
                    "webConferenceUrl": "https://zoom.us/j/1",
                },
            )
        return httpx.Response(
            404,
            json={
                "message": f"no route {request.method} {path}",
                "category": "OBJECT_NOT_FOUND",
                "correlationId": "c-404",
            },
        )

    @staticmethod
    def _user(uid: str, busy: list[tuple[int, int]]) -> dict:
        return {
            "busyTimes": [{"start": s, "end": e} for s, e in busy],
            "isOffline": False,
            "meetingsUser": {
                "calendarProvider": "GOOGLE",
                "id": f"mu-{uid}",
                "isSalesStarter": False,
                "userId": uid,
                "userProfile": {"email": f"user{uid}@example.com"},
            },
        }


def book(server, m: Meeting | None = None, **kwargs):
    return adapter(server, **kwargs).create(BookingRequest(meeting=m or meeting(), reference="mtg_1"))


def test_booking_reads_info_and_availability_then_posts_a_schema_complete_body():
    server = FakeScheduler()
    record = book(server)
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("GET", f"/scheduler/2026-03/meetings/meeting-links/book/{SLUG}"),
        ("GET", f"/scheduler/2026-03/meetings/meeting-links/book/availability-page/{SLUG}"),
        ("POST", "/scheduler/2026-03/meetings/meeting-links/book"),
        ("GET", "/crm/objects/2026-03/meetings/ce-555"),
    ]  # its CRM meeting, by idProperty=hs_unique_id
    assert server.requests[3].url.params["idProperty"] == "hs_unique_id"
    assert server.requests[0].url.params["timezone"] == "Europe/Berlin"
    body = server.bodies[0]
    assert BOOKING_REQUIRED <= set(body) <= BOOKING_PROPERTIES
    assert body["slug"] == SLUG and body["startTime"] == "2026-03-10T15:00:00Z"
    assert isinstance(body["duration"], int) and body["duration"] == 30 * MIN  # milliseconds
    assert (body["email"], body["firstName"], body["lastName"]) == (
        "lisa.thompson@acme.com",
        "Lisa",
        "van Thompson",
    )
    assert body["timezone"] == "Europe/Berlin" and body["locale"] == "en-us"
    assert body["legalConsentResponses"] == []
    assert all(
        set(f) == {"name", "value"} and all(isinstance(v, str) for v in f.values())
        for f in body["formFields"]
    )
    assert {f["name"]: f["value"] for f in body["formFields"]} == {
        "firstname": "Lisa",
        "lastname": "van Thompson",
        "email": "lisa.thompson@acme.com",
        "phone": "+1-555-0199",
    }
    assert body["likelyAvailableUserIds"] == ["11", "13"]  # 12 is busy during the slot; 13 only after it
    assert record.external_id == "calendar-event:ce-555"  # no CRM record yet: linked by calendar event
    assert record.reference == "calendar-event:ce-555"
    assert record.meeting.status is MeetingStatus.SCHEDULED
    assert (record.meeting.start, record.meeting.end) == (START, START + timedelta(minutes=30))
    assert (
        record.meeting.title == "Intro with Alice" and record.meeting.conference_url == "https://zoom.us/j/1"
    )
    assert (
        record.meeting.attendee.email == "lisa.thompson@acme.com"
        and record.meeting.timezone == "Europe/Berlin"
    )


def test_meeting_without_timezone_uses_the_configured_one():
    server = FakeScheduler()
    book(server, meeting(timezone=None), booking_timezone="America/New_York", booking_locale="de-de")
    assert server.requests[1].url.params["timezone"] == "America/New_York"
    assert server.bodies[0]["timezone"] == "America/New_York" and server.bodies[0]["locale"] == "de-de"


def test_slot_in_a_later_month_is_found_with_month_offset():
    server = FakeScheduler(
        slots={0: [(ms(START) - 20 * 24 * 3600_000, 30 * MIN)], 1: [(ms(START), 30 * MIN)]}
    )
    book(server)
    pages = [r for r in server.requests if "availability-page" in r.url.path]
    assert [r.url.params.get("monthOffset") for r in pages] == [None, "1"]


def test_slot_not_offered_is_slot_unavailable_without_posting():
    server = FakeScheduler(slots={0: [(ms(START) + 30 * MIN, 30 * MIN), (ms(START), 60 * MIN)]})
    with pytest.raises(SlotUnavailable, match="does not offer"):
        book(server)
    assert server.bodies == []


def test_duration_the_link_does_not_offer_is_rejected_before_availability():
    server = FakeScheduler(durations=(15 * MIN,))
    with pytest.raises(ProviderRejected, match="offers 15 minute") as info:
        book(server)
    assert not isinstance(info.value, SlotUnavailable)
    assert len(server.requests) == 1


def test_conflict_rereads_availability_and_retries_while_offered():
    server = FakeScheduler()
    server.post_answers = [
        httpx.Response(
            409,
            json={
                "message": "This time slot is no longer available",
                "category": "CONFLICT",
                "correlationId": "c-9",
            },
        )
    ]
    record = book(server)
    assert len(server.bodies) == 2 and record.external_id == "calendar-event:ce-555"
    assert sum("availability-page" in r.url.path for r in server.requests) == 2


def test_repeated_conflict_raises_slot_unavailable():
    server = FakeScheduler()
    taken = httpx.Response(
        400,
        json={
            "message": "The requested time is no longer available.",
            "category": "VALIDATION_ERROR",
            "correlationId": "c-9",
        },
    )
    server.post_answers = [taken, taken]
    with pytest.raises(SlotUnavailable, match="no longer available"):
        book(server)
    assert len(server.bodies) == 2


def test_conflict_after_which_the_slot_is_gone_raises_slot_unavailable():
    server = FakeScheduler()

    def gone(request):
        if request.method == "POST":
            server.slots = {0: []}
            server.bodies.append(json.loads(request.content))
            return httpx.Response(409, json={"message": "Conflict", "category": "CONFLICT"})
        return server(request)

    with pytest.raises(SlotUnavailable):
        book(gone)
    assert len(server.bodies) == 1


def test_other_rejections_are_not_slot_races():
    server = FakeScheduler()
    server.post_answers = [
        httpx.Response(
            400,
            json={
                "message": "Property values were not valid",
                "category": "VALIDATION_ERROR",
                "correlationId": "c-1",
            },
        )
    ]
    with pytest.raises(ProviderRejected, match="Property values were not valid") as info:
        book(server)
    assert not isinstance(info.value, SlotUnavailable) and len(server.bodies) == 1


def test_server_error_on_the_post_is_not_replayed():
    server = FakeScheduler()
    server.post_answers = [httpx.Response(503, json={"message": "down", "category": "ERROR"})]
    with pytest.raises(ProviderUnavailable):
        book(server)
    assert len(server.bodies) == 1


def test_required_consent_is_refused_before_booking():
    server = FakeScheduler()
    server.consent = {
        "legalConsentEnabled": True,
        "legalConsentOptions": {
            "communicationConsentCheckboxes": [
                {"communicationTypeId": "1", "label": "Emails", "required": True}
            ],
            "processingConsentType": "IMPLICIT",
        },
    }
    with pytest.raises(ProviderRejected, match="consent"):
        book(server)
    assert server.bodies == []


def test_optional_consent_books_without_consenting():
    server = FakeScheduler()
    server.consent = {
        "legalConsentEnabled": True,
        "legalConsentOptions": {
            "communicationConsentCheckboxes": [
                {"communicationTypeId": "1", "label": "Emails", "required": False}
            ],
            "processingConsentType": "IMPLICIT",
        },
    }
    book(server)
    assert server.bodies[0]["legalConsentResponses"] == []


def test_required_form_field_we_cannot_fill_is_refused():
    server = FakeScheduler()
    server.form_fields.append(form_field("company_size"))
    with pytest.raises(ProviderRejected, match="company_size"):
        book(server)
    server = FakeScheduler()
    with pytest.raises(ProviderRejected, match="lastname"):
        book(server, meeting(attendee=Person(email="a@b.com", name="Cher")))


def test_booking_needs_a_slug_and_an_attendee_email():
    with pytest.raises(ProviderRejected, match="meeting_slug"):
        book(FakeScheduler(), meeting_slug=None)
    with pytest.raises(ProviderRejected, match="attendee email"):
        book(FakeScheduler(), meeting(attendee=Person(name="Nobody")))


def test_answer_without_calendar_event_id_is_a_lost_answer_not_retried():
    server = FakeScheduler()
    server.post_answers = [httpx.Response(200, json={"start": "2026-03-10T15:00:00Z"})]
    with pytest.raises(AnswerLost, match="cannot be read"):
        book(server)
    assert [r.method for r in server.requests].count("POST") == 1


def test_a_5xx_on_the_booking_post_is_a_lost_answer_not_replayed():
    server = FakeScheduler()
    server.post_answers = [httpx.Response(504, json={"message": "Gateway Timeout"})]
    with pytest.raises(AnswerLost):
        book(server)
    assert [r.method for r in server.requests].count("POST") == 1


def booked_crm(
    server: FakeScheduler, mid: str = "7001", event: str = "ce-555", email: str = "lisa.thompson@acme.com"
):
    server.crm[mid] = crm(mid, hs_unique_id=event, hs_meeting_end_time="2026-03-10T15:30:00Z")
    server.contacts_of[mid] = [f"c{mid}"]
    server.emails[f"c{mid}"] = email


def test_booking_links_the_crm_meeting_hubspot_made_for_it():
    server = FakeScheduler()
    booked_crm(server)
    record = book(server)
    assert record.external_id == "7001" and record.reference == "calendar-event:ce-555"
    # crm("7001") is titled "Demo 7001" (a meeting link's subject): the meeting's title is written onto it.
    assert server.patches == [("7001", {"hs_meeting_title": "Intro"})] and record.meeting.title == "Intro"


def test_a_booking_whose_crm_meeting_has_our_title_already_is_not_patched():
    server = FakeScheduler()
    booked_crm(server)
    server.crm["7001"]["properties"]["hs_meeting_title"] = "Intro"
    assert book(server).meeting.title == "Intro" and server.patches == []


def test_a_crm_read_carries_the_calendar_event_id_as_its_reference():
    record = adapter(no_http).normalise(RawRecord(payload=crm("7", hs_unique_id="ce-9")))
    assert record.external_id == "7" and record.reference == "calendar-event:ce-9"
    assert adapter(no_http).normalise(RawRecord(payload=crm("8"))).reference is None


def test_move_and_cancel_patch_the_crm_meeting_found_by_its_calendar_event():
    server = FakeScheduler()
    booked_crm(server)
    a = adapter(server)
    later = meeting(start=START + timedelta(hours=2), end=START + timedelta(hours=2, minutes=30))
    moved = a.reschedule("calendar-event:ce-555", BookingRequest(meeting=later, reference="bsw_2"))
    assert moved.external_id == "7001" and moved.meeting.start == START + timedelta(hours=2)
    a.cancel("7001")
    assert server.patches == [
        (
            "7001",
            {
                "hs_meeting_start_time": "2026-03-10T17:00:00Z",
                "hs_meeting_end_time": "2026-03-10T17:30:00Z",
                "hs_timestamp": "2026-03-10T17:00:00Z",
                "hs_meeting_title": "Intro",  # the move carries the title (a title change goes this way)
            },
        ),
        ("7001", {"hs_meeting_outcome": "CANCELED"}),
    ]
    assert a.normalise(RawRecord(payload=server.crm["7001"])).meeting.status is MeetingStatus.CANCELLED


def test_cancelling_a_booking_hubspot_has_not_put_in_the_crm_yet_is_retried_later():
    with pytest.raises(ProviderUnavailable, match="no CRM meeting"):
        adapter(FakeScheduler()).cancel("calendar-event:ce-1")


def test_a_lost_booking_is_found_by_start_and_confirmed_by_its_contact():
    server = FakeScheduler()
    booked_crm(server, "7001", "ce-1", email="someone.else@acme.com")  # same slot, another prospect
    booked_crm(server, "7002", "ce-2")
    found = adapter(server).find_booking(BookingRequest(meeting=meeting(), reference="bsw_1"))
    assert found is not None and found.external_id == "7002" and found.reference == "calendar-event:ce-2"
    assert adapter(FakeScheduler()).find_booking(BookingRequest(meeting=meeting(), reference="bsw_1")) is None


def test_booking_answer_without_end_uses_the_requested_length():
    server = FakeScheduler()
    server.post_answers = [
        httpx.Response(
            200, json={"calendarEventId": "ce-1", "start": "2026-03-10T15:00:00Z", "subject": "Intro"}
        )
    ]
    record = book(server)
    assert record.meeting.end == START + timedelta(minutes=30)
    assert record.meeting.attendee.email == "lisa.thompson@acme.com"


def test_booking_answer_normalises_through_normalise_too():
    answer = {
        "calendarEventId": "ce-2",
        "start": "2026-03-10T15:00:00Z",
        "end": "2026-03-10T15:30:00Z",
        "bookingTimezone": "Not/AZone",
        "subject": "S",
        "formFields": [],
        "guestEmails": [],
    }
    record = adapter(no_http).normalise(RawRecord(payload=answer))
    assert record.external_id == "calendar-event:ce-2" and record.meeting.timezone is None
