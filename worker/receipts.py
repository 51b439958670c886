"""Storing verified inbound webhooks: many concurrent requests share one transaction.

A request whose delivery verified hands its receipt to the process's receipt writer (a
`GroupCommit`) and waits; the writer inserts everything waiting with one statement
(`INSERT … ON CONFLICT DO NOTHING RETURNING`), commits, and only then answers each request. A
delivery id already stored, or twice in one batch, is a duplicate; nothing is acknowledged that
is not stored. After the commit, `HandOver` sends ingest messages for the accepted receipts of the
batches committed in the last moment (they are stored leased, so the relay re-sends them if that
message is lost) and queues one poll per connection that sent a content-less change notice.

    accepted   records to ingest
    notified   a change without its content (HubSpot sends ids): stored done, a poll is queued
    ignored    an event type we do not handle: stored, nothing to do
    duplicate  this delivery id is stored already
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import Connection, Dialect

from bookingsync.adapters.base import WebhookDelivery
from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import ReceiptRow

from bookingsync.worker.relay import MESSAGE_SIZE

log = logging.getLogger(__name__)
# How long the hand-over gathers committed batches into one broker message (HandOver).
HANDOVER_LINGER = 0.05


@dataclass(frozen=True)
class Receipt:
    connection: str
    delivery_id: str
    kind: str  # accepted | notified | ignored
    row: dict[str, Any]


def receipt(
    connection: str, delivery: WebhookDelivery, body: bytes, now: datetime, lease_seconds: float
) -> Receipt:
    """The row to store for a verified delivery, and what kind of receipt it is."""
    row: dict[str, Any] = {
        "connection": connection,
        "delivery_id": delivery.delivery_id,
        "event_type": delivery.event_type,
        "body": body.decode("utf-8", "replace"),
        "due_at": now,
        "received_at": now,
        "lease_until": None,
        "attempts": 0,
        "processed_at": None,
        "handled": True,
        "error": None,
    }
    if delivery.handled and not delivery.records:
        return Receipt(
            connection,
            delivery.delivery_id,
            "notified",
            {**row, "records": [], "status": "done", "processed_at": now},
        )
    records = [
        {"payload": r.payload, "external_id": r.external_id, "scope": r.scope} for r in delivery.records
    ]
    if not delivery.handled or not records:
        return Receipt(
            connection,
            delivery.delivery_id,
            "ignored",
            {**row, "records": records, "handled": False, "status": "ignored"},
        )
    # Stored leased: the writer sends it to a worker at once; the relay re-sends it if that is lost.
    return Receipt(
        connection,
        delivery.delivery_id,
        "accepted",
        {
            **row,
            "records": records,
            "status": "leased",
            "attempts": 1,
            "lease_until": now + timedelta(seconds=lease_seconds),
        },
    )


def write_receipts(conn: Connection, items: Sequence[Receipt]) -> list[tuple[str, int | None]]:
    """Insert a batch; (outcome, receipt id) per item: its kind, or `duplicate`."""
    if conn.dialect.name != "postgresql":
        return write_sqlite_receipts(conn.connection.driver_connection, conn.dialect, items)
    first = first_of_each(items)
    stored = _insert_postgres(conn, [items[index].row for index in first.values()])
    return outcomes(items, first, stored)


def write_sqlite_receipts(
    driver: Any, dialect: Dialect, items: Sequence[Receipt]
) -> list[tuple[str, int | None]]:
    """`write_receipts` on the sqlite3 connection itself, inside the caller's transaction."""
    first = first_of_each(items)
    stored = _insert_sqlite(driver, dialect, [items[index].row for index in first.values()])
    return outcomes(items, first, stored)


def first_of_each(items: Sequence[Receipt]) -> dict[tuple[str, str], int]:
    """The index of each delivery's first item in the batch (a later copy is a duplicate)."""
    first: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        first.setdefault((item.connection, item.delivery_id), index)
    return first


def outcomes(
    items: Sequence[Receipt], first: dict[tuple[str, str], int], stored: dict[tuple[str, str], int]
) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for index, item in enumerate(items):
        key = (item.connection, item.delivery_id)
        if first[key] == index and key in stored:
            out.append((item.kind, stored[key]))
        else:
            out.append(("duplicate", None))
    return out


COLUMNS = (
    "connection",
    "delivery_id",
    "event_type",
    "body",
    "records",
    "status",
    "due_at",
    "received_at",
    "lease_until",
    "attempts",
    "processed_at",
    "handled",
    "error",
)
# SQLite takes up to 32,766 parameters a statement; 13 columns a row leaves room for 2,520 rows.
_SQLITE_ROWS = 2048


def _insert_sqlite(driver: Any, dialect: Dialect, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Multi-row `INSERT … RETURNING`s on the driver's cursor, each row's values made as
    SQLAlchemy makes them (`_sqlite_values`). SQLAlchemy's insertmanyvalues, re-processing every
    parameter through its execution context, cost 69 µs of CPU a row against 44 µs with the
    columns' processors called in a loop, and 23 µs this way (batches of 32). Statements of
    power-of-two sizes (`pieces`): the driver keeps each connection's last 128 statements
    compiled, and a text per batch size would fill that with programs of hundreds of parameters
    (worker/sql_lists.py)."""
    values = _sqlite_values(dialect)
    cursor = driver.cursor()
    stored: dict[tuple[str, str], int] = {}
    try:
        base = 0
        for size in pieces(len(rows), _SQLITE_ROWS):
            params: list[Any] = []
            for row in rows[base : base + size]:
                params.extend(values(row))
            base += size
            cursor.execute(_insert_sqlite_sql(size), params)
            for receipt_id, connection, delivery_id in cursor.fetchall():
                stored[(connection, delivery_id)] = receipt_id
    finally:
        cursor.close()
    return stored


@functools.cache
def _sqlite_values(dialect: Dialect) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's parameters in COLUMNS' order, stored as SQLAlchemy stores them: the JSON and
    boolean columns through their own bind processors, UTC times through `sqlite_time`, the
    text and integer columns (which have no processor on SQLite) as they are. One function per
    row rather than a processor call per column: this runs for every inbound webhook."""
    columns = ReceiptRow.__table__.c  # type: ignore[attr-defined]
    to_json = columns["records"].type._cached_bind_processor(dialect)
    to_bool = columns["handled"].type._cached_bind_processor(dialect)
    plain = [name for name in COLUMNS if name not in _CONVERTED]
    unexpected = [name for name in plain if columns[name].type._cached_bind_processor(dialect) is not None]
    unexpected += [name for name in _TIMES if not isinstance(columns[name].type, UTCDateTime)]
    if unexpected or to_json is None or to_bool is None:
        raise TypeError(f"webhook_receipts' columns changed type ({unexpected}); update _sqlite_values")

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        due, received = row["due_at"], row["received_at"]
        due_text = sqlite_time(due)
        records, handled = row["records"], row["handled"]
        return (
            row["connection"],
            row["delivery_id"],
            row["event_type"],
            row["body"],
            None if records is None else to_json(records),
            row["status"],
            due_text,
            due_text if received is due else _time_or_none(received),
            _time_or_none(row["lease_until"]),
            row["attempts"],
            _time_or_none(row["processed_at"]),
            None if handled is None else to_bool(handled),
            row["error"],
        )

    return values


_TIMES = ("due_at", "received_at", "lease_until", "processed_at")
_CONVERTED = {"records", "handled", *_TIMES}


def _time_or_none(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


def pieces(total: int, cap: int) -> list[int]:
    """`total` rows as statements of power-of-two sizes up to `cap` (a power of two), largest
    first: 21 -> 16, 4, 1. A dozen statement texts at most, whatever the batch sizes."""
    sizes = []
    while total > 0:
        size = min(cap, 1 << (total.bit_length() - 1))
        sizes.append(size)
        total -= size
    return sizes


@functools.lru_cache(maxsize=16)  # powers of two only; the text of 2,048 rows is 60 KB
def _insert_sqlite_sql(rows: int) -> str:
    return _insert_sql(",".join(["(" + ",".join("?" * len(COLUMNS)) + ")"] * rows))


def _insert_sql(values: str) -> str:
    return (
        f"INSERT INTO webhook_receipts ({', '.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT (connection, delivery_id) DO NOTHING RETURNING id, connection, delivery_id"
    )


def sqlite_time(value: datetime) -> str:
    """A UTC-aware time as SQLAlchemy stores a `UTCDateTime` on SQLite: naive UTC text, always
    with microseconds ("2026-03-02 09:00:00.000000")."""
    if value.tzinfo is UTC:  # the usual case, and a third of the work: cut the "+00:00" off
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is None:
        raise ValueError("refusing to store a naive datetime; times are UTC-aware everywhere")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# A power of two: 13 parameters a row keeps a statement under PostgreSQL's 65,535.
_POSTGRES_ROWS = 4096


def _insert_postgres(conn: Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Multi-row `INSERT … RETURNING`s with PostgreSQL's own `$n` placeholders (psycopg's raw
    cursor): psycopg's executemany cost 43 µs of CPU a row, a statement with `%s` placeholders as
    much (psycopg parses a long query in Python on every call), this 24 µs (batches of 20).

    Statements of power-of-two sizes (`pieces`): psycopg prepares each text on the server after a
    few uses, and one text per batch size would leave up to its 100 prepared statements of
    hundreds of parameters in every connection."""
    cursor = psycopg.RawCursor(conn.connection.driver_connection)  # type: ignore[arg-type]
    stored: dict[tuple[str, str], int] = {}
    try:
        base = 0
        for size in pieces(len(rows), _POSTGRES_ROWS):
            params = postgres_params(rows[base : base + size])
            base += size
            cursor.execute(insert_postgres_sql(size), params)
            for receipt_id, connection, delivery_id in cursor.fetchall():
                stored[(connection, delivery_id)] = receipt_id
    finally:
        cursor.close()
    return stored


def postgres_params(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """`insert_postgres_sql`'s parameters for these rows, row after row in COLUMNS' order."""
    return [Json(row[name]) if name == "records" else row[name] for row in rows for name in COLUMNS]


@functools.lru_cache(maxsize=16)
def insert_postgres_sql(rows: int) -> str:
    width = len(COLUMNS)
    return _insert_sql(
        ",".join(
            "(" + ",".join(f"${row * width + column + 1}" for column in range(width)) + ")"
            for row in range(rows)
        )
    )


def hand_over(actors: Any, items: Sequence[Receipt], results: Sequence[tuple[str, int | None]]) -> None:
    """After a batch committed: ingest messages for its accepted receipts (up to MESSAGE_SIZE ids
    each), one poll per connection that sent a change notice. A lost message costs latency, not data."""
    if actors is None:
        return
    accepted = [receipt_id for kind, receipt_id in results if kind == "accepted" and receipt_id is not None]
    for base in range(0, len(accepted), MESSAGE_SIZE):
        try:
            actors.ingest.send(accepted[base : base + MESSAGE_SIZE])
        except Exception:  # the relay re-sends them when the lease runs out
            log.exception("could not enqueue %d receipts; the relay will pick them up", len(accepted))
    # The provider said what changed but not how: read it now rather than at the next tick; the
    # periodic poll remains the durable path if this message is lost.
    for connection in sorted(
        {item.connection for item, (kind, _) in zip(items, results, strict=True) if kind == "notified"}
    ):
        try:
            actors.poll.send(connection)
        except Exception:
            log.exception("could not enqueue a poll of %s after its webhook", connection)


class HandOver:
    """The receipt writer's after-commit step: `hand_over` from a thread of its own, for every batch
    committed in the last `linger` seconds at once.

    A broker send cost the web process about as much CPU as inserting ten receipts, and under load
    a batch commits every few milliseconds; one message for several batches is most of that back,
    for at most `linger` more before a worker starts. Nothing waits on it: the requests were
    answered at the commit, and a receipt whose message is late or lost is stored leased, so the
    relay sends it again when the lease runs out.
    """

    def __init__(self, actors: Callable[[], Any], *, linger: float = HANDOVER_LINGER) -> None:
        self._actors, self.linger = actors, linger
        self._pending: list[tuple[Sequence[Receipt], Sequence[tuple[str, int | None]]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="receipts-hand-over", daemon=True)
        self._thread.start()

    def __call__(self, items: Sequence[Receipt], results: Sequence[tuple[str, int | None]]) -> None:
        with self._cond:
            self._pending.append((items, results))
            if len(self._pending) == 1:  # the thread waits for work; while it lingers, no wake-ups
                self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is waiting, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                # The batches that commit meanwhile go in the same messages.
                deadline = time.monotonic() + self.linger
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                taken, self._pending = self._pending, []
            try:
                hand_over(
                    self._actors(),
                    [item for items, _ in taken for item in items],
                    [result for _, results in taken for result in results],
                )
            except Exception:
                log.exception("handing %d receipt batches to the broker failed", len(taken))
