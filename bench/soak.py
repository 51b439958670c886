"""Soak: the service under steady churn for --minutes, its footprint sampled, slopes and projections.

    .venv/bin/python bench/soak.py --minutes 60 --rate 5 [--mode sqlite|postgres|both]
        [--meetings 2000] [--retention-minutes M] [--tracemalloc] [--out DIR]

Real processes, as a user runs them (bench/services.py): the sandbox's simulators, bench/sink.py as
a subscriber verifying every signature, and

  sqlite    `bookingsync run` (SQLite file, in-process broker)
  postgres  `bookingsync web` + `worker` + `scheduler` (PostgreSQL schema of its own + Redis
            `BOOKINGSYNC_BENCH_REDIS_URL`, flushed before and after)

One Leezy connection holds --meetings meetings, polled every --poll-seconds and also pushing its
signed webhooks to bookingsync. A driver changes --rate meetings a second through the simulator's
control API: 60 % reschedules (to 1–90 minutes ahead, so hasStarted/hasEnded timers keep falling
due during the run), 25 % title edits, 15 % cancellations each replaced by a new booking, so the
live set stays the same size while history grows. Meetings are booked 5 minutes to
--horizon-minutes (6 h) ahead; a cancelled meeting is kept until its end plus the window (a
provider may list it until then), so with a short --retention-minutes the database levels off
about horizon + 30 minutes + window after the start: `--horizon-minutes 45` shows it within 90.

Every --sample-seconds (60) it samples each bookingsync process (RSS, CPU % of one core since
the last sample, open descriptors, threads), the database's size on disk (SQLite: file + WAL;
PostgreSQL: tables, indexes and TOAST of the schema, and per table its size, dead tuples and
autovacuum runs) and its row counts, the CPU milliseconds per change of all bookingsync processes
together, and the machine's load average (the machine may be shared: CPU figures are noisy, memory
and disk are what a soak is for). At the end it prints, for each series, the first value, the
value after warm-up, the last value, the least-squares slope per hour over the samples after
--warmup-minutes, and the 30-day projection (last + slope × 720 h); writes the samples as JSON
and a PNG plot (matplotlib, `pip install -e '.[bench]'`) into --out.

Retention runs with the shipped defaults (windows of days: a run of an hour shows the database
growing at the rate of one day's history) unless --retention-minutes M sets every window to M
minutes and prunes every minute, which shows within the run where the file levels off.

--tracemalloc runs each process under bench/traced.py (a snapshot per sample) and prints the
allocation sites that grew most; its RSS and CPU include tracemalloc's own cost. `--tracemalloc
types` only counts live objects by type per sample (cheap) and prints the types that grew.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import Stack, database, iso, service_stack
from soak_figures import Sampler, plot, summarise
from services import BIN, Proc
from sqlalchemy import Engine

LEEZY_SECRET = "lzy_ws_soak_secret_0123456789"


def churn(
    leezy: str, ids: list[str], rate: float, horizon: float, stop: threading.Event, counts: dict[str, int]
) -> None:
    """`rate` changes a second at the simulator until `stop`; counts what it did (and what failed).
    Reschedules and new bookings go up to `horizon` minutes ahead (reschedules at most 90)."""
    rng = random.Random(18)
    with httpx.Client(base_url=f"{leezy}/_sandbox", timeout=30) as client:
        began, n = time.monotonic(), 0
        while not stop.is_set():
            n += 1
            delay = began + n / rate - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            index = rng.randrange(len(ids))
            roll = rng.random()
            try:
                if roll < 0.60:
                    start = datetime.now(UTC) + timedelta(minutes=rng.uniform(1, min(90.0, horizon)))
                    response = client.post(
                        f"/meetings/{ids[index]}/reschedule",
                        json={"start": iso(start), "end": iso(start + timedelta(minutes=30))},
                    )
                    kind = "rescheduled"
                elif roll < 0.85:
                    response = client.patch(f"/meetings/{ids[index]}", json={"title": f"Demo call, edit {n}"})
                    kind = "edited"
                else:
                    response = client.post(f"/meetings/{ids[index]}/cancel", json={"reason": "soak churn"})
                    response.raise_for_status()
                    ids[index] = book(client, [n], horizon)[0]
                    kind = "replaced"
                response.raise_for_status()
                counts[kind] = counts.get(kind, 0) + 1
            except httpx.HTTPError:
                counts["failed"] = counts.get("failed", 0) + 1


def book(client: httpx.Client, numbers: list[int], horizon: float) -> list[str]:
    base = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(numbers[0])
    meetings = []
    for i in numbers:
        start = base + timedelta(minutes=rng.uniform(min(5.0, horizon / 2), horizon))
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
    response = client.post("/meetings/bulk", json={"meetings": meetings})
    response.raise_for_status()
    return [item["id"] for item in response.json()["meetings"]]


def seed(leezy: str, n: int, horizon: float) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=f"{leezy}/_sandbox", timeout=60) as client:
        for first in range(0, n, 200):
            ids += book(client, list(range(1_000_000 + first, 1_000_000 + min(n, first + 200))), horizon)
    return ids


def retention_extra(minutes: float | None) -> tuple[str, str]:
    """[retention] with every window `minutes` long, pruned each minute, and the [events] line
    that goes with it (timers re-set within a minute); nothing: the shipped defaults."""
    if minutes is None:
        return "", ""
    days = minutes / 1440
    return (
        f"[retention]\ninterval_seconds = 60\nreceipt_bodies_days = {days}\nreceipts_days = {days}\n"
        f"events_days = {days}\ncancelled_days = {days}\nmeetings_days = {days}\nquarantine_days = {days}\n",
        "grace_seconds = 60",
    )


def start(
    mode: str,
    config: Path,
    log_dir: Path,
    traced: str | None,
    every: float,
    frames: int,
    trace_roles: set[str] | None = None,
) -> list[Proc]:
    roles = ["run"] if mode == "sqlite" else ["scheduler", "worker", "web"]
    procs = []
    for role in roles:
        argv = [str(BIN), role, "--config", str(config)]
        if traced and (trace_roles is None or role in trace_roles):
            argv = [
                sys.executable,
                str(Path(__file__).parent / "traced.py"),
                "--out",
                str(log_dir / f"snap-{role}"),
                "--every",
                str(every),
                *(["--types"] if traced == "types" else ["--frames", str(frames)]),
                "--",
                role,
                "--config",
                str(config),
            ]
        procs.append(Proc(role, argv, log_dir))
    return procs


def soak(mode: str, args: argparse.Namespace, out: Path) -> None:
    backend = "sqlite" if mode == "sqlite" else "postgres"
    retention, events = retention_extra(args.retention_minutes)
    stop = threading.Event()
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="bookingsync-soak-") as tmp, database(backend) as engine:
        log_dir = Path(tmp)
        try:
            with service_stack(
                backend,
                engine,
                log_dir,
                lambda config: start(
                    mode,
                    config,
                    log_dir,
                    args.tracemalloc,
                    args.sample_seconds,
                    args.frames,
                    set(args.trace_roles.split(",")) if args.trace_roles else None,
                ),
                connection=f'webhook_secret = "{LEEZY_SECRET}"\npoll_interval_seconds = {args.poll_seconds}',
                extra=retention,
                events=events,
            ) as stack:
                procs = stack.procs
                run_soak(mode, args, out, stack, engine, backend, stop, log_dir)
        finally:
            stop.set()
            if args.tracemalloc:
                for proc in procs:
                    snaps = log_dir / f"snap-{proc.name}"
                    if not snaps.exists():
                        continue
                    # Kept beside the figures: the temp dir goes, a later --compare may be wanted.
                    shutil.copytree(snaps, out / f"snap-{mode}-{proc.name}", dirs_exist_ok=True)
                    print(f"\n== tracemalloc growth, {proc.name} ==", flush=True)
                    subprocess.run(
                        [
                            sys.executable,
                            str(Path(__file__).parent / "traced.py"),
                            "--compare",
                            str(snaps),
                            "--skip",
                            str(args.snapshot_skip),
                        ],
                        check=False,
                    )


def run_soak(
    mode: str,
    args: argparse.Namespace,
    out: Path,
    stack: Stack,
    engine: Engine,
    backend: str,
    stop: threading.Event,
    log_dir: Path,
) -> None:
    """Subscribe bookingsync to the simulator's webhooks, seed, churn and sample until the end."""
    procs, sink, leezy = stack.procs, stack.sink, stack.leezy
    httpx.post(
        f"{leezy}/_sandbox/webhooks",
        json={
            "target_url": f"http://127.0.0.1:{stack.port}/webhooks/leezy",
            "secret": LEEZY_SECRET,
            "event_types": ["meeting.scheduled", "meeting.cancelled", "meeting.completed"],
        },
    ).raise_for_status()
    ids = seed(leezy, args.meetings, args.horizon_minutes)
    db_path = Path(engine.bench_url.removeprefix("sqlite:///")) if backend == "sqlite" else None  # type: ignore[attr-defined]
    sampler = Sampler(procs, engine, db_path)
    counts: dict[str, int] = {}
    driver = threading.Thread(
        target=churn, args=(leezy, ids, args.rate, args.horizon_minutes, stop, counts), daemon=True
    )
    driver.start()
    print(
        f"{mode}: {args.meetings} meetings, {args.rate:g} changes/s, poll every {args.poll_seconds:g} s, "
        f"{args.minutes:g} min; logs in {log_dir}",
        flush=True,
    )
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
        for proc in procs:
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited\n{proc.tail()}")
        row = sampler.sample(
            {
                "changes": sum(v for k, v in counts.items() if k != "failed"),
                "delivered": sink.stats()["received"],
            }
        )
        rss = " ".join(
            f"{p.name} {row[p.name + '.rss_mb']:.0f}MiB/{row[p.name + '.cpu_pct']:.0f}%/{row[p.name + '.fds']}fd"
            for p in procs
        )
        print(
            f"  {row['minutes']:6.1f} min  {rss}  {row['cpu_ms_per_change']:.1f} ms/change  "
            f"db {row['db_mb']:.1f} MiB  events {row['rows.events']}  changes {row['changes']}  "
            f"delivered {row['delivered']}  load {row['load1']:.1f}",
            flush=True,
        )
    stop.set()
    driver.join(30)
    rows = sampler.rows
    warmup = args.warmup_minutes if args.warmup_minutes is not None else min(10.0, args.minutes / 4)
    report = summarise(mode, rows, warmup)
    report.append(f"  driver: {counts}; subscriber: {sink.stats()}")
    print("\n".join(report), flush=True)
    (out / f"soak-{mode}.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(out)}, "rows": rows}, indent=1, default=str)
    )
    (out / f"soak-{mode}.txt").write_text("\n".join(report) + "\n")
    try:
        plot(mode, rows, out / f"soak-{mode}.png")
        print(f"  plot: {out / f'soak-{mode}.png'}")
    except ImportError:
        print("  (no plot: pip install -e '.[bench]' for matplotlib)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5.0, help="meeting changes per second at the provider")
    parser.add_argument("--mode", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--meetings", type=int, default=2000)
    parser.add_argument(
        "--horizon-minutes",
        type=float,
        default=360.0,
        help="how far ahead meetings are booked (reschedules: at most 90 min); the database levels off "
        "about horizon + 30 min + the retention window after the start",
    )
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument(
        "--warmup-minutes", type=float, default=None, help="default: a quarter of the run, ≤ 10"
    )
    parser.add_argument(
        "--retention-minutes",
        type=float,
        default=None,
        help="every retention window this many minutes, pruned each minute (default: shipped days)",
    )
    parser.add_argument(
        "--tracemalloc",
        nargs="?",
        const="trace",
        choices=["trace", "types"],
        default=None,
        help="trace allocations (slow), or `types`: count live objects by type (see bench/traced.py)",
    )
    parser.add_argument(
        "--trace-roles",
        default=None,
        help="with --tracemalloc: only these roles, comma-separated (e.g. scheduler); default all",
    )
    parser.add_argument("--frames", type=int, default=4, help="tracemalloc frames per allocation")
    parser.add_argument(
        "--snapshot-skip", type=int, default=2, help="warm-up snapshots left out of the comparison"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the JSON and PNG go (default: a new temp dir)"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the processes, the schema and the Redis database are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out or Path(tempfile.mkdtemp(prefix="bookingsync-soak-out-"))
    out.mkdir(parents=True, exist_ok=True)
    for mode in ["sqlite", "postgres"] if args.mode == "both" else [args.mode]:
        soak(mode, args, out)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
