"""Identity matching cost: records of a second connection matched against 100,000 canonical meetings.

Over a database holding `--n` canonical meetings (default 100,000, each with its origin link),
pages of 100 records from another connection, one transaction per page, as ingest does:
  match only    `identity.match_unlinked` for each page (the rules' candidate queries and choice)
                 - `hits`: every record is the same meeting as one already stored (attendee + start)
                 - `misses`: same attendees, other starts (candidates fetched, none chosen)
  ingest hits    the full ingest of the `hits` pages (normalise, match, link as peers)
  ingest fresh   the full ingest of new meetings with the rules off (what ingest did before)
  plain insert   the floor: the same number of meeting + link rows, Core executemany per page
Prints seconds, records/s, microseconds per record, and the ratios of matching and of a matched
ingest to the plain insert and to the rule-less ingest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common import CHUNK, Timer, analyze, backends_of, database, meeting_row, parse_args, serial_hex
from sqlalchemy import Engine, insert

from bookingsync.adapters.base import RawRecord
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import LinkRow, MeetingRow
from bookingsync.worker import identity
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

PAGE = 100
GRACE = timedelta(seconds=300)


class Canonical:
    """Records that are canonical already (no provider parsing: what is measured is identity)."""

    provider = "leandata"

    def normalise(self, raw: RawRecord) -> SourceRecord:
        return SourceRecord.model_validate(raw.payload)


def slot(i: int, base: datetime) -> datetime:
    return base + timedelta(minutes=15 * (i % 5000), days=i // 5000)


def seed(engine: Engine, n: int, base: datetime, now: datetime) -> None:
    for chunk in range(0, n, CHUNK):
        meetings, links = [], []
        for i in range(chunk, min(n, chunk + CHUNK)):
            mid = f"mtg_{serial_hex()}"
            meetings.append(meeting_row(mid, slot(i, base), slot(i, base) + timedelta(minutes=30), now, i))
            links.append(
                {
                    "meeting_id": mid,
                    "connection": "leezy-main",
                    "provider": "leezy",
                    "external_id": f"lz_{i}",
                    "content_hash": "x",
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "mirrored": False,
                    "missing": False,
                    "rule": "origin",
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(MeetingRow), meetings)
            conn.execute(insert(LinkRow), links)
    analyze(engine)


def record(i: int, start: datetime, prefix: str) -> RawRecord:
    meeting = Meeting(
        status="scheduled",
        title=f"LeanData demo {i}",
        start=start,
        end=start + timedelta(minutes=30),
        attendee={"email": f"prospect.{i}@example.com"},
    )
    payload = SourceRecord(external_id=f"{prefix}{i}", meeting=meeting).model_dump(mode="json")
    return RawRecord(payload=payload, external_id=f"{prefix}{i}")


def pages(raws: list[RawRecord]) -> list[list[RawRecord]]:
    return [raws[k : k + PAGE] for k in range(0, len(raws), PAGE)]


def match_pass(engine: Engine, raws: list[RawRecord]) -> tuple[float, int]:
    found = 0
    with Timer() as t:
        for page in pages(raws):
            with transaction(engine) as session:
                records = [SourceRecord.model_validate(r.payload) for r in page]
                found += len(identity.match_unlinked(session, "leandata-main", records))
    return t.seconds, found


def ingest_pass(engine: Engine, connection: str, raws: list[RawRecord]) -> float:
    with Timer() as t:
        for page in pages(raws):
            with transaction(engine) as session:
                ingest_records(
                    session,
                    Canonical(),
                    connection,
                    page,
                    source="poll",
                    now=datetime.now(UTC),
                    grace=GRACE,
                    result=IngestResult(),
                    open_quarantine=False,
                )
    return t.seconds


def insert_pass(engine: Engine, raws: list[RawRecord], now: datetime) -> float:
    with Timer() as t:
        for page in pages(raws):
            meetings, links = [], []
            for raw in page:
                m, mid = SourceRecord.model_validate(raw.payload).meeting, f"mtg_{serial_hex()}"
                meetings.append(meeting_row(mid, m.start, m.end, now, 0))
                links.append(
                    {
                        "meeting_id": mid,
                        "connection": "plain",
                        "provider": "leandata",
                        "external_id": raw.external_id,
                        "content_hash": "x",
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "mirrored": False,
                        "missing": False,
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert(MeetingRow), meetings)
                conn.execute(insert(LinkRow), links)
    return t.seconds


def run(backend: str, n: int, sample: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    base = now + timedelta(days=1)
    with database(backend) as engine:
        with Timer() as t:
            seed(engine, n, base, now)
        print(f"  {backend}: seeded {n} canonical meetings in {t.seconds:.1f} s")
        step = max(1, n // sample)
        hits = [record(i, slot(i, base), "ld_") for i in range(0, n, step)][:sample]
        misses = [record(i, slot(i, base) + timedelta(minutes=5), "ldm_") for i in range(0, n, step)][:sample]
        identity._rules = identity.Rules()
        out: dict[str, Any] = {}
        out["match hits"], found = match_pass(engine, hits)
        assert found == len(hits), f"{found} of {len(hits)} matched"
        out["match misses"], found = match_pass(engine, misses)
        assert found == 0
        out["ingest hits"] = ingest_pass(engine, "leandata-main", hits)
        identity._rules = identity.Rules(attendee_start=False)
        fresh = [record(n + i, slot(i, base) + timedelta(minutes=7), "new_") for i in range(sample)]
        out["ingest fresh"] = ingest_pass(engine, "other-main", fresh)
        identity._rules = identity.Rules()
        out["plain insert"] = insert_pass(
            engine, [record(i, slot(i, base), "pl_") for i in range(sample)], now
        )
        out["_sample"] = len(hits)
    return out


def main() -> None:
    args = parse_args(__doc__, 100_000, sample=(5000, "records matched per path (default 5000)"))
    print(
        f"identity: pages of {PAGE} records against {args.n} canonical meetings, {args.sample} records per path"
    )
    results = {backend: run(backend, args.n, args.sample) for backend in backends_of(args)}
    print()
    print(f"{'path':16s}" + "".join(f"{b + ' µs/rec':>18s}{'rec/s':>10s}" for b in results))
    for path in ("match hits", "match misses", "ingest hits", "ingest fresh", "plain insert"):
        row = ""
        for r in results.values():
            per = r[path] / r["_sample"]
            row += f"{per * 1e6:18.0f}{1 / per:10.0f}"
        print(f"{path:16s}{row}")
    print()
    for backend, r in results.items():
        print(
            f"  {backend:8s} match/plain insert {r['match hits'] / r['plain insert']:.2f}   "
            f"ingest hits/plain insert {r['ingest hits'] / r['plain insert']:.2f}   "
            f"ingest hits/ingest fresh (rules off) {r['ingest hits'] / r['ingest fresh']:.2f}   "
            f"match share of a matched ingest {r['match hits'] / r['ingest hits']:.0%}"
        )


if __name__ == "__main__":
    main()
