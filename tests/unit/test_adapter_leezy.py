"""Leezy: offset paging that never skips, normalise, and webhook verification."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bookingsync.adapters import skew
from bookingsync.adapters.base import Capability, RawRecord, ReadContext
from bookingsync.adapters.leezy import CLOCK_SKEW_ALLOWANCE, ChangeRead, LeezyAdapter
from bookingsync.models.errors import ConfigError, NormaliseError, WebhookMalformed, WebhookUnauthorized
from bookingsync.models.meeting import MeetingStatus

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
SECRET = "lzy_ws_test_secret"


@pytest.fixture(autouse=True)
def fresh_skew_estimates(monkeypatch):
    # The skew estimate is per connection id and process-wide: a lag another test observed for
    # "leezy-main" (a simulator's Date on a fake clock) would widen this file's margins.
    monkeypatch.setattr(skew, "_ESTIMATES", {})


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def resource(rid: str, updated: datetime, **attributes) -> dict:
    base = {
        "title": f"Demo {rid}",
        "start_time": "2026-03-10T15:00:00Z",
        "end_time": "2026-03-10T15:30:00Z",
        "timezone": "Europe/Berlin",
        "status": "scheduled",
        "attendee": {"name": "Lisa Thompson", "email": "Lisa.Thompson@Acme.com ", "phone": "+1-555-0199"},
        "meeting_url": "https://meet.google.com/abc-defg-hij",
        "cancelled_at": None,
        "created_at": iso(T0),
        "updated_at": iso(updated),
    }
    base.update(attributes)
    return {"id": rid, "type": "meeting", "attributes": base}


class FakeLeezy:
    """GET /api/v1/meetings as documented: strict `since`, limit/offset, ordered by updated_at.

    `between_pages(n)` runs before answering request n (0-based), to move records mid-read.
    """

    def __init__(self, records: list[dict], between_pages=None, ignore_offset: bool = False) -> None:
        self.records = {r["id"]: r for r in records}
        self.between_pages = between_pages
        self.ignore_offset = ignore_offset
        self.requests: list[httpx.Request] = []

    def touch(self, rid: str, updated: datetime) -> None:
        self.records[rid]["attributes"]["updated_at"] = iso(updated)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.between_pages:
            self.between_pages(self, len(self.requests))
        self.requests.append(request)
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        rows = sorted(self.records.values(), key=lambda r: (r["attributes"]["updated_at"], r["id"]))
        if "since" in query:
            since = parse(query["since"])
            rows = [r for r in rows if parse(r["attributes"]["updated_at"]) > since]
        limit, offset = int(query.get("limit", 20)), 0 if self.ignore_offset else int(query.get("offset", 0))
        chunk = rows[offset : offset + limit]
        meta = {
            "api_version": "2024-01-01",
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(chunk) < len(rows),
            "count": len(chunk),
        }
        return httpx.Response(200, json={"data": chunk, "meta": meta})


def adapter(handler, **kwargs) -> LeezyAdapter:
    kwargs.setdefault("page_size", 2)
    return LeezyAdapter(
        connection_id="leezy-main",
        base_url="https://app.leezy.ai",
        token="lzy_at_x",
        webhook_secret=SECRET,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
        **kwargs,
    )


def read_all(a: LeezyAdapter, cursor=None, now=NOW):
    pages = list(a.read(cursor, ReadContext(now=now)))
    ids = [r.external_id for p in pages for r in p.records]
    return pages, ids


# -- paging over HTTP ---------------------------------------------------------------------------


def test_first_read_has_no_since_and_pages_on_by_key():
    server = FakeLeezy([resource("m1", T0), resource("m2", T0 + timedelta(seconds=1)), resource("m3", T0)])
    pages, ids = read_all(adapter(server))
    assert sorted(set(ids)) == ["m1", "m2", "m3"]
    first = server.requests[0]
    assert first.url.path == "/api/v1/meetings"
    assert first.headers["Authorization"] == "Bearer lzy_at_x"
    assert dict(first.url.params) == {"limit": "2", "offset": "0"}
    # Re-anchored on the newest key read (whole seconds on the wire, so its second is re-read).
    assert dict(server.requests[1].url.params) == {
        "limit": "2",
        "offset": "0",
        "since": iso(T0 - timedelta(seconds=1)),
    }


def test_default_page_size_is_the_documented_maximum():
    server = FakeLeezy([resource("m1", T0)])
    read_all(adapter(server, page_size=100))
    assert server.requests[0].url.params["limit"] == "100"


def test_a_read_advances_since_to_the_newest_updated_at():
    newest = T0 + timedelta(minutes=3)
    server = FakeLeezy([resource("a", T0), resource("b", newest), resource("c", T0 + timedelta(minutes=1))])
    pages, _ = read_all(adapter(server))
    assert pages[-1].cursor == {"since": iso(newest), "offset": 0}
    # Intermediate pages keep the old since (None) and say where the read stands.
    assert pages[0].cursor["since"] is None
    assert pages[0].cursor["position"] == iso(T0 + timedelta(minutes=1)) and pages[0].cursor["offset"] == 0


def test_records_sharing_the_watermark_timestamp_are_reread_not_skipped():
    tie = T0 + timedelta(seconds=5)
    server = FakeLeezy([resource("a", T0), resource("b", tie), resource("c", tie)])
    pages, _ = read_all(adapter(server))
    assert pages[-1].cursor["since"] == iso(tie)
    # "d" shares the watermark's timestamp but became visible only after the first read.
    server.records["d"] = resource("d", tie)
    server.requests.clear()
    _, ids = read_all(adapter(server), pages[-1].cursor)
    assert server.requests[0].url.params["since"] == iso(tie - timedelta(seconds=1))
    assert "d" in ids and {"b", "c"} <= set(ids)


def test_overlap_is_floored_to_whole_seconds():
    state = ChangeRead.start({"since": "2026-03-01T10:00:05.700000+00:00", "offset": 0}, NOW)
    assert state.params(100, 1.0)["since"] == "2026-03-01T10:00:04Z"


def test_a_record_moving_mid_read_skips_nothing_and_the_watermark_still_advances():
    since = T0 - timedelta(hours=1)
    records = [resource(f"r{i}", T0 + timedelta(seconds=i)) for i in range(5)]

    def move_r0(server: FakeLeezy, n: int) -> None:
        if n == 1:  # after page 1: r0 is updated and jumps to the end (offset paging would skip r2)
            server.touch("r0", NOW - timedelta(minutes=10))

    server = FakeLeezy(records, between_pages=move_r0)
    pages, ids = read_all(adapter(server), {"since": iso(since), "offset": 0})
    assert {"r1", "r2", "r3", "r4"} <= set(ids) and ids[-1] == "r0"
    assert pages[-1].cursor["since"] == iso(NOW - timedelta(minutes=10))


def test_a_record_created_during_the_read_does_not_hold_the_watermark():
    since = T0 - timedelta(hours=1)

    def insert(server: FakeLeezy, n: int) -> None:
        if n == 1:
            server.records["new"] = resource("new", T0 + timedelta(hours=2))

    server = FakeLeezy([resource(f"r{i}", T0 + timedelta(seconds=i)) for i in range(4)], between_pages=insert)
    pages, ids = read_all(adapter(server), {"since": iso(since), "offset": 0})
    assert "new" in ids and pages[-1].cursor["since"] == iso(T0 + timedelta(hours=2))


def test_a_record_deleted_during_the_read_skips_nothing():
    since = T0 - timedelta(hours=1)

    def delete(server: FakeLeezy, n: int) -> None:
        if n == 1:
            del server.records["r0"]

    server = FakeLeezy([resource(f"r{i}", T0 + timedelta(seconds=i)) for i in range(4)], between_pages=delete)
    pages, ids = read_all(adapter(server), {"since": iso(since), "offset": 0})
    assert {"r0", "r1", "r2", "r3"} == set(ids)
    assert pages[-1].cursor["since"] == iso(T0 + timedelta(seconds=3))


def test_a_resumed_read_continues_at_its_position():
    since = T0 - timedelta(hours=1)
    server = FakeLeezy([resource(f"r{i}", T0 + timedelta(seconds=i)) for i in range(5)])
    reader = adapter(server).read({"since": iso(since), "offset": 0}, ReadContext(now=NOW))
    saved = next(reader).cursor  # the worker stores page 1, then crashes (or the read is deferred)
    reader.close()
    assert saved["position"] == iso(T0 + timedelta(seconds=1)) and saved["started"] == iso(NOW)
    server.requests.clear()
    pages, ids = read_all(adapter(server), saved, now=NOW + timedelta(minutes=5))
    assert ids == ["r2", "r3", "r4"]  # r1, read before the crash, is asked again but not handed on twice
    assert server.requests[0].url.params["since"] == iso(T0)
    assert pages[-1].cursor == {"since": iso(T0 + timedelta(seconds=4)), "offset": 0}


def test_a_cursor_of_the_older_shape_resumed_mid_read_keeps_since():
    since = T0 - timedelta(hours=1)
    server = FakeLeezy([resource(f"r{i}", T0 + timedelta(seconds=i)) for i in range(5)])
    old = {"since": iso(since), "offset": 2, "high": iso(T0 + timedelta(seconds=1)), "resumed": False}
    pages, ids = read_all(adapter(server), old)
    assert ids == ["r2", "r3", "r4"]
    assert pages[-1].cursor == {"since": iso(since), "offset": 0}


def test_a_server_that_ignores_offset_ends_the_read_disturbed_instead_of_looping():
    # All in one second: keys give no progress, so the read pages by offset, which is ignored.
    server = FakeLeezy([resource(f"r{i}", T0) for i in range(5)], ignore_offset=True)
    pages, _ = read_all(adapter(server), {"since": iso(T0 - timedelta(hours=1)), "offset": 0})
    assert len(server.requests) == 3
    assert pages[-1].cursor["since"] == iso(T0)  # re-read from T0 - overlap: r2..r4 come again


def test_since_never_advances_past_the_reads_start_less_the_skew_allowance():
    # Covers a provider clock running ahead, and updates made while the read was running.
    server = FakeLeezy(
        [resource("future", NOW + timedelta(hours=1)), resource("a", NOW - timedelta(seconds=5))]
    )
    pages, _ = read_all(adapter(server))
    assert pages[-1].cursor["since"] == iso(NOW - CLOCK_SKEW_ALLOWANCE)


def test_an_empty_read_keeps_since_and_yields_one_page():
    server = FakeLeezy([])
    pages, ids = read_all(adapter(server), {"since": iso(T0), "offset": 0})
    assert ids == [] and len(pages) == 1  # one page: nothing to prove, no census
    assert pages[0].cursor["since"] == iso(T0)


def test_an_unusable_cursor_falls_back_to_a_full_read():
    state = ChangeRead.start({"since": "yesterday", "offset": 3}, NOW)
    assert state.since is None and state.offset == 0
    assert "since" not in state.params(100, 1.0)


def test_offsets_advance_by_records_received_when_the_server_caps_the_page():
    state = ChangeRead.start(None, NOW)
    page = [resource(f"r{i}", T0) for i in range(50)]
    assert not state.take(page, {"total": 120, "has_more": True}, page_size=100)
    assert state.params(100, 1.0)["offset"] == 0 and state.position == T0  # keyed: re-anchored
    assert not state.take(page, {"total": 120, "has_more": True}, page_size=100)  # no progress
    assert state.mode == "offset" and state.params(100, 1.0)["offset"] == 50


def test_has_more_false_before_reaching_total_is_a_disturbance():
    state = ChangeRead.start(None, NOW)
    assert state.take([resource("a", T0)], {"total": 3, "has_more": False}, page_size=100)
    assert state.disturbed and state.cursor(True)["since"] == iso(T0)  # only what was read is proved


def test_base_url_given_with_the_api_prefix_is_not_doubled():
    server = FakeLeezy([])
    a = LeezyAdapter(
        connection_id="c",
        base_url="https://app.leezy.ai/api/v1/",
        token="t",
        transport=httpx.MockTransport(server),
        sleep=lambda s: None,
    )
    list(a.read(None, ReadContext(now=NOW)))
    assert str(server.requests[0].url).startswith("https://app.leezy.ai/api/v1/meetings?")


def test_bad_settings_are_config_errors_with_sentences():
    with pytest.raises(ConfigError, match="token"):
        LeezyAdapter(connection_id="c", base_url="https://app.leezy.ai", token=" ")
    with pytest.raises(ConfigError, match="page_size"):
        LeezyAdapter(connection_id="c", base_url="https://app.leezy.ai", token="t", page_size=500)


def test_capabilities():
    assert LeezyAdapter.capabilities == {Capability.LIST_CHANGES, Capability.RECEIVE_WEBHOOKS}


# -- normalise ----------------------------------------------------------------------------------


def normalise(payload):
    return adapter(FakeLeezy([])).normalise(RawRecord(payload=payload))


def test_normalise_a_documented_resource():
    record = normalise(resource("meeting_abc123", T0))
    meeting = record.meeting
    assert record.external_id == "meeting_abc123"
    assert record.source_updated_at == T0
    assert meeting.status is MeetingStatus.SCHEDULED
    assert meeting.start == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert meeting.end.tzinfo is not None and meeting.timezone == "Europe/Berlin"
    assert meeting.attendee.email == "lisa.thompson@acme.com" and meeting.attendee.name == "Lisa Thompson"
    assert meeting.conference_url == "https://meet.google.com/abc-defg-hij"
    assert meeting.title == "Demo meeting_abc123"


def test_normalise_a_flat_object_gives_the_same_meeting():
    nested = resource("m1", T0)
    flat = {"id": "m1", **nested["attributes"]}
    assert normalise(flat).meeting.content_hash() == normalise(nested).meeting.content_hash()


def test_times_with_offsets_become_utc():
    record = normalise(
        resource("m1", T0, start_time="2026-03-10T16:00:00+01:00", end_time="2026-03-10T16:30:00+01:00")
    )
    assert record.meeting.start == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("scheduled", MeetingStatus.SCHEDULED),
        ("confirmed", MeetingStatus.CONFIRMED),
        ("completed", MeetingStatus.COMPLETED),
        ("cancelled", MeetingStatus.CANCELLED),
        ("no_show", MeetingStatus.NO_SHOW),
        ("Canceled", MeetingStatus.CANCELLED),
    ],
)
def test_statuses(status, expected):
    assert normalise(resource("m1", T0, status=status)).meeting.status is expected


def test_cancelled_at_wins_over_status():
    record = normalise(resource("m1", T0, status="scheduled", cancelled_at="2026-03-01T11:00:00Z"))
    assert record.meeting.status is MeetingStatus.CANCELLED


def test_an_invalid_timezone_is_dropped_and_the_meeting_kept():
    record = normalise(resource("m1", T0, timezone="Mars/Olympus_Mons"))
    assert record.meeting.timezone is None and record.meeting.start.year == 2026


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (resource("m1", T0, status="tentative"), "'tentative'"),
        (resource("m1", T0, status=None), "no status"),
        (resource("m1", T0, start_time="2026-03-10T15:00:00"), "start_time .* no UTC offset"),
        (resource("m1", T0, end_time=None), "no end_time"),
        (resource("m1", T0, start_time=None), "no start_time"),
        (resource("m1", T0, start_time="next tuesday"), "start_time .* not an ISO 8601"),
        ({"type": "meeting", "attributes": resource("x", T0)["attributes"]}, "no id"),
        (resource("m1", T0, end_time="2026-03-10T14:00:00Z"), "ends .* before it starts"),
        (resource("m1", T0, attendee={"email": "not-an-address"}), "attendee.email"),
        ({"id": "l1", "type": "lead", "attributes": {}}, "type 'lead'"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_bad_records_raise_normalise_error_with_a_reason(payload, reason):
    with pytest.raises(NormaliseError, match=reason):
        normalise(payload)


# -- webhooks -----------------------------------------------------------------------------------


def envelope(event_type: str = "meeting.scheduled", data: dict | None = None) -> bytes:
    body = {
        "id": "evt_abc123",
        "type": event_type,
        "created_at": "2026-03-02T11:59:00Z",
        "organization_id": "org_1",
        "chatbot_id": "chatbot_1",
        "data": data if data is not None else resource("m1", T0),
    }
    return json.dumps(body).encode()


def signed(body: bytes, *, at: datetime = NOW, secret: str = SECRET, legacy: bool = False) -> dict[str, str]:
    ts = str(int(at.timestamp()))
    message = body if legacy else ts.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {
        "X-Leezy-Signature": f"sha256={digest}",
        "X-Leezy-Timestamp": ts,
        "X-Leezy-Event": "meeting.scheduled",
        "X-Leezy-Delivery": "del_xyz789",
    }


def test_a_well_signed_delivery_is_parsed():
    body = envelope()
    delivery = adapter(FakeLeezy([])).parse_webhook(signed(body), body, NOW)
    assert delivery.delivery_id == "del_xyz789" and delivery.event_type == "meeting.scheduled"
    assert delivery.handled and [r.external_id for r in delivery.records] == ["m1"]
    assert adapter(FakeLeezy([])).normalise(delivery.records[0]).meeting.status is MeetingStatus.SCHEDULED


def test_header_names_are_case_insensitive():
    body = envelope()
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert adapter(FakeLeezy([])).parse_webhook(headers, body, NOW).records


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "X-Leezy-Signature": "sha256=" + "0" * 64}, b),
        lambda h, b: (h, b.replace(b"m1", b"m2")),
        lambda h, b: (signed(b, secret="someone-else"), b),
        lambda h, b: ({**h, "X-Leezy-Timestamp": str(int(h["X-Leezy-Timestamp"]) + 1)}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "X-Leezy-Signature"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "X-Leezy-Timestamp"}, b),
        lambda h, b: ({**h, "X-Leezy-Signature": h["X-Leezy-Signature"].removeprefix("sha256=")}, b),
        lambda h, b: ({**h, "X-Leezy-Timestamp": "soon"}, b),
        lambda h, b: ({**h, "X-Leezy-Timestamp": "9" * 40}, b),
    ],
    ids=[
        "zero-signature",
        "body-changed",
        "wrong-secret",
        "timestamp-changed",
        "no-signature",
        "no-timestamp",
        "no-prefix",
        "timestamp-not-a-number",
        "timestamp-overflow",
    ],
)
def test_forged_deliveries_are_unauthorized(tamper):
    body = envelope()
    headers, body = tamper(signed(body), body)
    with pytest.raises(WebhookUnauthorized) as caught:
        adapter(FakeLeezy([])).parse_webhook(headers, body, NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize("skew", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)])
def test_stale_or_future_deliveries_are_unauthorized(skew):
    body = envelope()
    with pytest.raises(WebhookUnauthorized, match="5 minutes"):
        adapter(FakeLeezy([])).parse_webhook(signed(body, at=NOW + skew), body, NOW)


@pytest.mark.parametrize("skew", [timedelta(minutes=5), -timedelta(minutes=5)])
def test_deliveries_at_the_edge_of_the_window_are_accepted(skew):
    body = envelope()
    assert adapter(FakeLeezy([])).parse_webhook(signed(body, at=NOW + skew), body, NOW).records


def test_the_legacy_body_only_signature_needs_opting_in():
    body = envelope()
    headers = signed(body, legacy=True)
    with pytest.raises(WebhookUnauthorized):
        adapter(FakeLeezy([])).parse_webhook(headers, body, NOW)
    assert adapter(FakeLeezy([]), accept_legacy_signature=True).parse_webhook(headers, body, NOW).records
    # Opting in does not waive the replay window.
    old = signed(body, legacy=True, at=NOW - timedelta(hours=1))
    with pytest.raises(WebhookUnauthorized):
        adapter(FakeLeezy([]), accept_legacy_signature=True).parse_webhook(old, body, NOW)


def test_without_a_secret_every_delivery_is_refused():
    a = LeezyAdapter(
        connection_id="c",
        base_url="https://app.leezy.ai",
        token="t",
        transport=httpx.MockTransport(FakeLeezy([])),
    )
    body = envelope()
    with pytest.raises(WebhookUnauthorized, match="webhook_secret"):
        a.parse_webhook(signed(body), body, NOW)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"id": "evt_1", "type": "meeting.scheduled"}).encode(), "'data'"),
        (json.dumps({"id": "evt_1", "data": {}}).encode(), "'type'"),
        (json.dumps({"type": "meeting.scheduled", "data": {}}).encode(), "'id'"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_bodies_are_rejected_with_a_reason(body, reason):
    with pytest.raises(WebhookMalformed, match=reason) as caught:
        adapter(FakeLeezy([])).parse_webhook(signed(body), body, NOW)
    assert caught.value.status == 400


def test_unhandled_event_types_are_acknowledged_without_records():
    body = envelope("lead.created", {"id": "lead_1"})
    delivery = adapter(FakeLeezy([])).parse_webhook(signed(body), body, NOW)
    assert not delivery.handled and delivery.records == [] and delivery.event_type == "lead.created"


@pytest.mark.parametrize(
    ("event_type", "data_status", "expected"),
    [
        ("meeting.cancelled", "scheduled", MeetingStatus.CANCELLED),
        ("meeting.cancelled", None, MeetingStatus.CANCELLED),
        ("meeting.completed", "confirmed", MeetingStatus.COMPLETED),
        ("meeting.scheduled", None, MeetingStatus.SCHEDULED),
        ("meeting.scheduled", "confirmed", MeetingStatus.CONFIRMED),
    ],
)
def test_the_event_type_settles_the_status(event_type, data_status, expected):
    data = resource("m1", T0, status=data_status)
    for shape in (data, {"id": "m1", **data["attributes"]}):  # resource and flat `data`
        body = envelope(event_type, shape)
        delivery = adapter(FakeLeezy([])).parse_webhook(signed(body), body, NOW)
        assert adapter(FakeLeezy([])).normalise(delivery.records[0]).meeting.status is expected


def test_delivery_id_falls_back_to_the_envelope_id():
    body = envelope()
    headers = {k: v for k, v in signed(body).items() if k != "X-Leezy-Delivery"}
    assert adapter(FakeLeezy([])).parse_webhook(headers, body, NOW).delivery_id == "evt_abc123"


# -- property: whatever moves during a read, the next poll closes the gap ------------------------


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=12),
    page_size=st.integers(min_value=1, max_value=4),
    touches=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 11)), max_size=4),
    start_from_scratch=st.booleans(),
)
@example(count=7, page_size=1, touches=[(6, 0), (6, 6)], start_from_scratch=False)  # two moves hide a repeat
def test_two_polls_see_every_records_latest_version(count, page_size, touches, start_from_scratch):
    records = [resource(f"r{i:02d}", T0 + timedelta(seconds=i // 2)) for i in range(count)]  # ties too
    bumps = iter(range(1, 100))

    def mutate(server: FakeLeezy, n: int) -> None:
        for request_no, index in touches:
            if request_no == n and index < count:
                # An update made during the read carries Leezy's clock then: after the read began.
                server.touch(f"r{index:02d}", NOW + timedelta(seconds=5 * next(bumps)))

    server = FakeLeezy(records, between_pages=mutate)
    cursor = None if start_from_scratch else {"since": iso(T0 - timedelta(hours=1)), "offset": 0}
    first_pages, _ = read_all(adapter(server, page_size=page_size), cursor)
    server.between_pages = None
    second_pages, _ = read_all(adapter(server, page_size=page_size), first_pages[-1].cursor)

    read = {
        (r.payload["id"], r.payload["attributes"]["updated_at"])
        for p in first_pages + second_pages
        for r in p.records
    }
    latest = {(rid, r["attributes"]["updated_at"]) for rid, r in server.records.items()}
    assert latest <= read
