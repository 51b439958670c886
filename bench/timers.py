"""Timer lateness: how long after its due_at the relay claims a timer (--mode claim), and how long after
its due_at a real `bookingsync scheduler` + `worker` on PostgreSQL + Redis publishes it, steady and
across faults (--mode faults).

--mode claim (the default):

The database holds --n pending timers (hasStarted + hasEnded of n/2 booked meetings, in the shape
`store.add_events` writes). --due of the hasStarted timers fall due at random instants spread over
a --window second measurement window; every other timer is due days to weeks ahead (the backlog).
A loop then does what `Scheduler.relay` does in real time: every --interval seconds (fixed-rate,
coalescing a late tick) call `relay.claim(engine, now, lease_seconds, limit)`, again while the batch
comes back full (at most 50 batches a tick). Lateness of a timer = wall time when the claim that
took it committed − its due_at. There is no publisher, so claimed timers stay leased; the lease is
long enough that none is re-claimed during the run.

--mode faults: a PostgreSQL schema with --n pending timers (the backlog, due days ahead), two
`bookingsync scheduler`s and one `bookingsync worker` connected to PostgreSQL through a TCP proxy
of this benchmark and to a redis-server of its own (never the shared ones). Four phases follow,
each with --rate hasStarted timers a second falling due over it: steady (35 s); the leading
scheduler SIGKILLed 3 s in and started again at once (35 s; the other one should take over);
Redis killed and restarted 3 s in (the worker paused for the second before, so messages wait in
the queue), losing every message (35 s); PostgreSQL cut 3 s in for
--outage (20) seconds (the proxy closes and resets everything), the phase lasting outage + 35 s.
Lateness of a timer = its `published_at` (the worker's publish transaction) − its `due_at`, read
from the database afterwards. Goals (issue 13): p99 ≤ 1 s steady, ≤ 3 s across a restart,
≤ outage + 3 s across an outage.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import random
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    POSTGRES_URL,
    Timer,
    analyze,
    backends_of,
    database,
    insert_timers,
    parse_args,
    percentile,
    spread,
)
from sqlalchemy import text

from bookingsync.worker.db import make_engine, upgrade

from bookingsync.worker.relay import claim
from bookingsync.worker.scheduler import MAX_BATCHES_PER_TICK

LEAD_SECONDS = 3.0  # between the end of populating and the first due timer


def populate(engine, n: int, due: int, window: float) -> tuple[dict[str, datetime], datetime, float]:
    now = datetime.now(UTC)
    backlog_meetings = max(0, (n - 2 * due) // 2)
    with Timer() as t:
        insert_timers(
            engine, spread(backlog_meetings, now + timedelta(days=1), 30 * 86400, seed=1), now, tag="b"
        )
        start = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
        sample = insert_timers(engine, spread(due, start, window, seed=2), now, tag="w")
        analyze(engine)
    return sample, start, t.seconds


def relay_loop(
    engine, until: datetime, sample: dict[str, datetime], *, interval: float, batch: int, lease: float
) -> dict[str, float]:
    lateness: dict[str, float] = {}
    claim_ms: list[float] = []
    ticks = batches = claimed_total = 0
    next_tick = time.monotonic()
    while datetime.now(UTC) < until:
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_tick += interval
        if next_tick < time.monotonic():  # coalesce: a tick that overran does not queue up more
            next_tick = time.monotonic() + interval
        ticks += 1
        for _ in range(MAX_BATCHES_PER_TICK):
            began = time.perf_counter()
            claimed = claim(engine, datetime.now(UTC), lease_seconds=lease, limit=batch)
            done = datetime.now(UTC)
            claim_ms.append((time.perf_counter() - began) * 1000)
            batches += 1
            claimed_total += len(claimed.events)
            for event_id in claimed.events:
                due_at = sample.get(event_id)
                if due_at is not None and event_id not in lateness:
                    lateness[event_id] = (done - due_at).total_seconds() * 1000
            if len(claimed.events) < batch:
                break
    return {
        "lateness": lateness,
        "claim_ms": claim_ms,
        "ticks": ticks,
        "batches": batches,
        "claimed": claimed_total,
    }


def run(backend: str, args) -> dict[str, float]:
    with database(backend) as engine:
        sample, start, seconds = populate(engine, args.n, args.due, args.window)
        print(
            f"  {backend:8s} populated {args.n} pending timers in {seconds:.1f} s; measuring for "
            f"{args.window:.0f} s ...",
            flush=True,
        )
        until = start + timedelta(seconds=args.window + 2)
        out = relay_loop(engine, until, sample, interval=args.interval, batch=args.batch, lease=args.lease)
    late = list(out["lateness"].values())
    result = {
        "timers": len(late),
        "missed": len(sample) - len(late),
        "p50": percentile(late, 50),
        "p99": percentile(late, 99),
        "max": max(late, default=float("nan")),
        "claim p50": percentile(out["claim_ms"], 50),
        "claim p99": percentile(out["claim_ms"], 99),
        "claim max": max(out["claim_ms"]),
        "ticks": out["ticks"],
        "batches": out["batches"],
        "claimed": out["claimed"],
    }
    print(
        f"  {backend:8s} claimed {result['timers']} of {len(sample)} sample timers ({result['missed']} not claimed), "
        f"{result['ticks']} ticks, {result['batches']} claim calls, {result['claimed']} events claimed in all"
    )
    return result


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
            samples: list[dict[str, datetime]] = []
            offset = 0.0
            # A kept schema holds earlier runs' samples, so link ids differ per run; meeting ids leave
            # room for a 4-character tag only (40 characters in all).
            run = random.choice("qrstuvwxyz") + uuid.uuid4().hex[:2]
            for i, (_, length) in enumerate(phases):
                samples.append(
                    insert_timers(
                        engine,
                        spread(int(length * args.rate), t0 + timedelta(seconds=offset), length, seed=10 + i),
                        now,
                        tag=f"{run}{i}",
                    )
                )
                offset += length
            starts = [
                t0 + timedelta(seconds=sum(length for _, length in phases[:i])) for i in range(len(phases))
            ]
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
        if not exists:
            upgrade(engine)
            _populate_backlog(engine, meetings)
        else:
            with engine.connect() as conn:
                pending = conn.execute(
                    text("SELECT count(*) FROM events WHERE status = 'pending'")
                ).scalar_one()
            print(f"  reusing schema {schema}: {pending} pending timers", flush=True)
        yield engine
    finally:
        engine.dispose()


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
        for i in range(0, len(event_ids), 1000):
            rows = conn.execute(
                text("SELECT event_id, published_at FROM events WHERE event_id = ANY(:ids)"),
                {"ids": event_ids[i : i + 1000]},
            ).all()
            found.update({row[0]: row[1] for row in rows})
    return found


def main() -> None:
    args = parse_args(
        __doc__,
        n=100_000,
        due=(3000, "timers falling due during the window (claim)"),
        window=(60.0, "measurement window, seconds (claim)"),
        interval=(0.5, "relay tick, seconds (claim)"),
        batch=(500, "claim limit (scheduler batch_size) (claim)"),
        lease=(3600.0, "lease seconds (long: nothing publishes, so nothing should be re-claimed) (claim)"),
        mode=("claim", "claim: the relay's claim loop alone; faults: real processes and faults"),
        rate=(10.0, "hasStarted timers falling due per second (faults)"),
        outage=(20.0, "seconds PostgreSQL is cut (faults)"),
        schema=("", "PostgreSQL schema to keep and reuse across runs (faults; default: a throwaway one)"),
        populate_only=(False, "only create and fill --schema, then exit (faults)"),
    )
    if args.mode == "faults":
        print(
            f"timers (faults): {args.n} pending timers on PostgreSQL, {args.rate:g} due a second, scheduler + worker "
            f"+ own Redis, PostgreSQL through a proxy"
        )
        faults(args)
        return
    print(
        f"timers: {args.n} pending timers, {args.due} due over {args.window:.0f} s, relay every {args.interval} s, "
        f"limit {args.batch}"
    )
    results = {backend: run(backend, args) for backend in backends_of(args)}
    print()
    print(
        f"{'backend':10s}{'timers':>8s}{'p50 ms':>10s}{'p99 ms':>10s}{'max ms':>10s}"
        f"{'claim p50 ms':>14s}{'claim p99 ms':>14s}{'claim max ms':>14s}"
    )
    for backend, r in results.items():
        print(
            f"{backend:10s}{r['timers']:8d}{r['p50']:10.1f}{r['p99']:10.1f}{r['max']:10.1f}"
            f"{r['claim p50']:14.1f}{r['claim p99']:14.1f}{r['claim max']:14.1f}"
        )


if __name__ == "__main__":
    main()
