"""Resident memory of a relay process with few versus many pending timers.

For each size (--small, then --n) populate an empty database with that many pending timers, all
due days to weeks ahead (bulk Core inserts, chunks of 10k rows), then start a fresh Python process
that runs the relay claim loop as `Scheduler.relay` does (claim every --interval s, limit 500) for
--seconds with nothing due, and reports its peak RSS (getrusage ru_maxrss) and current RSS
(VmRSS in /proc/self/status). Memory must not grow with the number of pending timers: the claim
query is indexed on (status, due_at) and limited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Timer, analyze, backends_of, database, insert_timers, parse_args, spread


def child(url: str, schema: str, seconds: float, interval: float, batch: int) -> None:
    import resource

    from bookingsync.worker.db import make_engine
    from bookingsync.worker.relay import claim

    kwargs = {"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}
    engine = make_engine(url, **kwargs)
    calls, claimed, slowest, end = 0, 0, 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        result = claim(engine, datetime.now(UTC), lease_seconds=30.0, limit=batch)
        slowest = max(slowest, time.perf_counter() - began)
        calls += 1
        claimed += len(result.events)
        time.sleep(max(0.0, interval - (time.perf_counter() - began)))
    status = Path("/proc/self/status").read_text()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")}
    print(
        json.dumps(
            {
                "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "rss_kb": kb["VmRSS"],
                "hwm_kb": kb["VmHWM"],
                "calls": calls,
                "claimed": claimed,
                "slowest_ms": slowest * 1000,
            }
        )
    )


def measure(backend: str, n: int, args) -> dict[str, float]:
    with database(backend) as engine:
        now = datetime.now(UTC)
        with Timer() as t:
            insert_timers(engine, spread(n // 2, now + timedelta(days=1), 30 * 86400), now)
            analyze(engine)
        print(
            f"  {backend:8s} {n:>9,d} pending timers populated in {t.seconds:6.1f} s; relay child runs "
            f"{args.seconds:.0f} s ...",
            flush=True,
        )
        # ru_maxrss survives fork+exec: a child forked from this (large) process would start with our peak.
        # So the child is forked by a small shell that does not exec it (`; exit $?`), not by us.
        cmd = [
            "/bin/sh",
            "-c",
            '"$0" "$@"; exit $?',
            sys.executable,
            __file__,
            "--child",
            engine.bench_url,
            engine.bench_schema or "",
            str(args.seconds),
            str(args.interval),
            str(args.batch),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    print(
        f"  {backend:8s} {n:>9,d} timers: peak RSS {report['peak_kb'] / 1024:7.1f} MiB, current RSS "
        f"{report['rss_kb'] / 1024:7.1f} MiB (VmHWM {report['hwm_kb'] / 1024:.1f}), {report['calls']} claim calls, "
        f"{report['claimed']} claimed, "
        f"slowest claim {report['slowest_ms']:.1f} ms"
    )
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, schema, seconds, interval, batch = sys.argv[2:7]
        child(url, schema, float(seconds), float(interval), int(batch))
        return
    args = parse_args(
        __doc__,
        n=1_000_000,
        backends="sqlite",
        small=(10_000, "the small size"),
        seconds=(15.0, "how long the relay child runs"),
        interval=(0.5, "relay tick, seconds"),
        batch=(500, "claim limit"),
    )
    print(f"memory: relay process RSS with {args.small:,} vs {args.n:,} pending timers, nothing due")
    for backend in backends_of(args):
        small, large = measure(backend, args.small, args), measure(backend, args.n, args)
        print(
            f"  {backend:8s} ratio {args.n:,}/{args.small:,}: peak RSS {large['peak_kb'] / small['peak_kb']:.3f}, "
            f"current RSS {large['rss_kb'] / small['rss_kb']:.3f}"
        )


if __name__ == "__main__":
    main()
