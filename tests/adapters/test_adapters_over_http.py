"""The Leezy and LeanData adapters against the simulators over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bookingsync.adapters.base import Page, ReadContext
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.errors import (
    NormaliseError,
    ProviderAuthError,
    ProviderUnavailable,
    WebhookUnauthorized,
)
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.leezy import MEETINGS_PATH
from bookingsync.sandbox.leezy.webhooks import SIGNATURE_STAGING
from bookingsync.sandbox.server import RunningSandbox, start_sandbox

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)  # updated_at of the first seeded Leezy record
NOW = T0 + timedelta(hours=2)  # the sandbox's clock and our ReadContext.now
START = NOW + timedelta(days=1)  # when the seeded meetings take place
SECRET = "lzy_ws_over_http"


class Sleeps(list):  # a fake `sleep` that records instead of waiting
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


_open: list[LeezyAdapter | LeanDataAdapter] = []  # closed at teardown


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox(now=lambda: NOW)
    yield running
    while _open:
        _open.pop().close()
    running.stop()


def leezy(sandbox: RunningSandbox, sleeps: Sleeps | None = None, **kwargs) -> LeezyAdapter:
    # An unlimited pace, so every recorded sleep is a retry wait and not request pacing.
    kwargs = {
        "token": sandbox.leezy_token,
        "requests_per_minute": 1e9,
        "sleep": Sleeps() if sleeps is None else sleeps,
        **kwargs,
    }
    _open.append(LeezyAdapter(connection_id="lz", base_url=sandbox.leezy_url, **kwargs))
    return _open[-1]


def leandata(sandbox: RunningSandbox, **kwargs) -> LeanDataAdapter:
    kwargs = {"api_key": sandbox.leandata_api_key, "requests_per_second": 1e9, "sleep": Sleeps(), **kwargs}
    _open.append(LeanDataAdapter(connection_id="ld", base_url=sandbox.leandata_url, **kwargs))
    return _open[-1]


def seed(
    sandbox: RunningSandbox, count: int, first: int = 0, updated_at: datetime | None = None
) -> list[str]:
    """`count` Leezy meetings updated one second apart from T0 (or all at `updated_at`)."""
    return [
        sandbox.leezy.book(
            f"Demo {i}",
            START,
            START + timedelta(minutes=30),
            "Europe/Berlin",
            f"p{i}@example.com",
            updated_at=updated_at or T0 + timedelta(seconds=i),
        )
        for i in range(first, first + count)
    ]


def read_all(adapter, cursor=None, **context) -> list[Page]:
    return list(adapter.read(cursor, ReadContext(now=NOW, **context)))


def ids(pages: list[Page]) -> list[str]:
    return [r.external_id for page in pages for r in page.records]


def wire(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")  # the adapter's cursor format


def asked(sandbox: RunningSandbox) -> list[tuple[int, str | None]]:
    """(offset, since) of every GET /meetings the simulator received, retries included."""
    return [
        (int(dict(e.query)["offset"]), dict(e.query).get("since"))
        for e in sandbox.leezy.requests.entries()
        if e.path == MEETINGS_PATH
    ]


def offsets_asked(sandbox: RunningSandbox) -> list[int]:
    return [offset for offset, _ in asked(sandbox)]


def at(seconds: int) -> str:
    return wire(T0 + timedelta(seconds=seconds))


# -- Leezy: paging --------------------------------------------------------------------------------


def test_leezy_pages_to_the_end_and_advances_the_cursor(sandbox):
    booked = seed(sandbox, 250)
    adapter = leezy(sandbox)
    pages = read_all(adapter)

    # Keyed paging (adapters/leezy.py ChangeRead): offset 0, `since` re-anchored on the newest
    # updated_at read, floored to its second, so that second comes back and the record already
    # handed on is dropped: 100, then 99 and 51 new ones.
    assert [len(p.records) for p in pages] == [100, 99, 51]
    normalised = {adapter.normalise(r).external_id for p in pages for r in p.records}
    assert sorted(ids(pages)) == sorted(normalised) == sorted(booked)  # each exactly once
    assert asked(sandbox) == [(0, None), (0, at(98)), (0, at(197))]
    assert [p.cursor["position"] for p in pages[:-1]] == [at(99), at(198)]
    assert all(p.cursor["since"] is None for p in pages[:-1])  # mid-read pages keep the old watermark
    assert pages[-1].cursor == {"since": at(249), "offset": 0}


def test_leezy_ties_at_the_page_boundary_are_re_read_never_skipped(sandbox):
    tie = T0 + timedelta(minutes=10)
    before = seed(sandbox, 80)
    tied = seed(sandbox, 50, first=80, updated_at=tie)  # list positions 80..129 straddle offset 100
    adapter = leezy(sandbox)

    first = read_all(adapter)
    assert sorted(ids(first)) == sorted(before + tied)
    assert first[-1].cursor["since"] == wire(tie)

    again = read_all(adapter, first[-1].cursor)  # since = tie - overlap: every tie comes back
    assert sorted(ids(again)) == sorted(tied)
    assert again[-1].cursor["since"] == wire(tie)

    late = seed(sandbox, 1, first=200, updated_at=tie)  # stamped exactly at the old watermark
    third = read_all(adapter, again[-1].cursor)
    assert set(late) < set(ids(third))
    assert set(ids(third)) == set(tied + late)


def test_leezy_resuming_mid_read_keeps_the_old_watermark(sandbox):
    booked, adapter = seed(sandbox, 150), leezy(sandbox)
    first_page = next(adapter.read(None, ReadContext(now=NOW)))
    assert first_page.cursor["since"] is None and first_page.cursor["position"] == at(99)
    rest = read_all(adapter, first_page.cursor)
    assert sorted(ids([first_page]) + ids(rest)) == sorted(booked)  # each exactly once across the resume
    # The saved position is proof the resumed read can keep: a page's records and cursor are stored
    # in one transaction (worker/ingest.py), and a keyed read leaves nothing unread below it.
    assert asked(sandbox)[1:] == [(0, at(98))]  # re-anchored on the saved position, not a full read
    assert rest[-1].cursor == {"since": at(149), "offset": 0}


def test_leezy_resuming_mid_read_by_offset_keeps_the_proven_watermark(sandbox):
    # 250 records in one second: more than a page, so the read goes on by offset under a fixed
    # `since`. Across a resume, the ids seen before are not in the cursor, so a move in the gap
    # (which shifts an unread record below the offset) cannot be noticed: since must stay at what
    # the keyed part proved, and the next read takes the shifted record.
    tie = T0 + timedelta(minutes=10)
    booked, adapter = seed(sandbox, 250, updated_at=tie), leezy(sandbox)
    reading = adapter.read(None, ReadContext(now=NOW))
    before = [next(reading) for _ in range(3)]
    reading.close()
    assert before[-1].cursor["mode"] == "offset" and before[-1].cursor["offset"] == 200
    listed = sorted(booked)  # the simulator orders ties by id
    sandbox.leezy.update(listed[0], title="Moved", updated_at=tie + timedelta(minutes=1))
    rest = read_all(adapter, before[-1].cursor)
    shifted = listed[200]  # now at list position 199, below the resumed offset
    assert shifted not in ids(before) + ids(rest)
    assert rest[-1].cursor == {"since": wire(tie), "offset": 0}  # not past the unread record
    assert shifted in ids(read_all(adapter, rest[-1].cursor))


@pytest.mark.parametrize("retry_after", [7, None])
def test_leezy_429_mid_read_waits_and_completes(sandbox, retry_after):
    booked = seed(sandbox, 250)
    sandbox.leezy.after_page(0, lambda: sandbox.leezy.add_fault(Fault(kind="429", retry_after=retry_after)))
    sleeps = Sleeps()
    pages = read_all(leezy(sandbox, sleeps))

    assert sorted(ids(pages)) == sorted(booked)  # each exactly once
    assert asked(sandbox) == [(0, None), (0, at(98)), (0, at(98)), (0, at(197))]  # the 429 asked again
    if retry_after is None:
        assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5  # first backoff step, with jitter
    else:
        assert sleeps == [7.0]


def test_leezy_5xx_then_success(sandbox):
    booked = seed(sandbox, 150)
    sandbox.leezy.after_page(0, lambda: sandbox.leezy.add_fault(Fault(kind="500", times=2)))
    sleeps = Sleeps()
    pages = read_all(leezy(sandbox, sleeps))
    assert sorted(ids(pages)) == sorted(booked)  # each exactly once
    assert asked(sandbox) == [(0, None), (0, at(98)), (0, at(98)), (0, at(98))]  # 2 x 500, then success
    assert pages[-1].cursor == {"since": at(149), "offset": 0}
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_leezy_delay_beyond_the_timeout_is_retried(sandbox):
    booked = seed(sandbox, 3)
    sandbox.leezy.add_fault(Fault(kind="delay", seconds=1.2))
    sleeps = Sleeps()
    pages = read_all(leezy(sandbox, sleeps, timeout=0.5))
    assert sorted(ids(pages)) == sorted(booked)
    assert len(sleeps) == 1  # one backoff after the timed-out attempt


def test_leezy_record_updated_while_paging_is_not_lost(sandbox):
    booked = seed(sandbox, 250)
    old = {"since": wire(T0 - timedelta(minutes=1)), "offset": 0, "high": None, "resumed": False}
    moved_at = T0 + timedelta(minutes=30)
    # After page one is computed, its first record moves to the end: the rest shift left by one,
    # which made offset 100 skip a record. The keyed read asks by value, so nothing can be skipped.
    sandbox.leezy.after_page(0, lambda: sandbox.leezy.update(booked[0], title="Moved", updated_at=moved_at))
    adapter = leezy(sandbox)

    pages = read_all(adapter, old)
    assert set(ids(pages)) == set(booked)  # nothing lost to the shift
    assert sorted(ids(pages)) == sorted(booked + [booked[0]])  # the moved one twice, all else once
    titles = [
        adapter.normalise(r).meeting.title for p in pages for r in p.records if r.external_id == booked[0]
    ]
    assert titles == ["Demo 0", "Moved"]  # its new version is read later in the same read
    assert [offset for offset, _ in asked(sandbox)] == [0, 0, 0]
    assert pages[-1].cursor == {"since": wire(moved_at), "offset": 0}  # advanced: everything was read


def test_leezy_malformed_record_fails_alone(sandbox):
    booked, adapter = seed(sandbox, 3), leezy(sandbox)
    sandbox.leezy.add_fault(Fault(kind="malformed"))
    records = [r for p in read_all(adapter) for r in p.records]

    good, bad = [], []
    for record in records:
        try:
            good.append(adapter.normalise(record).external_id)
        except NormaliseError as exc:
            bad.append((record.external_id, str(exc)))
    assert sorted(good) == sorted(booked)
    assert len(bad) == 1 and bad[0][0].startswith("meeting_malformed_")
    assert "start_time" in bad[0][1] and "not-a-date" in bad[0][1]


def test_leezy_wrong_token_is_an_auth_error_with_leezys_description(sandbox):
    sleeps = Sleeps()
    with pytest.raises(ProviderAuthError) as caught:
        read_all(leezy(sandbox, sleeps, token="lzy_at_wrong"))
    assert caught.value.status == 401
    assert "Missing or invalid access token" in caught.value.message
    assert sleeps == [] and len(offsets_asked(sandbox)) == 1  # not retried


def test_leezy_token_without_the_scope_is_forbidden(sandbox):
    sandbox.leezy.add_token("lzy_at_hooks_only", ["webhooks:manage"])
    with pytest.raises(ProviderAuthError) as caught:
        read_all(leezy(sandbox, token="lzy_at_hooks_only"))
    assert caught.value.status == 403
    assert "lacks the meetings:read scope" in caught.value.message


# -- LeanData -------------------------------------------------------------------------------------


def book_ld(sandbox: RunningSandbox, email: str, hours: int = 0) -> str:
    start = START + timedelta(hours=hours)
    return sandbox.leandata.book(f"Intro {email}", start, start + timedelta(minutes=30), email)


def test_leandata_reads_each_watched_email_and_sweeps_complete_reads(sandbox):
    a = [book_ld(sandbox, "a@example.com"), book_ld(sandbox, "a@example.com", 1)]
    b = [book_ld(sandbox, "b@example.com")]
    book_ld(sandbox, "c@example.com")  # not watched
    adapter = leandata(sandbox, watch_emails=["a@example.com"])
    pages = read_all(adapter, watch_emails=frozenset({"B@Example.com"}))

    # The cursor is each email's last read (epoch seconds), saved with each email's page.
    read_at = int(NOW.timestamp())
    assert [p.cursor for p in pages] == [
        {"read": {"a@example.com": read_at}},
        {"read": {"a@example.com": read_at, "b@example.com": read_at}},
    ]
    assert [p.sweep.scope for p in pages] == ["a@example.com", "b@example.com"]
    assert [p.sweep.seen for p in pages] == [frozenset(a), frozenset(b)]
    assert {r.scope for r in pages[0].records} == {"a@example.com"}
    assert {adapter.normalise(r).meeting.attendee.email for r in pages[1].records} == {"b@example.com"}
    assert pages[0].sweep.window_start == NOW - timedelta(days=7) + timedelta(milliseconds=1)


def test_leandata_removed_meeting_is_missing_from_the_next_sweep(sandbox):
    kept, gone = book_ld(sandbox, "a@example.com"), book_ld(sandbox, "a@example.com", 1)
    adapter = leandata(sandbox, watch_emails=["a@example.com"])
    assert read_all(adapter)[0].sweep.seen == {kept, gone}
    sandbox.leandata.remove(gone)
    assert read_all(adapter)[0].sweep.seen == {kept}


def test_leandata_failed_email_gets_no_sweep(sandbox):
    book_ld(sandbox, "a@example.com")
    book_ld(sandbox, "b@example.com")
    # a's listing succeeds; then every try for b (1 + 4 retries) answers 500.
    sandbox.leandata.after_listing(lambda: sandbox.leandata.add_fault(Fault(kind="500", times=5)))
    adapter = leandata(sandbox, watch_emails=["a@example.com", "b@example.com"])
    pages: list[Page] = []
    with pytest.raises(ProviderUnavailable) as caught:
        pages.extend(adapter.read(None, ReadContext(now=NOW)))
    assert caught.value.status == 500 and "Internal server error" in caught.value.message
    assert [p.sweep.scope for p in pages] == ["a@example.com"]  # nothing at all for b
    assert pages[0].cursor == {"read": {"a@example.com": int(NOW.timestamp())}}  # b: never read, so due first


def test_leandata_wrong_api_key_is_an_auth_error_with_the_gateway_message(sandbox):
    with pytest.raises(ProviderAuthError) as caught:
        read_all(leandata(sandbox, api_key="ld_wrong", watch_emails=["a@example.com"]))
    assert caught.value.status == 401 and caught.value.message == "Unauthorized"


def test_leandata_flat_shape_normalises_to_the_same_meeting(sandbox):
    meeting_id, adapter = book_ld(sandbox, "a@example.com"), leandata(sandbox, watch_emails=["a@example.com"])
    nested = read_all(adapter)[0].records[0]
    sandbox.leandata.flat_shape = True
    flat = read_all(adapter)[0].records[0]
    assert "calendarEvent" in nested.payload and "calendarEvent" not in flat.payload
    assert adapter.normalise(flat) == adapter.normalise(nested)
    assert adapter.normalise(flat).external_id == meeting_id


# -- Leezy webhooks -------------------------------------------------------------------------------


def delivered(sandbox: RunningSandbox) -> tuple[dict[str, str], bytes]:
    assert sandbox.leezy.flush_deliveries(5.0)
    attempt = sandbox.leezy.deliveries()[-1]
    return attempt.headers, attempt.body.encode()


def test_leezy_signed_webhook_verifies_and_staging_needs_the_legacy_flag(sandbox):
    # Any reachable URL will do: the simulator records what it sent whatever the answer.
    sandbox.leezy.subscribe(f"{sandbox.leandata_url}/nowhere", ["meeting.scheduled"], secret=SECRET)
    meeting_id = seed(sandbox, 1)[0]
    headers, body = delivered(sandbox)
    delivery = leezy(sandbox, webhook_secret=SECRET).parse_webhook(headers, body, NOW)
    assert delivery.event_type == "meeting.scheduled"
    assert delivery.delivery_id == headers["X-Leezy-Delivery"]
    assert [r.external_id for r in delivery.records] == [meeting_id]
    assert leezy(sandbox).normalise(delivery.records[0]).meeting.attendee.email == "p0@example.com"

    sandbox.leezy.signature_variant = SIGNATURE_STAGING
    seed(sandbox, 1, first=1)
    headers, body = delivered(sandbox)
    with pytest.raises(WebhookUnauthorized, match="does not match"):
        leezy(sandbox, webhook_secret=SECRET).parse_webhook(headers, body, NOW)
    legacy = leezy(sandbox, webhook_secret=SECRET, accept_legacy_signature=True)
    assert legacy.parse_webhook(headers, body, NOW).records
    with pytest.raises(WebhookUnauthorized, match="5 minutes"):  # the window still holds
        legacy.parse_webhook(headers, body, NOW + timedelta(minutes=6))
