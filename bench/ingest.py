"""Ingest throughput: a page of Leezy records at a time, against two floors measured in the same run.

Cases, each over the same N Leezy records, one transaction per page of 100 with the cursor saved
per page (as the poller's `ingest.apply_page` does):
  fresh       first sight of every meeting: meeting + link + booked + hasStarted/hasEnded timers
  no-op       the same records again: nothing changes but each link's last_seen_at
  reschedule  every meeting moved by an hour: rescheduled event, old timers cancelled, new ones set

Floors, both SQLAlchemy Core executemany in the same page-sized transactions, rows prepared
before the clock starts (no normalising, no deciding):
  meeting-only  INSERT .. ON CONFLICT DO UPDATE of the meeting rows alone (new rows for fresh,
                the conflict branch for no-op and reschedule)
  same-rows     exactly the rows the ingest writes for that case: fresh = meetings + links + 3
                events per meeting; no-op = each link's last_seen_at; reschedule = meetings and
                links updated, the meetings' pending timers cancelled, 3 new events per meeting;
                plus the cursor row per page
Also `normalise only` (Leezy normalise, no database) to show where the time goes.

`cpu ratio` is the same-rows pass's CPU time in this process over the ingest's: steadier than the
wall-clock ratio when other work shares the cores (on PostgreSQL it leaves out the server's CPU).

The machine's speed drifts by a fifth from one minute to the next, so one pass of each decided
whether a case read above or below half its floor. The run is ROUNDS rounds (`--rounds`), each on a
fresh database, and within a round each case's ingest is followed at once by its same-rows floor.
A round before them, not counted, warms the process up. The table gives each figure's median over
the rounds, each case's ratio as the median of the rounds' ratios (each taken within its round),
and their range.

The no-op case changes nothing, so it is run REPEAT times, ingest and same-rows alike, and the
fastest pass of each is kept: a pass is a fifth of a second, which one burst of another process
on a shared machine otherwise decides.

Every timed pass, ingest and floors alike, starts from a collected heap (`gc.collect()` before
the clock): the benchmark holds every prepared row and record, so a full collection is a tenth
of a second here, and which pass it fell in depended on what the benchmark itself had built
before (it fell in the ingest's reschedule pass). Collections a pass's own allocations cause
stay in its time.
"""

from __future__ import annotations

import gc
from statistics import median
from datetime import UTC, datetime, timedelta
from typing import Any

from common import CONNECTION, Timer, analyze, backends_of, database, leezy_resource, parse_args
from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import CursorRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker import store
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

PAGE = 100
GRACE = timedelta(seconds=300)
CASES = ("fresh", "no-op", "reschedule")
REPEAT = 3  # passes of the no-op case (see above)


def records(n: int, now: datetime, shift: timedelta = timedelta(0)) -> list[RawRecord]:
    base = now.replace(microsecond=0) + timedelta(days=1)
    out = []
    for i in range(n):
        start = base + timedelta(minutes=15 * (i % 2000), days=i // 2000) + shift
        payload = leezy_resource(i, start, updated_at=now - timedelta(minutes=1) + shift)
        out.append(RawRecord(payload=payload, external_id=payload["id"]))
    return out


def apply_pass(engine: Engine, adapter: LeezyAdapter, raws: list[RawRecord]) -> tuple[Timer, IngestResult]:
    result = IngestResult()
    gc.collect()  # see the module's docstring
    with Timer() as t:
        for page_no in range(0, len(raws), PAGE):
            now = datetime.now(UTC)
            with transaction(engine) as session:
                # Exactly what the poller's ingest.apply_page does with one page.
                ingest_records(
                    session,
                    adapter,
                    CONNECTION,
                    raws[page_no : page_no + PAGE],
                    source="poll",
                    now=now,
                    grace=GRACE,
                    result=result,
                    open_quarantine=False,
                )
                store.save_cursor(session, CONNECTION, {"since": None, "offset": page_no + PAGE}, now)
    return t, result


def _upsert(engine: Engine, table: Any, keys: list[str], keep: set[str]) -> Any:
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keep},
    )


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class Rows:
    """The rows an ingest writes for N meetings, under ids of their own (`raw_…`)."""

    def __init__(
        self, adapter: LeezyAdapter, first: list[RawRecord], moved: list[RawRecord], now: datetime
    ) -> None:
        self.now = now
        self.meetings, self.links, self.fresh_events = [], [], []
        self.moved_meetings, self.moved_links, self.moved_events = [], [], []
        for raw, raw2 in zip(first, moved, strict=True):
            mid = f"raw_{raw.external_id}"
            rec, rec2 = adapter.normalise(raw), adapter.normalise(raw2)
            meeting = {
                **self._meeting(mid, rec.meeting, now, version=1, next_sequence=2),
                "source_updated_at": rec.source_updated_at,
            }
            self.meetings.append(meeting)
            self.moved_meetings.append(
                {
                    **self._meeting(mid, rec2.meeting, now, version=2, next_sequence=3),
                    "source_updated_at": rec2.source_updated_at,
                    "b_id": mid,
                }
            )
            link = {
                "meeting_id": mid,
                "connection": CONNECTION,
                "provider": "leezy",
                "external_id": mid,
                "scope": None,
                "content_hash": meeting["content_hash"],
                "raw": raw.payload,
                "source_updated_at": rec.source_updated_at,
                "start": rec.meeting.start,
                "end": rec.meeting.end,
                "missing": False,
                "mirrored": False,
                "first_seen_at": now,
                "last_seen_at": now,
                "source_delivered_at": None,
                "stale_count": 0,
                "rule": "origin",
                "observed": rec.meeting.model_dump(mode="json"),
            }
            self.links.append(link)
            self.moved_links.append(
                {
                    "b_id": mid,
                    "content_hash": rec2.meeting.content_hash(),
                    "raw": raw2.payload,
                    "source_updated_at": rec2.source_updated_at,
                    "start": rec2.meeting.start,
                    "end": rec2.meeting.end,
                    "last_seen_at": now,
                    "scope": None,
                    "missing": False,
                    "source_delivered_at": None,
                    "stale_count": 0,
                    "observed": rec2.meeting.model_dump(mode="json"),
                }
            )
            snapshot = self._snapshot(meeting)
            self.fresh_events += self._events(mid, "meeting.booked", "once", rec.meeting, now, snapshot, 1)
            self.moved_events += self._events(
                mid,
                "meeting.rescheduled",
                "v2",
                rec2.meeting,
                now,
                self._snapshot(self.moved_meetings[-1]),
                2,
                previous={"start": _iso(rec.meeting.start), "end": _iso(rec.meeting.end)},
            )

    @staticmethod
    def _meeting(mid: str, m: Any, now: datetime, *, version: int, next_sequence: int) -> dict[str, Any]:
        return {
            "id": mid,
            "status": m.status.value,
            "title": m.title,
            "start": m.start,
            "end": m.end,
            "timezone": m.timezone,
            "attendee_email": m.attendee.email,
            "attendee_name": m.attendee.name,
            "attendee_phone": m.attendee.phone,
            "hosts": list(m.hosts),
            "conference_url": m.conference_url,
            "content_hash": m.content_hash(),
            "booked": True,
            "deleted": False,
            "generation": 0,
            "version": version,
            "next_sequence": next_sequence,
            "created_at": now,
            "updated_at": now,
        }

    @staticmethod
    def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "status": row["status"],
            "title": row["title"],
            "start": _iso(row["start"]),
            "end": _iso(row["end"]),
            "timezone": row["timezone"],
            "attendee": {"email": row["attendee_email"], "name": row["attendee_name"], "phone": None},
            "hosts": row["hosts"],
            "conference_url": None,
            "links": [{"connection": CONNECTION, "provider": "leezy", "external_id": row["id"]}],
        }

    @staticmethod
    def _events(
        mid: str,
        kind: str,
        occurrence: str,
        m: Any,
        now: datetime,
        snapshot: dict[str, Any],
        sequence: int,
        **details: Any,
    ) -> list[dict[str, Any]]:
        first = {
            "event_id": store.new_id("evt"),
            "meeting_id": mid,
            "type": kind,
            "dedupe_key": f"{mid}:{kind}:{occurrence}",
            "generation": 0,
            "set_for": None,
            "occurred_at": now,
            "due_at": now,
            "status": "pending",
            "attempts": 0,
            "sequence": sequence,
            "created_at": now,
            "payload": {"meeting": snapshot, **details},
        }
        timers = [
            {
                "event_id": store.new_id("evt"),
                "meeting_id": mid,
                "type": timer,
                "dedupe_key": f"{mid}:{timer}:g0:{at.isoformat()}",
                "generation": 0,
                "set_for": at,
                "occurred_at": at,
                "due_at": at,
                "status": "pending",
                "attempts": 0,
                "sequence": None,
                "created_at": now,
                "payload": None,
            }
            for timer, at in (("meeting.hasStarted", m.start), ("meeting.hasEnded", m.end))
        ]
        return [first, *timers]


def same_rows_pass(engine: Engine, rows: Rows, case: str, now: datetime) -> Timer:
    """The floor: `rows` written for `case` by Core executemany, a transaction per page.

    The no-op case's touch writes a new time on every page, as the ingest's does. Writing `now`,
    the time the fresh pass had already written, measured nothing: SQLite compares an updated
    row's bytes with the stored ones and leaves a page it would not change clean, so the floor's
    commits wrote no page to the WAL while the ingest's wrote every touched row's."""
    cursor = _upsert(engine, CursorRow.__table__, ["connection"], {"connection"})
    links, meetings, events = LinkRow.__table__, MeetingRow.__table__, EventRow.__table__
    touch = (
        update(links).where(links.c.id == bindparam("b_id")).values(last_seen_at=bindparam("last_seen_at"))
    )
    moved_meeting = update(meetings).where(meetings.c.id == bindparam("b_id"))
    moved_link = update(links).where(links.c.id == bindparam("b_id"))
    moved_links: list[dict[str, Any]] = []
    if case != "fresh":  # the ids the fresh pass gave the links, read outside the clock
        with engine.connect() as conn:
            link_ids = dict(
                conn.execute(
                    select(links.c.external_id, links.c.id).where(links.c.external_id.like("raw_%"))
                ).all()
            )
        moved_links = [{**link, "b_id": link_ids[link["b_id"]]} for link in rows.moved_links]
    before = _seen(engine, func.max) if case == "no-op" else None
    gc.collect()
    with Timer() as t:
        for page_no in range(0, len(rows.meetings), PAGE):
            page = slice(page_no, page_no + PAGE)
            with engine.begin() as conn:
                if case == "fresh":
                    conn.execute(insert(meetings), rows.meetings[page])
                    conn.execute(insert(links), rows.links[page])
                    conn.execute(insert(events), rows.fresh_events[page_no * 3 : (page_no + PAGE) * 3])
                elif case == "no-op":
                    # A new time per page, as the ingest's touch writes (see the docstring).
                    seen = datetime.now(UTC)
                    conn.execute(
                        touch, [{"b_id": link["b_id"], "last_seen_at": seen} for link in moved_links[page]]
                    )
                else:
                    conn.execute(moved_meeting, rows.moved_meetings[page])
                    conn.execute(moved_link, moved_links[page])
                    ids = [m["id"] for m in rows.meetings[page]]
                    conn.execute(
                        update(events)
                        .where(
                            events.c.meeting_id.in_(ids),
                            events.c.type.in_(["meeting.hasStarted", "meeting.hasEnded"]),
                            events.c.status.in_(["pending", "leased"]),
                        )
                        .values(status="cancelled")
                    )
                    conn.execute(insert(events), rows.moved_events[page_no * 3 : (page_no + PAGE) * 3])
                conn.execute(
                    cursor, [{"connection": "raw", "value": {"offset": page_no + PAGE}, "updated_at": now}]
                )
    if before is not None:  # the floor wrote what the ingest writes: every link's time moved on
        oldest = _seen(engine, func.min)
        assert oldest > before, (oldest, before)
    return t


def _seen(engine: Engine, aggregate: Any) -> datetime:
    """`aggregate` (`func.max`, `func.min`) of the floor's links' `last_seen_at`."""
    links = LinkRow.__table__
    with engine.connect() as conn:
        value = conn.execute(
            select(aggregate(links.c.last_seen_at)).where(links.c.external_id.like("raw_%"))
        ).scalar_one()
    assert value is not None, "the floor has no links"
    return value


def meeting_only_pass(engine: Engine, rows: list[dict[str, Any]]) -> float:
    stmt = _upsert(engine, MeetingRow.__table__, ["id"], {"id", "created_at"})
    gc.collect()
    with Timer() as t:
        for page_no in range(0, len(rows), PAGE):
            with engine.begin() as conn:
                conn.execute(stmt, rows[page_no : page_no + PAGE])
    return t.seconds


def _ingest_case(engine: Engine, adapter: LeezyAdapter, case: str, raws: list[RawRecord], n: int) -> Timer:
    timer, result = apply_pass(engine, adapter, raws)
    for _ in range(REPEAT - 1 if case == "no-op" else 0):
        again = apply_pass(engine, adapter, raws)[0]
        timer = again if again.seconds < timer.seconds else timer
    expect = 0 if case == "no-op" else 3
    assert result.applied == n and len(result.events) == expect * n, (
        case,
        result.applied,
        len(result.events),
    )
    return timer


def one_round(
    backend: str, n: int, adapter: LeezyAdapter, first: list[RawRecord], moved: list[RawRecord], rows: Rows
) -> dict[str, dict[str, float]]:
    """Each case on a fresh database, the ingest then its same-rows floor right after it (so both
    meet the machine in the same minute), then the meeting-only floor."""
    only = [{**m, "id": f"only_{m['id']}"} for m in rows.meetings]
    out: dict[str, dict[str, float]] = {}
    with database(backend) as engine:
        for case, raws in (("fresh", first), ("no-op", first), ("reschedule", moved)):
            if case != "fresh":
                analyze(engine)  # the statistics a live database has (see analyze); not timed
            ingest = _ingest_case(engine, adapter, case, raws, n)
            floors = [
                same_rows_pass(engine, rows, case, rows.now) for _ in range(REPEAT if case == "no-op" else 1)
            ]
            floor = min(floors, key=lambda t: t.seconds)
            out[case] = {
                "ingest": n / ingest.seconds,
                "same-rows": n / floor.seconds,
                "cpu ratio": floor.cpu / ingest.cpu,
            }
        out["fresh"]["meeting-only"] = n / meeting_only_pass(engine, only)
        out["no-op"]["meeting-only"] = out["reschedule"]["meeting-only"] = n / meeting_only_pass(engine, only)
    return out


def run(backend: str, n: int, rounds: int) -> list[dict[str, dict[str, float]]]:
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="bench")
    now = datetime.now(UTC)
    first, moved = records(n, now), records(n, now, shift=timedelta(hours=1))
    with Timer() as t:
        for raw in first:
            adapter.normalise(raw)
    print(f"  {backend:8s} normalise only {n / t.seconds:9.0f} records/s")
    rows = Rows(adapter, first, moved, now)
    # Not counted: the first pass in a process compiles and caches its statements (a third slower
    # than the next on SQLite), which a running service does once.
    one_round(backend, n, adapter, first, moved, rows)
    results = []
    for number in range(1, rounds + 1):
        result = one_round(backend, n, adapter, first, moved, rows)
        for case, r in result.items():
            print(
                f"  {backend:8s} round {number} {case:10s} ingest {r['ingest']:9.0f}  same-rows {r['same-rows']:9.0f}"
                f"  ratio {r['ingest'] / r['same-rows']:.3f}  (meetings/s)"
            )
        results.append(result)
    adapter.close()
    return results


def main() -> None:
    args = parse_args(__doc__, n=2000, rounds=(3, "rounds, each on a fresh database (default: 3)"))
    print(f"ingest: {args.n} Leezy meetings, pages of {PAGE}, one transaction per page, {args.rounds} rounds")
    results = {backend: run(backend, args.n, args.rounds) for backend in backends_of(args)}
    print()
    print(
        f"{'backend':9s}{'case':12s}{'ingest':>10s}{'meeting-only':>14s}{'ratio':>8s}{'same-rows':>11s}"
        f"{'ratio':>8s}{'(min-max)':>14s}{'cpu ratio':>11s}"
    )
    for backend, rounds in results.items():
        for case in CASES:
            per = [r[case] for r in rounds]
            ratios = sorted(r["ingest"] / r["same-rows"] for r in per)
            print(
                f"{backend:9s}{case:12s}{median(r['ingest'] for r in per):10.0f}"
                f"{median(r['meeting-only'] for r in per):14.0f}"
                f"{median(r['ingest'] / r['meeting-only'] for r in per):8.3f}"
                f"{median(r['same-rows'] for r in per):11.0f}{median(ratios):8.3f}"
                f"{f'({ratios[0]:.3f}-{ratios[-1]:.3f})':>14s}{median(r['cpu ratio'] for r in per):11.3f}"
            )
    print(
        "(meetings/s and ratios: medians over the rounds, each ratio taken within its round; "
        "min-max: the rounds' same-rows ratios; cpu ratio: same-rows CPU / ingest CPU, this process)"
    )


if __name__ == "__main__":
    main()
