"""The Leezy watermark under churn: never a skipped record, and it keeps moving.

A fake Leezy lists records in updated_at order with a strict `since` and offset paging, and
changes them between the requests of a read (moves, creations, several per request, ties of
the same second). Property: after any number of churned polls, one quiet poll leaves the store
equal to the server, so no version was lost for good. The margin is zero here, so the cap on
`now - margin` hides nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.adapters.base import ReadContext
from bookingsync.adapters.leezy import CLOCK_SKEW_ALLOWANCE, LeezyAdapter

BASE = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class ChurningLeezy:
    """Records id -> second; `plan` lists, per request, the changes made just before answering."""

    def __init__(self, count: int) -> None:
        self.keys = {f"r{i:03d}": i // 3 for i in range(count)}  # ties: three records per second
        self.clock = max(self.keys.values(), default=0) + 1
        self.plan: list[list[tuple[str, int]]] = []
        self.requests = 0
        self.created = 0

    def change(self, kind: str, pick: int) -> None:
        if kind == "tick":
            self.clock += 1
        elif kind == "create" or not self.keys:
            self.created += 1
            self.keys[f"n{self.created:04d}"] = self.clock
        else:
            victim = sorted(self.keys)[pick % len(self.keys)]
            self.keys[victim] = self.clock

    def now(self) -> datetime:
        return BASE + timedelta(seconds=self.clock)

    def resource(self, rid: str) -> dict:
        at = iso(BASE + timedelta(seconds=self.keys[rid]))
        return {
            "id": rid,
            "type": "meeting",
            "attributes": {
                "title": rid,
                "status": "scheduled",
                "start_time": "2026-04-01T10:00:00Z",
                "end_time": "2026-04-01T10:30:00Z",
                "updated_at": at,
                "created_at": at,
            },
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        for kind, pick in self.plan.pop(0) if self.plan else []:
            self.change(kind, pick)
        self.requests += 1
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        rows = sorted(self.keys, key=lambda rid: (self.keys[rid], rid))
        if "since" in query:
            since = datetime.fromisoformat(query["since"].replace("Z", "+00:00"))
            rows = [rid for rid in rows if BASE + timedelta(seconds=self.keys[rid]) > since]
        limit, offset = int(query["limit"]), int(query["offset"])
        chunk = rows[offset : offset + limit]
        meta = {
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(chunk) < len(rows),
        }
        return httpx.Response(200, json={"data": [self.resource(rid) for rid in chunk], "meta": meta})


def make(server: ChurningLeezy, page_size: int, margin: timedelta) -> LeezyAdapter:
    adapter = LeezyAdapter(
        connection_id="c",
        base_url="https://app.leezy.ai",
        token="t",
        page_size=page_size,
        transport=httpx.MockTransport(server),
        sleep=lambda s: None,
    )
    adapter.margin = margin
    return adapter


def poll(
    adapter: LeezyAdapter, server: ChurningLeezy, cursor: dict | None, store: dict[str, str]
) -> dict | None:
    for page in adapter.read(cursor, ReadContext(now=server.now())):
        for record in page.records:
            at = record.payload["attributes"]["updated_at"]
            store[record.external_id] = max(store.get(record.external_id, at), at)
        cursor = page.cursor
    return cursor


change = st.tuples(st.sampled_from(["move", "move", "create", "tick"]), st.integers(0, 10_000))


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(0, 14),
    page_size=st.integers(1, 4),
    polls=st.lists(st.lists(st.lists(change, max_size=3), max_size=8), min_size=1, max_size=4),
)
def test_no_record_is_ever_skipped_whatever_moves_during_the_reads(count, page_size, polls):
    server = ChurningLeezy(count)
    adapter = make(server, page_size, timedelta(0))
    store: dict[str, str] = {}
    cursor = None
    for plan in polls:
        server.plan = [list(step) for step in plan]
        cursor = poll(adapter, server, cursor, store)
        server.plan = []
        server.clock += 1
    poll(adapter, server, cursor, store)  # a quiet poll
    expected = {rid: iso(BASE + timedelta(seconds=key)) for rid, key in server.keys.items()}
    assert store == expected


def test_under_steady_churn_requests_per_poll_stay_flat_and_new_meetings_arrive_within_three_polls():
    # 20 changes a second for 6 simulated minutes; every request takes a second of the clock;
    # polls every 10 s. The default 30 s margin applies.
    server = ChurningLeezy(2000)
    adapter = make(server, 100, CLOCK_SKEW_ALLOWANCE)
    store: dict[str, str] = {}
    cursor = poll(adapter, server, None, store)  # the first, full read
    per_poll, arrivals = [], []
    pick = 0
    for _ in range(36):
        for _ in range(10 * 20):  # the interval's changes, made before the poll
            pick += 7919
            server.change("move" if pick % 5 else "create", pick)
            if pick % 20 == 0:
                server.clock += 1
        newest = f"n{server.created:04d}"
        server.plan = [[("move", pick + i) for i in range(20)] + [("tick", 0)] for _ in range(50)]
        before = server.requests
        cursor = poll(adapter, server, cursor, store)
        per_poll.append(server.requests - before)
        arrivals.append(newest in store)
    assert all(arrivals)  # each poll saw the meeting created just before it
    assert max(per_poll[-12:]) <= max(per_poll[:12]) + 1, per_poll
    assert max(per_poll) <= 12, per_poll
