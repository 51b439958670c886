"""Fresh PostgreSQL statistics while ingest grows the tables (worker/table_stats.py).

A first sync of thousands of bookings gets its tables analysed as it goes, so a page's links are
read through the unique index rather than by walking every link of the connection; the next
ANALYZE waits until the links have doubled; one that would wait for a lock is skipped and the
ingest goes on. Autovacuum is switched off on the test's tables, so every ANALYZE seen is ours.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.worker import table_stats
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records
from bookingsync.worker.ingest_statements import statement
from tests.conftest import drop_postgres, postgres_engine

pytestmark = pytest.mark.postgres
CONNECTION = "leezy-main"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def pg() -> Iterator[Engine]:
    engine = postgres_engine()
    with engine.begin() as conn:
        for table in table_stats.TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    yield engine
    drop_postgres(engine)


@pytest.fixture
def adapter() -> Iterator[LeezyAdapter]:
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    yield adapter
    adapter.close()


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def record(i: int) -> RawRecord:
    start = NOW + timedelta(days=1, minutes=15 * i)
    payload = {
        "id": f"lz_{i:06d}",
        "type": "meeting",
        "attributes": {
            "start_time": iso(start),
            "end_time": iso(start + timedelta(minutes=30)),
            "updated_at": iso(NOW),
            "attendee": {"email": f"p{i}@example.com", "name": f"P {i}"},
            "status": "scheduled",
            "title": f"Demo {i}",
            "timezone": "Europe/Berlin",
        },
    }
    return RawRecord(payload=payload, external_id=payload["id"])


def ingest(engine: Engine, adapter: LeezyAdapter, first: int, last: int) -> None:
    """Records first..last-1, first seen, in pages of 100 as a poll applies them."""
    for start in range(first, last, 100):
        result = IngestResult()
        with transaction(engine) as session:
            raws = [record(i) for i in range(start, min(start + 100, last))]
            ingest_records(
                session,
                adapter,
                CONNECTION,
                raws,
                source="poll",
                now=NOW,
                grace=timedelta(minutes=5),
                result=result,
            )
        assert result.changed == len(raws)


def analysed_links(engine: Engine) -> int:
    """The links' row count as the last ANALYZE left it in pg_class (-1: never analysed)."""
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = 'links'::regclass"
            ).scalar_one()
        )


def page_read_plan(engine: Engine, ids: list[str]) -> str:
    stmt = statement("postgresql", "links")
    compiled = stmt.compile(dialect=engine.dialect)
    params = compiled.construct_params({"connection": CONNECTION, "ids": ids})
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + str(compiled), params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_first_sync_is_analysed_as_it_grows_and_reads_its_pages_through_the_unique_index(
    pg: Engine, adapter: LeezyAdapter
) -> None:
    ingest(pg, adapter, 0, 1900)
    # Analysed once, after the page that made 1,000 links; the next waits for 1,000 more.
    assert analysed_links(pg) == 1000
    plan = page_read_plan(pg, [f"lz_{i:06d}" for i in range(1800, 1900)])
    assert "uq_links_connection_external" in plan, plan
    ingest(pg, adapter, 1900, 2000)
    assert analysed_links(pg) == 2000
    with pg.connect() as conn:
        never = conn.exec_driver_sql(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema()"
            " AND relname IN ('links', 'meetings', 'events') AND last_analyze IS NULL"
        ).all()
    assert never == []


def test_an_analyze_that_would_wait_for_a_lock_is_skipped_and_the_ingest_goes_on(
    pg: Engine, adapter: LeezyAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another ANALYZE in progress: it holds the tables until it commits
        with pg.begin() as conn:
            conn.exec_driver_sql("ANALYZE links")
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with caplog.at_level(logging.DEBUG, logger="bookingsync.worker.table_stats"):
            ingest(pg, adapter, 0, 1000)  # the page that makes 1,000 links would analyse
            assert table_stats.analyze(pg) is False
        assert "ANALYZE skipped" in caplog.text
    finally:
        release.set()
        holder.join()
    with pg.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM links").scalar_one() == 1000
    assert table_stats.analyze(pg) is True
    assert analysed_links(pg) == 1000
