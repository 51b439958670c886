"""A record read again unchanged is only touched, and only while the link still holds its reading.

The fast path (worker/ingest_unchanged.py) skips normalising a polled record whose raw key equals
its link's `raw_hash`. These check that it is taken (no normalise, the link's `last_seen_at`
moves, nothing else), and that whatever changed the link since (marked missing by a sweep, an ORM
write: models/tables.py clears the key; a newer snapshot of the same content, a bulk write: it
writes the newer record's key) sends the same bytes down the full path again, which then does
what it always did (the booking reappears; the older snapshot counts as stale). SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker import store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

GRACE = timedelta(minutes=5)
CONNECTION = "leezy-main"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def leezy(now: datetime, *, updated_min: float) -> RawRecord:
    start = now + timedelta(hours=2)
    attributes = {
        "start_time": iso(start),
        "end_time": iso(start + timedelta(minutes=30)),
        "attendee": {"email": "lisa@acme.com", "name": "Lisa"},
        "status": "scheduled",
        "title": "Demo",
        "timezone": "Europe/Berlin",
        "updated_at": iso(now + timedelta(minutes=updated_min)),
    }
    return RawRecord(payload={"id": "lz_1", "type": "meeting", "attributes": attributes}, external_id="lz_1")


class Counting(LeezyAdapter):
    normalised = 0

    def normalise(self, record: RawRecord) -> Any:
        self.normalised += 1
        return super().normalise(record)


@pytest.fixture
def adapter() -> Iterator[Counting]:
    adapter = Counting(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    yield adapter
    adapter.close()


def ingest_page(engine: Engine, adapter: Counting, raws: list[RawRecord], now: datetime) -> IngestResult:
    result = IngestResult()
    with transaction(engine) as session:
        ingest_records(session, adapter, CONNECTION, raws, source="poll", now=now, grace=GRACE, result=result)
    return result


def ingest(engine: Engine, adapter: Counting, raw: RawRecord, now: datetime) -> IngestResult:
    return ingest_page(engine, adapter, [raw], now)


def state(engine: Engine) -> dict[str, Any]:
    with transaction(engine) as session:
        link = session.exec(select(LinkRow)).one()
        meeting = session.exec(select(MeetingRow)).one()
        return {
            "last_seen_at": link.last_seen_at,
            "missing": link.missing,
            "stale_count": link.stale_count,
            "link_stamp": link.source_updated_at,
            "status": meeting.status,
            "version": meeting.version,
            "events": [e.type for e in session.exec(select(EventRow).order_by(col(EventRow.id)))],
        }


def test_an_unchanged_record_is_only_touched(engine: Engine, clock: ManualClock, adapter: Counting) -> None:
    raw = leezy(clock.now(), updated_min=-10)
    first = ingest(engine, adapter, raw, clock.now())
    assert (first.changed, adapter.normalised) == (1, 1)
    before = state(engine)
    later = clock.now() + timedelta(minutes=3)
    again = ingest(engine, adapter, raw, later)
    assert (again.applied, again.changed, again.events, adapter.normalised) == (1, 0, [], 1)
    assert state(engine) == {**before, "last_seen_at": later}


def test_a_key_written_another_way_reads_the_record_in_full_once_then_holds_the_new_key(
    engine: Engine, clock: ManualClock, adapter: Counting
) -> None:
    # A release that writes keys differently (or a version bump) leaves every stored `raw_hash`
    # unlike the keys it computes: each link must read its record in full once, take the new key
    # and be only touched from then on, never fall back to the full path for good.
    raw = leezy(clock.now(), updated_min=-10)
    ingest(engine, adapter, raw, clock.now())
    with engine.begin() as conn:  # Core: an ORM write would clear the key (models/tables.py)
        conn.execute(LinkRow.__table__.update().values(raw_hash="0" * 32))  # type: ignore[attr-defined]
    before = state(engine)
    full = ingest(engine, adapter, raw, clock.now() + timedelta(minutes=1))
    assert (full.changed, full.events, adapter.normalised) == (0, [], 2)
    with transaction(engine) as session:
        assert session.exec(select(LinkRow.raw_hash)).one() not in (None, "0" * 32)
    touched = ingest(engine, adapter, raw, clock.now() + timedelta(minutes=2))
    assert (touched.applied, touched.changed, adapter.normalised) == (1, 0, 2)
    assert state(engine) == {**before, "last_seen_at": clock.now() + timedelta(minutes=2)}


def other(now: datetime, external_id: str) -> RawRecord:
    raw = leezy(now, updated_min=-10)
    payload = {**raw.payload, "id": external_id}
    return RawRecord(payload=payload, external_id=external_id)


def seen_at(engine: Engine) -> dict[str, datetime]:
    with transaction(engine) as session:
        return {link.external_id: link.last_seen_at for link in session.exec(select(LinkRow))}


def test_in_a_page_only_the_unchanged_records_are_skipped_and_every_link_is_seen(
    engine: Engine, clock: ManualClock, adapter: Counting
) -> None:
    now = clock.now()
    page = [other(now, f"lz_{i}") for i in range(5)]
    ingest_page(engine, adapter, page, now)
    assert adapter.normalised == 5
    # lz_1 changed, the other four are the same: one statement touches those four, lz_1 alone is
    # normalised and applied.
    attributes = {**page[1].payload["attributes"], "title": "New"}
    changed = RawRecord(payload={**page[1].payload, "attributes": attributes}, external_id="lz_1")
    later = now + timedelta(minutes=1)
    again = ingest_page(engine, adapter, [page[0], changed, *page[2:]], later)
    assert adapter.normalised == 5 + 1
    assert again.applied == 5 and again.changed == 1
    assert {eid for eid, at in seen_at(engine).items() if at == later} == {f"lz_{i}" for i in range(5)}


@pytest.mark.parametrize("column", ["mirrored", "rule"])
def test_a_mirror_or_a_peer_rules_link_is_never_only_touched(
    engine: Engine, clock: ManualClock, adapter: Counting, column: str
) -> None:
    from bookingsync.worker.conflicts import PEER_RULES

    raw = leezy(clock.now(), updated_min=-10)
    ingest(engine, adapter, raw, clock.now())
    value: object = True if column == "mirrored" else sorted(PEER_RULES)[0]
    with engine.begin() as conn:  # Core: the key stays (an ORM write would clear it)
        conn.execute(LinkRow.__table__.update().values({column: value}))  # type: ignore[attr-defined]
    ingest(engine, adapter, raw, clock.now() + timedelta(minutes=1))
    assert adapter.normalised == 2  # read in full: such links are the per-record path's


def test_a_link_marked_missing_since_reads_the_same_record_in_full(
    engine: Engine, clock: ManualClock, adapter: Counting
) -> None:
    now = clock.now()
    raw = leezy(now, updated_min=-10)
    ingest(engine, adapter, raw, now)
    with transaction(engine) as session:  # a complete read of the scope that did not return it
        (link,) = session.exec(select(LinkRow)).all()
        store.mark_missing(session, link, now + timedelta(minutes=1), GRACE)
    assert state(engine)["missing"] is True
    back = ingest(engine, adapter, raw, now + timedelta(minutes=2))
    assert adapter.normalised == 2  # not taken for unchanged: the link no longer holds what it applied
    assert back.changed == 1
    after = state(engine)
    assert after["missing"] is False and after["status"] == "scheduled"


def test_an_older_snapshot_of_the_same_content_is_still_counted_stale(
    engine: Engine, clock: ManualClock, adapter: Counting
) -> None:
    now = clock.now()
    old, new = leezy(now, updated_min=-10), leezy(now, updated_min=-5)
    ingest(engine, adapter, old, now)
    ingest(engine, adapter, new, now + timedelta(minutes=1))  # same content, newer stamp: a touch
    assert state(engine)["link_stamp"] == now - timedelta(minutes=5)
    late = ingest(engine, adapter, old, now + timedelta(minutes=2))
    assert (late.stale, adapter.normalised) == (1, 3)
    after = state(engine)
    assert after["stale_count"] == 1 and after["link_stamp"] == now - timedelta(minutes=5)


def test_on_sqlite_without_statistics_the_touch_finds_each_link_through_the_unique_index(
    tmp_path: Any,
) -> None:
    # SQLite files are never ANALYZEd, so the plan must not need statistics: an `UPDATE … FROM
    # json_each(pairs)` tried for speed walked every link of the connection (ix_links_connection_scope)
    # once a page, quadratic over a first sync (bench/README.md, ingest).
    from bookingsync.worker.db import make_engine, upgrade
    from bookingsync.worker.ingest_unchanged import _touch_statement

    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    sql = _touch_statement("sqlite").compile(dialect=engine.dialect).string
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        assert (
            raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()[0] == 0
        )
        plan = " | ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, ["t", "c", "[]", "[]"]))
    engine.dispose()
    assert "USING INDEX sqlite_autoindex_links_1 (connection=? AND external_id=?)" in plan, plan
    assert "ix_links_connection_scope" not in plan and "SCAN links" not in plan, plan
