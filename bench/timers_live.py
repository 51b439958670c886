"""The process-based modes of bench/timers.py (see its docstring): --mode faults (PostgreSQL +
Redis roles across a scheduler SIGKILL, a Redis restart and a PostgreSQL outage) and --mode run
(`bookingsync run` on SQLite across a SIGKILL and restart). Lateness of a timer is its
`published_at` − its `due_at`, read from the database once the processes are stopped.

Not a test module and not part of the package: bench/timers.py imports it from its directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import POSTGRES_URL, Timer, analyze, database, insert_timers, percentile, spread
from sqlalchemy import select, text, update
from sqlmodel import col

from bookingsync.models.tables import EventRow
from bookingsync.worker.db import make_engine, upgrade

LEAD_SECONDS = 3.0  # between the processes being up and the first due timer


# Longer than the 30 s row lease, so that what a fault costs (up to a lease) shows in its own phase.
PHASE_SECONDS = 35.0
FAULT_AFTER = 3.0  # seconds into its phase when a fault strikes
GOALS = {"steady": 1.0, "scheduler SIGKILL + restart": 3.0, "Redis restart": 3.0}


def faults(args) -> None:
    import services

    sys.path.insert(
        0, str(Path(__file__).resolve().parent.parent)
    )  # tests/e2e/faults.py: the proxy and Redis
    from tests.e2e.faults import RedisServer, TcpProxy

    phases = [
        ("steady", PHASE_SECONDS),
        ("scheduler SIGKILL + restart", PHASE_SECONDS),
        ("Redis restart", PHASE_SECONDS),
        (f"PostgreSQL down {args.outage:g} s", args.outage + PHASE_SECONDS),
    ]
    goals = {**GOALS, phases[3][0]: args.outage + 3.0}
    sampled = int(sum(length for _, length in phases) * args.rate)
    if args.populate_only:
        with _backlog(args.schema, max(0, (args.n - 2 * sampled) // 2)):
            return
    with (
        tempfile.TemporaryDirectory(prefix="bookingsync-timers-") as tmp,
        _backlog(args.schema, max(0, (args.n - 2 * sampled) // 2)) as engine,
    ):
        log_dir = Path(os.environ.get("BOOKINGSYNC_BENCH_LOGS") or tmp)
        now = datetime.now(UTC)
        redis = RedisServer(log_dir).start()
        proxy = TcpProxy(("127.0.0.1", engine.url.port or 5432)).up()
        db_url = services.database_url(engine).replace(
            f"@127.0.0.1:{engine.url.port or 5432}/", f"@127.0.0.1:{proxy.port}/"
        )
        config = log_dir / "bookingsync.toml"
        config.write_text(
            services.config_text(
                db_url=db_url, broker_url=redis.url, port=services.free_port(), subscriptions=[]
            )
        )
        args_of = ["--config", str(config)]
        procs = [
            services.Proc.bookingsync(f"scheduler-{i}", ["scheduler", *args_of], log_dir) for i in (1, 2)
        ]
        procs.append(services.Proc.bookingsync("worker-0", ["worker", *args_of], log_dir))
        try:
            for proc in procs:
                services.wait_log(proc, "consuming" if proc.name.startswith("worker") else "started")
            services.wait_until(lambda: _leader(engine), 60, "a scheduler to lead")
            t0 = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
            samples, starts = _samples(engine, phases, t0, now, args.rate)
            _sleep_until(starts[1] + timedelta(seconds=FAULT_AFTER))
            pid = int(str(_leader(engine)).split(":")[1])  # holder ids are role@host:pid:nonce
            leading = next(proc for proc in procs if proc.proc.pid == pid)
            os.killpg(leading.proc.pid, 9)
            leading.proc.wait(10)
            procs.append(
                services.Proc.bookingsync(f"{leading.name}-restarted", ["scheduler", *args_of], log_dir)
            )
            # Under load the queue is never empty; here it is, unless the worker falls behind: it is
            # paused for the second before the restart, so the restart finds messages to lose.
            worker = procs[2].proc
            _sleep_until(starts[2] + timedelta(seconds=FAULT_AFTER - 1))
            os.killpg(worker.pid, signal.SIGSTOP)
            _sleep_until(starts[2] + timedelta(seconds=FAULT_AFTER))
            try:
                redis.restart()
            finally:
                os.killpg(worker.pid, signal.SIGCONT)
            _sleep_until(starts[3] + timedelta(seconds=FAULT_AFTER))
            proxy.down()
            time.sleep(args.outage)
            proxy.up()
            _sleep_until(starts[3] + timedelta(seconds=phases[3][1] + 15))
        finally:
            services.stop_all(procs)
            proxy.down()
            redis.kill()
        published = _published(engine, [event_id for sample in samples for event_id in sample])
    _report(phases, samples, published, goals)


def _report(phases, samples, published, goals) -> None:
    print()
    print(
        f"{'phase':32s}{'timers':>8s}{'late':>6s}{'p50 s':>8s}{'p99 s':>8s}{'max s':>8s}{'goal p99':>10s}"
        f"{'p99/goal':>10s}"
    )
    for (name, _), sample in zip(phases, samples, strict=True):
        late = [
            (published[e] - due).total_seconds() for e, due in sample.items() if published.get(e) is not None
        ]
        missing = len(sample) - len(late)
        p99 = percentile(late, 99)
        print(
            f"{name:32s}{len(sample):8d}{missing:6d}{percentile(late, 50):8.2f}{p99:8.2f}"
            f"{max(late, default=float('nan')):8.2f}{goals[name]:10.1f}{p99 / goals[name]:10.2f}"
        )
    print(f"(late: timers not published by the end; floor: the relay tick, {0.5:.1f} s, halved on average)")
    for (name, _), sample in zip(phases, samples, strict=True):
        worst = sorted(
            sample, key=lambda e: (published.get(e) or datetime.max.replace(tzinfo=UTC)) - sample[e]
        )[-3:]
        print(
            f"  {name}: latest "
            + ", ".join(
                f"{e[-8:]} due {sample[e]:%H:%M:%S.%f} published {published.get(e) and f'{published[e]:%H:%M:%S.%f}'}"
                for e in worst
            )
        )


def embedded(args) -> None:
    """--mode run: `bookingsync run` on SQLite, steady and across a SIGKILL and an immediate restart."""
    import services

    phases = [("steady", PHASE_SECONDS), ("run SIGKILL + restart", PHASE_SECONDS)]
    goals = {"steady": 1.0, "run SIGKILL + restart": 3.0}
    sampled = int(sum(length for _, length in phases) * args.rate)
    with (
        tempfile.TemporaryDirectory(prefix="bookingsync-timers-") as tmp,
        _sqlite_backlog(args.sqlite, max(0, (args.n - 2 * sampled) // 2)) as engine,
    ):
        if args.populate_only:
            return
        log_dir = Path(os.environ.get("BOOKINGSYNC_BENCH_LOGS") or tmp)
        now = datetime.now(UTC)
        port = services.free_port()
        config = log_dir / "bookingsync.toml"
        config.write_text(
            services.config_text(
                db_url=services.database_url(engine), broker_url="memory://", port=port, subscriptions=[]
            )
        )
        procs = [services.Proc.bookingsync("run", ["run", "--config", str(config)], log_dir)]
        try:
            services.wait_ready(port, procs)
            t0 = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
            samples, starts = _samples(engine, phases, t0, now, args.rate)
            _sleep_until(starts[1] + timedelta(seconds=FAULT_AFTER))
            os.killpg(procs[0].proc.pid, 9)  # no goodbye: the OS file lock goes with the process
            procs[0].proc.wait(10)
            killed = time.monotonic()
            procs.append(
                services.Proc.bookingsync("run-restarted", ["run", "--config", str(config)], log_dir)
            )
            services.wait_ready(port, procs[1:])
            up = datetime.now(UTC)
            print(f"  the restarted run answered /readyz {time.monotonic() - killed:.1f} s after the kill")
            _sleep_until(starts[1] + timedelta(seconds=phases[1][1] + 15))
        finally:
            services.stop_all(procs)
        published = _published(engine, [event_id for sample in samples for event_id in sample])
    _report(phases, samples, published, goals)
    # What the restart itself costs apart from starting a Python process: timers that fell due
    # while no run was up, measured from the moment the restarted one answered.
    waited = [
        (at - up).total_seconds()
        for e, due in samples[1].items()
        if due < up and (at := published.get(e)) is not None
    ]
    print(
        f"  {len(waited)} timers fell due while no run was up; published within "
        f"{max(waited, default=float('nan')):.2f} s (p50 {percentile(waited, 50):.2f} s) of the restarted run "
        "answering /readyz"
    )


def _samples(engine, phases, t0: datetime, now: datetime, rate: float):
    """hasStarted timers falling due at `rate` a second over each phase, from `t0`; and the phase starts."""
    samples: list[dict[str, datetime]] = []
    offset = 0.0
    # A kept schema holds earlier runs' samples, so link ids differ per run; meeting ids leave
    # room for a 4-character tag only (40 characters in all).
    run = random.choice("qrstuvwxyz") + uuid.uuid4().hex[:2]
    for i, (_, length) in enumerate(phases):
        samples.append(
            insert_timers(
                engine,
                spread(int(length * rate), t0 + timedelta(seconds=offset), length, seed=10 + i),
                now,
                tag=f"{run}{i}",
            )
        )
        offset += length
    starts = [t0 + timedelta(seconds=sum(length for _, length in phases[:i])) for i in range(len(phases))]
    return samples, starts


@contextlib.contextmanager
def _backlog(schema: str, meetings: int):
    """A schema holding `meetings` meetings' timers due days ahead. Named (--schema), it is kept and
    reused by the next run, so runs of two versions of the code share one million-timer load."""
    if not schema:
        with database("postgres") as engine:
            _populate_backlog(engine, meetings)
            yield engine
        return
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        exists = (
            conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"), {"s": schema}
            ).first()
            is not None
        )
        if not exists:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    engine.bench_url, engine.bench_schema = POSTGRES_URL, schema  # type: ignore[attr-defined]
    try:
        _prepare(engine, exists, meetings, f"schema {schema}")
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_backlog(path: str, meetings: int):
    """Like `_backlog`, for --mode run: a named SQLite file (--sqlite) is kept and reused."""
    if not path:
        with database("sqlite") as engine:
            _populate_backlog(engine, meetings)
            yield engine
        return
    exists = Path(path).exists()
    engine = make_engine(f"sqlite:///{path}")
    engine.bench_url, engine.bench_schema = f"sqlite:///{path}", None  # type: ignore[attr-defined]
    try:
        _prepare(engine, exists, meetings, path)
        yield engine
    finally:
        engine.dispose()


def _prepare(engine, exists: bool, meetings: int, where: str) -> None:
    """A new backlog is migrated and populated; a kept one is counted and its samples retired."""
    if not exists:
        upgrade(engine)
        _populate_backlog(engine, meetings)
        return
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM events WHERE status = 'pending'")).scalar_one()
    print(f"  reusing {where}: {pending} pending timers", flush=True)
    _retire_earlier_samples(engine)


def _retire_earlier_samples(engine) -> None:
    """An earlier run's sample meetings still have their hasEnded timers (30 min after the start)
    pending: they would fall due in the middle of this run. The backlog is due a day ahead or later."""
    horizon = datetime.now(UTC) + timedelta(hours=12)
    with engine.begin() as conn:
        gone = conn.execute(
            update(EventRow)
            .where(col(EventRow.status).in_(["pending", "leased"]), col(EventRow.due_at) < horizon)
            .values(status="cancelled")
        ).rowcount
    if gone:
        print(f"  cancelled {gone} timers left by earlier runs", flush=True)


def _populate_backlog(engine, meetings: int) -> None:
    now = datetime.now(UTC)
    with Timer() as t:
        insert_timers(engine, spread(meetings, now + timedelta(days=1), 30 * 86400, seed=1), now, tag="b")
        analyze(engine)
    print(f"  populated {2 * meetings} pending backlog timers in {t.seconds:.1f} s", flush=True)


def _leader(engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT holder FROM leases WHERE name = 'scheduler-leader'")).scalar()


def _sleep_until(when: datetime) -> None:
    delay = (when - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _published(engine, event_ids: list[str]) -> dict[str, datetime | None]:
    found: dict[str, datetime | None] = {}
    with engine.connect() as conn:
        for i in range(0, len(event_ids), 500):
            query = select(EventRow.event_id, EventRow.published_at).where(
                col(EventRow.event_id).in_(event_ids[i : i + 500])
            )
            found.update({row[0]: row[1] for row in conn.execute(query)})
    return found
