"""Timer lateness: how long after its due_at the relay claims a timer, with a 100k-timer backlog.

The database holds --n pending timers (hasStarted + hasEnded of n/2 booked meetings, in the shape
`store.add_events` writes). --due of the hasStarted timers fall due at random instants spread over
a --window second measurement window; every other timer is due days to weeks ahead (the backlog).
A loop then does what `Scheduler.relay` does in real time: every --interval seconds (fixed-rate,
coalescing a late tick) call `relay.claim(engine, now, lease_seconds, limit)`, again while the batch
comes back full (at most 50 batches a tick). Lateness of a timer = wall time when the claim that
took it committed − its due_at. There is no publisher, so claimed timers stay leased; the lease is
long enough that none is re-claimed during the run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from common import Timer, analyze, backends_of, database, insert_timers, parse_args, percentile, spread

from bookingsync.worker.relay import claim
from bookingsync.worker.scheduler import MAX_BATCHES_PER_TICK

LEAD_SECONDS = 3.0  # between the end of populating and the first due timer


def populate(engine, n: int, due: int, window: float) -> tuple[dict[str, datetime], datetime, float]:
    now = datetime.now(UTC)
    backlog_meetings = max(0, (n - 2 * due) // 2)
    with Timer() as t:
        insert_timers(engine, spread(backlog_meetings, now + timedelta(days=1), 30 * 86400, seed=1), now, tag="b")
        start = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
        sample = insert_timers(engine, spread(due, start, window, seed=2), now, tag="w")
        analyze(engine)
    return sample, start, t.seconds


def relay_loop(engine, until: datetime, sample: dict[str, datetime], *, interval: float, batch: int,
               lease: float) -> dict[str, float]:
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
    return {"lateness": lateness, "claim_ms": claim_ms, "ticks": ticks, "batches": batches,
            "claimed": claimed_total}


def run(backend: str, args) -> dict[str, float]:
    with database(backend) as engine:
        sample, start, seconds = populate(engine, args.n, args.due, args.window)
        print(f"  {backend:8s} populated {args.n} pending timers in {seconds:.1f} s; measuring for "
              f"{args.window:.0f} s ...", flush=True)
        until = start + timedelta(seconds=args.window + 2)
        out = relay_loop(engine, until, sample, interval=args.interval, batch=args.batch, lease=args.lease)
    late = list(out["lateness"].values())
    result = {"timers": len(late), "missed": len(sample) - len(late), "p50": percentile(late, 50),
              "p99": percentile(late, 99), "max": max(late, default=float("nan")),
              "claim p50": percentile(out["claim_ms"], 50), "claim p99": percentile(out["claim_ms"], 99),
              "claim max": max(out["claim_ms"]), "ticks": out["ticks"], "batches": out["batches"],
              "claimed": out["claimed"]}
    print(f"  {backend:8s} claimed {result['timers']} of {len(sample)} sample timers ({result['missed']} not claimed), "
          f"{result['ticks']} ticks, {result['batches']} claim calls, {result['claimed']} events claimed in all")
    return result


def main() -> None:
    args = parse_args(__doc__, n=100_000, due=(3000, "timers falling due during the window"),
                      window=(60.0, "measurement window, seconds"), interval=(0.5, "relay tick, seconds"),
                      batch=(500, "claim limit (scheduler batch_size)"),
                      lease=(3600.0, "lease seconds (long: nothing publishes, so nothing should be re-claimed)"))
    print(f"timers: {args.n} pending timers, {args.due} due over {args.window:.0f} s, relay every {args.interval} s, "
          f"limit {args.batch}")
    results = {backend: run(backend, args) for backend in backends_of(args)}
    print()
    print(f"{'backend':10s}{'timers':>8s}{'p50 ms':>10s}{'p99 ms':>10s}{'max ms':>10s}"
          f"{'claim p50 ms':>14s}{'claim p99 ms':>14s}{'claim max ms':>14s}")
    for backend, r in results.items():
        print(f"{backend:10s}{r['timers']:8d}{r['p50']:10.1f}{r['p99']:10.1f}{r['max']:10.1f}"
              f"{r['claim p50']:14.1f}{r['claim p99']:14.1f}{r['claim max']:14.1f}")


if __name__ == "__main__":
    main()
