"""Work per change does not walk history: the queries that run per poll or per prune use indexes
on what they need, on SQLite and PostgreSQL; and an old SQLite file is converted to incremental
auto_vacuum by the migration step, so retention can shrink it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, inspect, text

from bookingsync.models.tables import ReceiptRow
from bookingsync.worker import retention
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import ensure_incremental_vacuum, make_engine, upgrade


def plan(engine: Engine, sql: str) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table would be scanned anyway
        return " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def test_the_history_indexes_exist_with_their_predicates(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("webhook_receipts")}
    assert indexes["ix_receipts_body_kept"]["column_names"] == ["due_at"]
    assert "ix_meetings_end" in {ix["name"] for ix in inspect(engine).get_indexes("meetings")}
    # store.watched_emails, read at every LeanData poll
    assert "ix_meetings_end" in plan(
        engine, "SELECT attendee_email FROM meetings WHERE \"end\" >= '2026-01-01'"
    )


def test_clearing_receipt_bodies_reads_only_receipts_that_still_have_one(
    engine: Engine, clock: ManualClock
) -> None:
    old = clock.now() - timedelta(days=10)
    rows = [
        {
            "connection": "leezy-main",
            "delivery_id": f"d{i}",
            "event_type": "meeting.scheduled",
            "handled": True,
            "body": "" if i < 2000 else '{"x": 1}',
            "records": None,
            "status": "done",
            "due_at": old,
            "received_at": old,
            "attempts": 1,
        }
        for i in range(2010)
    ]
    with engine.begin() as conn:  # weeks of receipts cleared before, ten still with their body
        conn.execute(insert(ReceiptRow.__table__), rows)
        conn.exec_driver_sql("ANALYZE webhook_receipts")
    sql = (
        "SELECT id FROM webhook_receipts{hint} WHERE body <> '' AND due_at < '2030-01-01' "
        "AND status IN ('done', 'ignored') ORDER BY due_at LIMIT 5"
    )
    hint = " INDEXED BY ix_receipts_body_kept" if engine.dialect.name == "sqlite" else ""
    assert "ix_receipts_body_kept" in plan(engine, sql.format(hint=hint))
    cfg = parse_config({"retention": {"batch_size": 4}}, environ={})
    pruned = retention.prune(engine, cfg, clock.now(), vacuum=False)
    assert (
        pruned.removed["receipt_bodies"] == 10
    )  # the ten with a body, in batches; the cleared ones untouched
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_receipts WHERE body <> ''")).scalar_one() == 0


def test_postgres_autovacuum_visits_the_work_tables_early(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite has no autovacuum: retention's incremental vacuum gives the pages back
    with engine.connect() as conn:
        options = dict(
            conn.exec_driver_sql(
                "SELECT relname, array_to_string(reloptions, ',') FROM pg_class "
                "WHERE relname IN ('events', 'deliveries', 'webhook_receipts') "
                "AND relnamespace = current_schema()::regnamespace"
            ).all()
        )
    assert set(options) == {"events", "deliveries", "webhook_receipts"}
    assert all("autovacuum_vacuum_scale_factor=0.02" in value for value in options.values())


def auto_vacuum(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one())


def old_file(path: Path) -> Engine:
    """A database file as releases before incremental auto_vacuum made it, at the newest schema."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.connection.driver_connection.executescript("PRAGMA auto_vacuum=NONE; VACUUM;")  # type: ignore[union-attr]
    assert auto_vacuum(engine) == 0
    return engine


def test_an_old_sqlite_file_is_converted_by_the_migration_step(tmp_path: Path) -> None:
    engine = old_file(tmp_path / "old.db")
    upgrade(engine)  # what `db upgrade` and migrate_on_start run
    assert auto_vacuum(engine) == 2
    assert ensure_incremental_vacuum(engine) is None  # nothing left to do
    engine.dispose()


def test_a_big_old_sqlite_file_is_named_with_the_command_that_converts_it(tmp_path: Path) -> None:
    engine = old_file(tmp_path / "big.db")
    note = ensure_incremental_vacuum(engine, max_bytes=1)
    assert note is not None and "big.db" in note and "bookingsync prune --vacuum" in note
    assert auto_vacuum(engine) == 0  # left alone: a rewrite of a big file is the operator's call
    engine.dispose()


def test_retention_finds_cancelled_events_through_their_partial_index(engine: Engine) -> None:
    """Stamping and pruning cancelled events read an index range over cancelled rows only, not the
    events table (weeks of published ones, the pending timers)."""
    hint = " INDEXED BY ix_events_cancelled" if engine.dialect.name == "sqlite" else ""
    bound = {":limit": "100", ":cutoff": "'2030-01-01'"}
    for sql in (retention.STAMP_SQL, retention.CANCELLED_SQL):
        query = sql.format(hint=hint)
        for name, value in bound.items():
            query = query.replace(name, value)
        assert "ix_events_cancelled" in plan(engine, query), query
