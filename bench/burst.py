"""A burst larger than memory: N `booked` events due at the same instant, published in bounded memory.

For --small and then --n due events (meetings, links and events written with Core, as
bench/egress.py does), start `bookingsync run` (SQLite; `--backend postgres` runs scheduler +
worker on PostgreSQL + Redis) with no subscriptions, so every event is claimed, numbered, given
its body and published, and nothing else happens; wait until all are published; then read the
processes' peak resident memory (VmHWM in /proc/<pid>/status). The relay keeps at most
`scheduler.max_in_flight` events leased at once, so the peak must not grow with N.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import analyze, backends_of, database, parse_args
from egress import insert_burst
from services import (
    REDIS_URL,
    Proc,
    config_text,
    database_url,
    flush_redis,
    free_port,
    start_roles,
    stop_all,
    wait_started,
    wait_until,
)
from sqlalchemy import text


def peak_mib(proc: Proc) -> float:
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


def run(backend: str, n: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bookingsync-burst-") as tmp, database(backend) as engine:
        log_dir = Path(tmp)
        began = time.perf_counter()
        insert_burst(engine, n, datetime.now(UTC) + timedelta(days=1))
        analyze(engine)
        loaded = time.perf_counter() - began
        port = free_port()
        if backend == "postgres":
            flush_redis()
        config = log_dir / "bookingsync.toml"
        config.write_text(
            config_text(
                db_url=database_url(engine),
                port=port,
                subscriptions=[],
                broker_url="memory://" if backend == "sqlite" else REDIS_URL,
            )
        )
        procs = start_roles(backend, config, log_dir, workers=1, web=False)
        try:
            wait_started(procs, port)
            baseline = {p.name: peak_mib(p) for p in procs}
            with engine.begin() as conn:
                conn.execute(text("UPDATE events SET due_at = :now"), {"now": datetime.now(UTC)})
            began = time.perf_counter()

            def published() -> bool:
                with engine.connect() as conn:
                    return (
                        conn.execute(text("SELECT count(*) FROM events WHERE status = 'published'")).scalar()
                        >= n
                    )

            wait_until(published, timeout, f"{n} events published", interval=0.5)
            seconds = time.perf_counter() - began
            peaks = {p.name: peak_mib(p) for p in procs}
        finally:
            stop_all(procs)
            if backend == "postgres":
                flush_redis()
    print(
        f"  {backend:8s} {n:>8,d} due events: loaded in {loaded:5.1f} s, published in {seconds:6.1f} s "
        f"({n / seconds:6.0f}/s); peak RSS "
        + ", ".join(f"{k} {v:.0f} MiB (at start {baseline[k]:.0f})" for k, v in peaks.items()),
        flush=True,
    )
    return {"peak": max(peaks.values()), "rate": n / seconds}


def main() -> None:
    args = parse_args(
        __doc__,
        n=200_000,
        backends="sqlite",
        small=(20_000, "the small burst"),
        timeout=(1200.0, "give up after this many seconds"),
    )
    print(
        f"burst: {args.small:,} vs {args.n:,} events due at once, published with no subscriptions "
        "(machine shared: figures are noisy)"
    )
    for backend in backends_of(args):
        small, large = run(backend, args.small, args.timeout), run(backend, args.n, args.timeout)
        print(f"  {backend:8s} peak RSS ratio {args.n:,}/{args.small:,}: {large['peak'] / small['peak']:.3f}")


if __name__ == "__main__":
    main()
