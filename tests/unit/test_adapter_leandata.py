"""LeanData BookIt: per-email reads, sweeps only on complete reads, pacing, both record shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from bookingsync.adapters.base import (
    Capability,
    Finder,
    Lookup,
    Mover,
    RawRecord,
    ReadContext,
    Reader,
    WebhookReceiver,
)
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.adapters.registry import ADAPTERS, build_adapter
from bookingsync.models.errors import (
    ConfigError,
    NormaliseError,
    ProviderAuthError,
    ProviderNotFound,
    ProviderUnavailable,
)
from bookingsync.models.meeting import MeetingStatus

NOW = datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC)
START_MS = 1_773_158_400_000  # 2026-03-10T16:00:00Z
HOST = "rep@seller.com"


def nested(
    mid: str, prospect: str, *, book_it: str | None = "scheduled", calendar: str | None = "confirmed"
) -> dict:
    return {
        "bookIt": {"status": book_it},
        "calendarEvent": {
            "id": mid,
            "title": "Intro call",
            "status": calendar,
            "scheduledTime": {"start_time": START_MS, "end_time": START_MS + 30 * 60_000},
            "organizer": {"email": HOST},
            "attendees": [
                {"email": HOST, "responseStatus": "accepted", "organizer": True, "self": True},
                {"email": "colleague@buyer.com", "responseStatus": "needsAction"},
                {"email": prospect, "responseStatus": "accepted"},
            ],
        },
    }


def flat(mid: str, prospect: str, status: str = "confirmed") -> dict:
    return {
        "id": mid,
        "title": "Intro call",
        "status": status,
        "scheduledTime": {"start_time": START_MS, "end_time": START_MS + 30 * 60_000},
        "organizer_email": HOST,
        "attendees": [
            {"email": HOST, "responseStatus": "accepted"},
            {"email": prospect, "responseStatus": "accepted"},
        ],
    }


class FakeBookIt:
    """`GET /v1/meetings?prospectEmail=`: answers[email] is a list of meetings or an httpx.Response."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.startswith("/v1/meeting/"):
            answer = self.answers.get(request.url.raw_path.decode())
        else:
            answer = self.answers.get(request.url.params["prospectEmail"], [])
        if isinstance(answer, httpx.Response):
            return answer
        if answer is None:
            return httpx.Response(404, json={"error": "Meeting not found"})
        return httpx.Response(200, json=answer)

    @property
    def emails(self) -> list[str]:
        return [r.url.params["prospectEmail"] for r in self.requests]


def adapter(server, **kwargs) -> LeanDataAdapter:
    kwargs.setdefault("sleep", lambda s: None)
    return LeanDataAdapter(
        connection_id="ld",
        base_url="https://api.leandata.com",
        api_key="key-1",
        transport=httpx.MockTransport(server),
        **kwargs,
    )


def context(*emails: str) -> ReadContext:
    return ReadContext(now=NOW, watch_emails=frozenset(emails))


# -- read ---------------------------------------------------------------------------------------


def test_one_page_per_email_with_a_sweep_of_what_was_seen():
    server = FakeBookIt({"ann@buyer.com": [nested("ev1", "ann@buyer.com"), flat("m2", "ann@buyer.com")]})
    a = adapter(server, watch_emails=["Ann@Buyer.com "], lookback_days=7)
    pages = list(a.read(None, context("bob@buyer.com", "ann@buyer.com")))
    assert server.emails == ["ann@buyer.com", "bob@buyer.com"]  # normalised, deduplicated, sorted
    first = server.requests[0]
    assert first.headers["X-Api-Key"] == "key-1"
    assert first.url.path == "/v1/meetings"
    assert first.url.params["start"] == "2026-02-23T12:00:00.123Z"
    ann, bob = pages
    assert [r.external_id for r in ann.records] == ["ev1", "m2"]
    assert {r.scope for r in ann.records} == {"ann@buyer.com"}
    assert ann.sweep.scope == "ann@buyer.com" and ann.sweep.seen == {"ev1", "m2"}
    assert ann.sweep.window_start == datetime(2026, 2, 23, 12, 0, 0, 124000, tzinfo=UTC)  # 1 ms past `start`
    assert bob.records == [] and bob.sweep.seen == frozenset()  # an empty array is a complete read
    read_at = int(NOW.timestamp())
    assert ann.cursor == {"read": {"ann@buyer.com": read_at}}
    assert bob.cursor == {"read": {"ann@buyer.com": read_at, "bob@buyer.com": read_at}}
    assert bob.watch is not None and bob.watch.count == 2


def test_a_crashed_round_goes_on_with_the_emails_still_due():
    server = FakeBookIt({})
    a = adapter(server)
    done = {"a@x.co": int(NOW.timestamp()), "b@x.co": int(NOW.timestamp())}
    pages = list(a.read({"read": done}, context("a@x.co", "b@x.co", "c@x.co", "d@x.co")))
    assert server.emails == ["c@x.co", "d@x.co"]
    assert set(pages[-1].cursor["read"]) == {"a@x.co", "b@x.co", "c@x.co", "d@x.co"}


def test_a_cursor_of_the_older_shape_reads_every_email_as_new():
    server = FakeBookIt({})
    pages = list(adapter(server).read({"after": "zz@x.co"}, context("a@x.co")))
    assert server.emails == ["a@x.co"] and pages[-1].cursor == {"read": {"a@x.co": int(NOW.timestamp())}}


def test_an_answer_that_is_not_an_array_never_sweeps():
    server = FakeBookIt(
        {"a@x.co": httpx.Response(200, json={"meetings": []}), "b@x.co": [flat("m1", "b@x.co")]}
    )
    a_page, b_page = adapter(server).read(None, context("a@x.co", "b@x.co"))
    assert a_page.sweep is None and a_page.records == []
    assert b_page.sweep is not None


def test_an_item_without_an_id_keeps_the_records_but_drops_the_sweep():
    server = FakeBookIt({"a@x.co": [flat("m1", "a@x.co"), {"title": "who am I"}]})
    (page,) = adapter(server).read(None, context("a@x.co"))
    assert len(page.records) == 2 and page.sweep is None


def test_a_4xx_for_one_email_skips_it_without_a_sweep_and_goes_on():
    server = FakeBookIt(
        {
            "a@x.co": httpx.Response(404, json={"error": "Prospect not found"}),
            "b@x.co": [flat("m1", "b@x.co")],
        }
    )
    a_page, b_page = adapter(server).read(None, context("a@x.co", "b@x.co"))
    assert a_page.sweep is None and "a@x.co" in a_page.cursor["read"]
    assert b_page.sweep.seen == {"m1"}


def test_a_failed_read_raises_and_never_sweeps_that_email():
    server = FakeBookIt(
        {"a@x.co": [flat("m1", "a@x.co")], "b@x.co": httpx.Response(503, json={"error": "down"})}
    )
    pages = []
    with pytest.raises(ProviderUnavailable, match="down"):
        for page in adapter(server).read(None, context("a@x.co", "b@x.co", "c@x.co")):
            pages.append(page)
    assert [p.sweep.scope for p in pages] == ["a@x.co"]
    assert pages[-1].cursor == {"read": {"a@x.co": int(NOW.timestamp())}}  # b and c stay due
    assert "c@x.co" not in server.emails


def test_gateway_auth_failures_carry_the_gateway_message():
    server = FakeBookIt({"a@x.co": httpx.Response(401, json={"message": "Unauthorized"})})
    with pytest.raises(ProviderAuthError) as caught:
        list(adapter(server).read(None, context("a@x.co")))
    assert caught.value.message == "Unauthorized" and caught.value.provider == "leandata"


def test_requests_are_paced_at_requests_per_second():
    sleeps: list[float] = []
    server = FakeBookIt({})
    list(
        adapter(server, sleep=sleeps.append, requests_per_second=2.0).read(
            None, context("a@x.co", "b@x.co", "c@x.co")
        )
    )
    assert len(sleeps) == 2
    assert sleeps == pytest.approx([0.5, 0.5], abs=0.05)


def test_no_emails_no_requests():
    server = FakeBookIt({})
    [page] = list(adapter(server).read(None, context()))
    assert server.requests == [] and page.records == [] and page.watch.count == 0


# -- normalise ----------------------------------------------------------------------------------


def normalise(payload, scope="ann@buyer.com"):
    return adapter(FakeBookIt({})).normalise(RawRecord(payload=payload, scope=scope))


def test_normalise_the_openapi_shape():
    record = normalise(nested("ev1", "Ann@Buyer.com"))
    meeting = record.meeting
    assert record.external_id == "ev1" and record.scope == "ann@buyer.com"
    assert meeting.status is MeetingStatus.SCHEDULED
    assert meeting.start == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    assert meeting.end == datetime(2026, 3, 10, 16, 30, tzinfo=UTC)
    assert meeting.attendee.email == "ann@buyer.com"  # the prospect, not the first guest
    assert meeting.hosts == (HOST,)
    assert meeting.title == "Intro call"


def test_normalise_the_flat_shape_the_same_way():
    assert normalise(flat("m1", "ann@buyer.com")).meeting == normalise(nested("m1", "ann@buyer.com")).meeting


def test_without_a_scope_match_the_first_non_organizer_is_the_attendee():
    record = normalise(nested("ev1", "ann@buyer.com"), scope=None)
    assert record.meeting.attendee.email == "colleague@buyer.com" and record.scope is None


def test_a_top_level_id_wins_over_the_calendar_event_id():
    payload = {**nested("ev1", "ann@buyer.com"), "id": "bookit-52-char-id"}
    assert normalise(payload).external_id == "bookit-52-char-id"


@pytest.mark.parametrize(
    ("book_it", "calendar", "expected"),
    [
        ("canceled", "confirmed", MeetingStatus.CANCELLED),
        ("scheduled", "cancelled", MeetingStatus.CANCELLED),
        ("scheduled", "canceled", MeetingStatus.CANCELLED),
        ("rescheduled", "confirmed", MeetingStatus.SCHEDULED),
        (None, "confirmed", MeetingStatus.SCHEDULED),
        ("scheduled", None, MeetingStatus.SCHEDULED),
    ],
)
def test_status_mapping(book_it, calendar, expected):
    assert (
        normalise(nested("ev1", "ann@buyer.com", book_it=book_it, calendar=calendar)).meeting.status
        is expected
    )


def test_flat_canceled_is_cancelled():
    assert normalise(flat("m1", "ann@buyer.com", status="canceled")).meeting.status is MeetingStatus.CANCELLED


def _with_times(start, end) -> dict:
    payload = flat("m1", "ann@buyer.com")
    payload["scheduledTime"] = {"start_time": start, "end_time": end}
    return payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (nested("ev1", "a@x.co", book_it="pending", calendar="confirmed"), "bookIt.status 'pending'"),
        (nested("ev1", "a@x.co", book_it=None, calendar=None), "no status"),
        (_with_times(1_773_158_400, 1_773_160_200), "looks like seconds"),
        (_with_times("2026-03-10T16:00:00Z", START_MS), "not epoch milliseconds"),
        (_with_times(START_MS, None), "no scheduledTime.end_time"),
        (_with_times(START_MS + 60_000, START_MS), "before it starts"),
        ({k: v for k, v in flat("m1", "a@x.co").items() if k != "scheduledTime"}, "no scheduledTime"),
        ({"title": "no id", "status": "confirmed"}, "no id"),
        ("a string", "JSON object"),
    ],
)
def test_bad_records_raise_normalise_error_with_a_reason(payload, reason):
    with pytest.raises(NormaliseError, match=reason):
        normalise(payload)


def test_epoch_ms_as_a_numeric_string_is_accepted():
    record = normalise(_with_times(str(START_MS), str(START_MS + 60_000)))
    assert record.meeting.start == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)


# -- lookup by id, webhooks, config -------------------------------------------------------------


def test_get_meeting_reads_one_meeting():
    server = FakeBookIt({"/v1/meeting/m%2F1": flat("m/1", "ann@buyer.com")})
    raw = adapter(server).get_meeting("m/1")
    assert raw.external_id == "m/1" and raw.payload["id"] == "m/1"
    assert server.requests[0].url.raw_path == b"/v1/meeting/m%2F1"


def test_get_meeting_not_found_carries_leandatas_message():
    with pytest.raises(ProviderNotFound) as caught:
        adapter(FakeBookIt({})).get_meeting("nope")
    assert caught.value.message == "Meeting not found"


def test_it_polls_reads_by_id_and_writes_but_takes_no_webhooks():
    a = adapter(FakeBookIt({}))
    assert Capability.RECEIVE_WEBHOOKS not in LeanDataAdapter.capabilities
    assert not isinstance(a, WebhookReceiver) and not hasattr(a, "parse_webhook")
    assert isinstance(a, Reader) and isinstance(a, Lookup) and isinstance(a, Mover) and isinstance(a, Finder)


def test_bad_settings_are_config_errors_with_sentences():
    with pytest.raises(ConfigError, match="watch_emails has 'not-an-email'"):
        adapter(FakeBookIt({}), watch_emails=["not-an-email"])
    with pytest.raises(ConfigError, match="requests_per_second"):
        adapter(FakeBookIt({}), requests_per_second=0)
    with pytest.raises(ConfigError, match="api_key"):
        LeanDataAdapter(connection_id="ld", base_url="https://api.leandata.com", api_key="")


def test_registry_builds_known_providers_and_refuses_the_rest():
    assert ADAPTERS["leezy"] is LeezyAdapter and ADAPTERS["leandata"] is LeanDataAdapter
    assert all(cls.provider == name for name, cls in ADAPTERS.items())
    built = build_adapter("leandata", "ld", {"base_url": "https://api.leandata.com", "api_key": "k"})
    assert isinstance(built, LeanDataAdapter)
    built.close()
    with pytest.raises(
        ConfigError, match="'calendly' is not one bookingsync knows; use one of: .*leandata, leezy"
    ):
        build_adapter("calendly", "c", {})
    with pytest.raises(ConfigError, match="takes no setting colour"):
        build_adapter("leezy", "c", {"base_url": "https://app.leezy.ai", "token": "t", "colour": "red"})
    with pytest.raises(ConfigError, match="needs the setting token"):
        build_adapter("leezy", "c", {"base_url": "https://app.leezy.ai"})
