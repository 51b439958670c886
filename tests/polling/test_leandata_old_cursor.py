"""A LeanData cursor stored by a version before the watch schedule ({"after": email}) is read as
where that version's round stood, not as "nothing read yet" (adapters/leandata_watch.last_reads).

Over real HTTP to the LeanData simulator: what the simulator was asked shows which emails a poll
read, and the cursor each page carries shows the migration to the new form.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bookingsync.adapters.base import ReadContext, WatchHint
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leandata_watch import last_reads, plan
from bookingsync.sandbox.server import start_sandbox

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EMAILS = [f"{letter}@example.com" for letter in "abcdef"]
RATE, INTERVAL = 1.5, 2.0  # two emails per poll (1.5/s for three quarters of the interval)


class Sleeps(list):  # simulated time for the adapter's own pacing: recorded, never waited
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sandbox():
    running = start_sandbox(now=lambda: NOW)
    yield running
    running.stop()


def asked(sandbox) -> list[str]:
    return [dict(e.query)["prospectEmail"] for e in sandbox.leandata.requests.entries()]


def poll(sandbox, cursor, hints=None):
    adapter = LeanDataAdapter(
        connection_id="ld",
        base_url=sandbox.leandata_url,
        api_key=sandbox.leandata_api_key,
        requests_per_second=RATE,
        watch_emails=EMAILS,
        sleep=Sleeps(),
    )
    try:
        context = ReadContext(now=NOW, watch_hints=hints or {}, interval_seconds=INTERVAL)
        return list(adapter.read(cursor, context))
    finally:
        adapter.close()


def test_an_old_cursor_goes_on_where_its_round_stopped_and_is_rewritten_in_the_new_form(sandbox):
    start = NOW + timedelta(days=1)
    sandbox.leandata.book("Intro", start, start + timedelta(minutes=30), "e@example.com")
    pages = poll(sandbox, {"after": "c@example.com"})
    # The old round had done a, b, c: d and e are the stalest and come first.
    assert asked(sandbox) == ["d@example.com", "e@example.com"]
    assert [r.scope for p in pages for r in p.records] == ["e@example.com"]
    cursor = pages[-1].cursor
    assert set(cursor) == {"read"} and cursor["read"]["e@example.com"] == int(NOW.timestamp())
    # Not a list of new emails: none is urgent, so the worst staleness is the list at two a poll
    # (6 s), not "every email due now", and the rest keep the old round's order.
    assert pages[-1].watch is not None and pages[-1].watch.staleness_seconds == 6.0
    sandbox.leandata.requests.clear()
    poll(sandbox, cursor)
    assert asked(sandbox) == ["f@example.com", "a@example.com"]


def test_an_old_cursor_leaves_a_meeting_about_to_start_first(sandbox):
    soon = {"b@example.com": WatchHint(next_start=NOW + timedelta(minutes=5))}
    poll(sandbox, {"after": "d@example.com"}, soon)
    # b first (its meeting starts soon), then the stalest of the old round, e.
    assert asked(sandbox) == ["b@example.com", "e@example.com"]


def test_last_reads_of_each_form():
    assert last_reads({"read": {"a@x.co": 5, "gone@x.co": 6, "b@x.co": "bad"}}, ["a@x.co", "b@x.co"]) == {
        "a@x.co": 5.0
    }
    assert last_reads(None, ["a@x.co"]) == {} and last_reads({}, ["a@x.co"]) == {}
    old = last_reads({"after": "b@x.co"}, ["c@x.co", "a@x.co", "b@x.co"])
    assert sorted(old, key=old.__getitem__) == ["c@x.co", "a@x.co", "b@x.co"]
    # Every stand-in is overdue and none counts as new (a new email would be read before all).
    result = plan(["a@x.co", "b@x.co", "c@x.co", "n@x.co"], old, {}, NOW, interval=2.0, rate=RATE)
    assert result.due == ["n@x.co", "c@x.co"]
