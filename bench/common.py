"""Shared helpers for the benchmarks: throwaway databases, Leezy records, bulk timer rows, and the
service stack the end-to-end benchmarks run (sandbox → bookingsync → subscriber).

Not a test module and not part of the package; the benchmark scripts import it from their own
directory (`python bench/<name>.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker.db import make_engine, upgrade
from services import (
    REDIS_URL,
    SUBSCRIBER_SECRET,
    Proc,
    Sink,
    config_text,
    database_url,
    flush_redis,
    free_port,
    start_sandbox,
    stop_all,
    wait_started,
)

POSTGRES_URL = os.environ.get(
    "BOOKINGSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHUNK = 10_000
CONNECTION = "leezy-bench"
_RUN = uuid.uuid4().hex[:8]


def parse_args(doc: str | None, n: int, backends: str = "both", **extra: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "both"],
        default=backends,
        help=f"database(s) to run on (default: {backends})",
    )
    parser.add_argument("--n", type=int, default=n, help=f"size (default: {n})")
    for name, (default, help_text) in extra.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(default), default=default, help=help_text
        )
    return parser.parse_args()


def backends_of(args: argparse.Namespace) -> list[str]:
    return ["sqlite", "postgres"] if args.backend == "both" else [args.backend]


@contextlib.contextmanager
def database(backend: str) -> Iterator[Engine]:
    """A migrated, empty database: an SQLite file in a temp dir, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bookingsync-bench-") as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            engine.bench_url = f"sqlite:///{tmp}/bench.db"  # type: ignore[attr-defined]
            engine.bench_schema = None  # type: ignore[attr-defined]
            upgrade(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    engine.bench_url = POSTGRES_URL  # type: ignore[attr-defined]
    engine.bench_schema = schema  # type: ignore[attr-defined]
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def analyze(engine: Engine) -> None:
    """Fresh statistics after a bulk load, as autovacuum (PostgreSQL) would soon gather them."""
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def leezy_resource(
    i: int, start: datetime, *, updated_at: datetime, minutes: int = 30, status: str = "scheduled"
) -> dict[str, Any]:
    """One meeting in Leezy's documented resource shape (GET /api/v1/meetings `data[]`)."""
    return {
        "id": f"lz_{i:08d}",
        "type": "meeting",
        "attributes": {
            "start_time": iso(start),
            "end_time": iso(start + timedelta(minutes=minutes)),
            "updated_at": iso(updated_at),
            "attendee": {"email": f"Prospect.{i}@Example.com", "name": f"Prospect {i}"},
            "status": status,
            "title": f"Demo call #{i}",
            "timezone": "Europe/Berlin",
        },
    }


def meeting_row(mid: str, start: datetime, end: datetime, now: datetime, i: int) -> dict[str, Any]:
    """A booked, scheduled meeting row as the store writes it (version 1, generation 0).

    The content hash is a stand-in (sha256 of the id): nothing here re-applies these meetings, and
    building a pydantic Meeting per row would double the time to load a million timers.
    """
    email, name = f"prospect.{i}@example.com", f"Prospect {i}"
    return {
        "id": mid,
        "status": "scheduled",
        "title": f"Demo call #{i}",
        "start": start,
        "end": end,
        "timezone": "Europe/Berlin",
        "attendee_email": email,
        "attendee_name": name,
        "attendee_phone": None,
        "hosts": [],
        "conference_url": None,
        "content_hash": hashlib.sha256(mid.encode()).hexdigest(),
        "booked": True,
        "deleted": False,
        "generation": 0,
        "version": 1,
        "next_sequence": 1,
        "created_at": now,
        "updated_at": now,
    }


_serial = itertools.count()


def serial_hex() -> str:
    """Ids as long as `store.new_id`'s uuid4 hex, but ascending: a bulk load appends to the indexes
    instead of inserting at random places, which keeps a million-row load to a minute or two."""
    return f"{_RUN}{next(_serial):024x}"


def timer_row(mid: str, kind: str, at: datetime, now: datetime) -> dict[str, Any]:
    """A pending timer exactly as `store.add_events` writes it for a fresh booking (no payload)."""
    return {
        "event_id": f"evt_{serial_hex()}",
        "meeting_id": mid,
        "type": kind,
        "dedupe_key": f"{mid}:{kind}:g0:{at.isoformat()}",
        "generation": 0,
        "set_for": at,
        "occurred_at": at,
        "due_at": at,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
    }


def insert_timers(
    engine: Engine, starts: list[datetime], now: datetime, *, minutes: int = 30, tag: str = ""
) -> dict[str, datetime]:
    """Meetings starting at `starts` (+ links), each with its hasStarted and hasEnded timers.

    Core executemany in chunks of CHUNK rows. Returns {event_id: due_at} of the hasStarted timers.
    """
    started: dict[str, datetime] = {}
    for base in range(0, len(starts), CHUNK // 2):
        meetings, links, events = [], [], []
        for i, start in enumerate(starts[base : base + CHUNK // 2], start=base):
            mid = f"mtg_{tag}{serial_hex()}"
            end = start + timedelta(minutes=minutes)
            meetings.append(meeting_row(mid, start, end, now, i))
            links.append(
                {
                    "meeting_id": mid,
                    "connection": CONNECTION,
                    "provider": "leezy",
                    "external_id": f"{tag}{i}",
                    "content_hash": meetings[-1]["content_hash"],
                    "missing": False,
                    "first_seen_at": now,
                    "last_seen_at": now,
                }
            )
            first = timer_row(mid, "meeting.hasStarted", start, now)
            started[first["event_id"]] = start
            events += [first, timer_row(mid, "meeting.hasEnded", end, now)]
        with engine.begin() as conn:
            conn.execute(insert(MeetingRow.__table__), meetings)
            conn.execute(insert(LinkRow.__table__), links)
            conn.execute(insert(EventRow.__table__), events)
    return started


def spread(n: int, first: datetime, seconds: float, seed: int = 7) -> list[datetime]:
    rng = random.Random(seed)
    return sorted(first + timedelta(seconds=rng.uniform(0, seconds)) for _ in range(n))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


class Timer:
    """Wall time (`seconds`) and this process's CPU time (`cpu`, all threads) of a block."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


@dataclass
class Stack:
    leezy: str  # the Leezy simulator's URL
    sink: Sink
    port: int  # bookingsync's HTTP port (run, web)
    config: Path
    procs: list[Proc]


@contextlib.contextmanager
def service_stack(
    backend: str,
    engine: Engine,
    log_dir: Path,
    start: Callable[[Path], list[Proc]],
    *,
    connection: str = "",
    extra: str = "",
    events: str = "",
) -> Iterator[Stack]:
    """The sandbox's simulators, bench/sink.py verifying every delivery as subscription `crm`, and
    bookingsync on `engine` with one Leezy connection to the simulator (`connection`: more of its
    keys), the in-process broker on SQLite, Redis on PostgreSQL. `start(config)` starts the roles;
    ready when they say so. On the way out everything stops (and the bench Redis database is
    flushed, as it was before)."""
    sandbox, leezy = start_sandbox(log_dir)
    sink = Sink(log_dir, secret=SUBSCRIBER_SECRET)
    procs: list[Proc] = []
    try:
        if backend == "postgres":
            flush_redis()
        port = free_port()
        connections = (
            f'\n[[connections]]\nid = "leezy"\nprovider = "leezy"\nbase_url = "{leezy}"\n'
            f'token = "lzy_at_sandbox"\n{connection}\n'
        )
        config = log_dir / "bookingsync.toml"
        config.write_text(
            config_text(
                db_url=database_url(engine),
                port=port,
                connections=connections,
                broker_url="memory://" if backend == "sqlite" else REDIS_URL,
                subscriptions=[("crm", sink.url)],
                extra=extra,
                events=events,
            )
        )
        procs = start(config)
        wait_started(procs, port)
        yield Stack(leezy=leezy, sink=sink, port=port, config=config, procs=procs)
    finally:
        stop_all(procs)
        sink.stop()
        sandbox.stop()
        if backend == "postgres":
            flush_redis()
