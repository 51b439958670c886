"""End to end: N meetings booked at the Leezy simulator → N `meeting.booked` verified at a subscriber.

The sandbox (`bookingsync sandbox`) and bench/sink.py (verifying every delivery with the
`standardwebhooks` library) run as their own processes; bookingsync reads the simulator by polling
(`poll_interval_seconds = 1`, at --requests-per-minute: the default pace, Leezy's Starter plan of 100
requests a minute, would measure that plan, not us) and delivers to the sink:

  sqlite    `bookingsync run` (SQLite, in-process broker)
  postgres  `bookingsync web` + `scheduler` + --workers × `worker` (PostgreSQL + Redis)

Once everything is up, N meetings (a day ahead, so only `booked` is due) are created through the
simulator's control API, 100 per call (`POST /_sandbox/meetings/bulk`); each one's change time is
when its call returned.
Figures: meetings/s (N ÷ (last arrival − first change)) and the p50/p99/max latency from a
meeting's change at the provider to its `booked` arriving at the subscriber.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import backends_of, database, iso, parse_args, percentile, service_stack
from services import start_roles, wait_until


def book_all(leezy: str, n: int, batch: int = 100) -> dict[str, float]:
    """Create n meetings at the simulator, `batch` per control call; {external id: when its call returned}."""
    changed: dict[str, float] = {}
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with httpx.Client(timeout=60) as client:
        for first in range(0, n, batch):
            meetings = []
            for i in range(first, min(n, first + batch)):
                start = base + timedelta(minutes=15 * i)
                meetings.append(
                    {
                        "title": f"Demo call #{i}",
                        "start": iso(start),
                        "end": iso(start + timedelta(minutes=30)),
                        "timezone": "Europe/Berlin",
                        "attendee_email": f"prospect.{i}@example.com",
                        "attendee_name": f"Prospect {i}",
                    }
                )
            response = client.post(f"{leezy}/_sandbox/meetings/bulk", json={"meetings": meetings})
            response.raise_for_status()
            at = time.time()
            changed.update((item["id"], at) for item in response.json()["meetings"])
    return changed


def run(backend: str, n: int, args: Any) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bookingsync-pipeline-") as tmp,
        database(backend) as engine,
        service_stack(
            backend,
            engine,
            Path(tmp),
            lambda config: start_roles(backend, config, Path(tmp), workers=args.workers, web=True),
            connection=f"poll_interval_seconds = 1\noptions = {{ requests_per_minute = {args.requests_per_minute:g} }}",
        ) as stack,
    ):
        sink = stack.sink
        time.sleep(1)
        changed = book_all(stack.leezy, n)
        first = min(changed.values())
        booking = max(changed.values()) - first
        try:
            wait_until(
                lambda: sink.stats()["distinct"] >= n, args.timeout, "every booked event", interval=0.2
            )
        except RuntimeError as exc:
            print(f"  ! {exc}")
        time.sleep(0.5)
        arrivals: dict[str, float] = {}
        for _, at, external_id in sink.items():
            if external_id in changed:
                arrivals.setdefault(external_id, at)
        stats = sink.stats()
        latencies = [arrivals[m] - changed[m] for m in arrivals]
        last = max(arrivals.values(), default=first)
        result = {
            "rate": len(arrivals) / max(last - first, 1e-9),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
            "missing": n - len(arrivals),
            "duplicates": stats["duplicates"],
            "rejected": stats["rejected"],
            "booking": booking,
        }
        print(
            f"  {backend:8s} {n} meetings (created in {booking:.1f} s): {last - first:7.2f} s "
            f"{result['rate']:7.0f} meetings/s, change→receipt p50 {result['p50']:.2f} s p99 "
            f"{result['p99']:.2f} s max {result['max']:.2f} s; missing {result['missing']}, "
            f"duplicates {result['duplicates']}, rejected {result['rejected']}",
            flush=True,
        )
        return result


def main() -> None:
    args = parse_args(
        __doc__,
        n=2000,
        workers=(2, "bookingsync worker processes on PostgreSQL"),
        timeout=(600.0, "give up waiting after this many seconds"),
        requests_per_minute=(
            6000.0,
            "our pace at the simulator (options.requests_per_minute); Leezy's Starter plan, the "
            "default, allows 100: 100 meetings a page caps polling at 167 meetings/s whatever we do",
        ),
    )
    print(
        f"pipeline: {args.n} meetings at the Leezy simulator → meeting.booked at a verifying subscriber, "
        f"read at up to {args.requests_per_minute:g} requests/min (machine shared: figures are noisy)"
    )
    results = {backend: run(backend, args.n, args) for backend in backends_of(args)}
    print()
    print(f"{'':10s}{'meetings/s':>11s}{'p50 s':>8s}{'p99 s':>8s}{'max s':>8s}{'missing':>9s}{'dupes':>7s}")
    for backend, r in results.items():
        print(
            f"{backend:10s}{r['rate']:11.1f}{r['p50']:8.2f}{r['p99']:8.2f}{r['max']:8.2f}{r['missing']:9d}"
            f"{r['duplicates']:7d}"
        )


if __name__ == "__main__":
    main()
