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

--mode run: an SQLite file with --n pending timers and one `bookingsync run` (in-process broker)
on it. Two phases with --rate hasStarted timers a second falling due: steady (35 s), then `run`
SIGKILLed 3 s in and started again at once (35 s): the restarted process leads as soon as it is
up (the dead one's OS file lock went with it) and hands out again what the dead one had leased.
Lateness as in --mode faults (`published_at` − `due_at`); the restart's own start-up time counts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from common import Timer, analyze, backends_of, database, insert_timers, parse_args, percentile, spread
from timers_live import embedded, faults

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


def main() -> None:
    args = parse_args(
        __doc__,
        n=100_000,
        due=(3000, "timers falling due during the window (claim)"),
        window=(60.0, "measurement window, seconds (claim)"),
        interval=(0.5, "relay tick, seconds (claim)"),
        batch=(500, "claim limit (scheduler batch_size) (claim)"),
        lease=(3600.0, "lease seconds (long: nothing publishes, so nothing should be re-claimed) (claim)"),
        mode=(
            "claim",
            "claim: the relay's claim loop alone; faults: real processes and faults on PostgreSQL + Redis; "
            "run: `bookingsync run` on SQLite, steady and across a SIGKILL + restart",
        ),
        rate=(10.0, "hasStarted timers falling due per second (faults, run)"),
        outage=(20.0, "seconds PostgreSQL is cut (faults)"),
        schema=("", "PostgreSQL schema to keep and reuse across runs (faults; default: a throwaway one)"),
        sqlite=("", "SQLite file to keep and reuse across runs (run; default: a throwaway one)"),
        populate_only=(False, "only create and fill --schema / --sqlite, then exit (faults, run)"),
    )
    if args.mode == "run":
        print(
            f"timers (run): {args.n} pending timers on SQLite, {args.rate:g} due a second, `bookingsync run`"
        )
        embedded(args)
        return
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
