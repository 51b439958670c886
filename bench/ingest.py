"""Ingest throughput: Leezy normalise + store.apply_record per page, versus a raw bulk upsert.

Paths, each over the same N Leezy records, one transaction per page of 100 (as the poller's
`ingest.apply_page` does, cursor saved per page):
  fresh       first sight of every meeting: meeting + link + booked + hasStarted/hasEnded timers
  no-op       the same records again: the content-hash dedupe path, nothing written but last_seen
  reschedule  every meeting moved by an hour: rescheduled event, old timers cancelled, new ones set
  raw insert  the same meeting rows, SQLAlchemy Core INSERT .. ON CONFLICT DO UPDATE, executemany
  raw upsert  the same statement again over rows that now exist (the conflict/update branch)
Also `normalise only` (Leezy normalise with no database) to show where the time goes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common import CONNECTION, Timer, backends_of, database, leezy_resource, parse_args
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import MeetingRow
from bookingsync.worker import store
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

PAGE = 100
GRACE = timedelta(seconds=300)


def records(n: int, now: datetime, shift: timedelta = timedelta(0)) -> list[RawRecord]:
    base = now.replace(microsecond=0) + timedelta(days=1)
    out = []
    for i in range(n):
        start = base + timedelta(minutes=15 * (i % 2000), days=i // 2000) + shift
        payload = leezy_resource(i, start, updated_at=now - timedelta(minutes=1) + shift)
        out.append(RawRecord(payload=payload, external_id=payload["id"]))
    return out


def apply_pass(engine: Engine, adapter: LeezyAdapter, raws: list[RawRecord]) -> tuple[float, IngestResult]:
    result = IngestResult()
    with Timer() as t:
        for page_no in range(0, len(raws), PAGE):
            now = datetime.now(UTC)
            with transaction(engine) as session:
                # Exactly what the poller's ingest.apply_page does with one page.
                ingest_records(session, adapter, CONNECTION, raws[page_no:page_no + PAGE], source="poll", now=now,
                               grace=GRACE, result=result, open_quarantine=False)
                store.save_cursor(session, CONNECTION, {"since": None, "offset": page_no + PAGE}, now)
    return t.seconds, result


def raw_rows(adapter: LeezyAdapter, raws: list[RawRecord], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for raw in raws:
        m = adapter.normalise(raw).meeting
        rows.append({"id": f"raw_{raw.external_id}", "status": m.status.value, "title": m.title, "start": m.start,
                     "end": m.end, "timezone": m.timezone, "attendee_email": m.attendee.email,
                     "attendee_name": m.attendee.name, "attendee_phone": m.attendee.phone, "hosts": list(m.hosts),
                     "conference_url": m.conference_url, "content_hash": m.content_hash(), "booked": True,
                     "deleted": False, "generation": 0, "version": 1, "next_sequence": 1,
                     "created_at": now, "updated_at": now})
    return rows


def raw_pass(engine: Engine, rows: list[dict[str, Any]]) -> float:
    table = MeetingRow.__table__
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    keep = {"id", "created_at"}
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.id],
                                      set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keep})
    with Timer() as t:
        for page_no in range(0, len(rows), PAGE):
            with engine.begin() as conn:
                conn.execute(stmt, rows[page_no:page_no + PAGE])
    return t.seconds


def run(backend: str, n: int) -> dict[str, float]:
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="bench")
    now = datetime.now(UTC)
    first, moved = records(n, now), records(n, now, shift=timedelta(hours=1))
    with Timer() as t:
        for raw in first:
            adapter.normalise(raw)
    rates = {"normalise only": n / t.seconds}
    with database(backend) as engine:
        for name, raws, expect in (("fresh", first, 3), ("no-op", first, 0), ("reschedule", moved, 3)):
            seconds, result = apply_pass(engine, adapter, raws)
            assert result.applied == n and len(result.events) == expect * n, (name, result.applied, len(result.events))
            rates[f"apply {name}"] = n / seconds
            print(f"  {backend:8s} apply {name:10s} {n:6d} meetings {seconds:7.2f} s {n / seconds:9.0f} meetings/s"
                  f"  ({len(result.events)} events, {result.changed} changed)")
        rows = raw_rows(adapter, first, now)
        for name in ("insert", "upsert"):
            seconds = raw_pass(engine, rows)
            rates[f"raw {name}"] = n / seconds
            print(f"  {backend:8s} raw {name:12s} {n:6d} meetings {seconds:7.2f} s {n / seconds:9.0f} meetings/s")
    adapter.close()
    return rates


def main() -> None:
    args = parse_args(__doc__, n=2000)
    print(f"ingest: {args.n} Leezy meetings, pages of {PAGE}, one transaction per page")
    results = {backend: run(backend, args.n) for backend in backends_of(args)}
    print()
    print(f"{'path':22s}" + "".join(f"{b:>14s}" for b in results) + "   (meetings/s)")
    for path in next(iter(results.values())):
        print(f"{path:22s}" + "".join(f"{r[path]:14.0f}" for r in results.values()))
    print()
    print("ratio apply/raw (raw insert for fresh, raw upsert for no-op and reschedule):")
    for backend, r in results.items():
        parts = [f"fresh {r['apply fresh'] / r['raw insert']:.3f}",
                 f"no-op {r['apply no-op'] / r['raw upsert']:.3f}",
                 f"reschedule {r['apply reschedule'] / r['raw upsert']:.3f}"]
        print(f"  {backend:8s} " + "   ".join(parts))


if __name__ == "__main__":
    main()
