"""Polling at volume: does a rate-limited read hold the pipeline, and does a poll stay bounded under churn?

Everything runs in this process as `bookingsync run` does (SQLite, the in-process broker, the
scheduler, worker threads), against the sandbox simulators, with a local subscriber that records
when each `meeting.booked` arrives.

* `ratelimited`: N Leezy meetings behind a connection paced at --rpm requests/min with pages of
  --page; polls every 2 s. Figures: time to the first and to the last `booked` delivery, and
  the floor for the last one (the pages the rate allows: N/page requests at rpm/60 per second).
  Ratio = last / floor (1.0 is the provider's rate being the only limit).
* `churn`: 500 Leezy meetings, then --rate changes/s for --seconds (moves of existing meetings
  plus one new meeting every second); polls every 5 s. Figures, minute by minute: requests per
  poll (from the simulator's request log, a poll being a burst of requests) and a new meeting's
  time from booking to its `booked` delivery.

* `watchlist`: --emails watched LeanData emails at --rate requests/s (each last read up to one
  round ago, as in a deployment that has run a while), one of them with a meeting starting in
  8 minutes, beside a fast Leezy; both polled every 2 s for --seconds. Figures: each email's
  staleness when read (seconds since its previous read) against the floor (list / rate) and the
  schedule's own promise (`bookingsync status`), the soon meeting's largest gap between reads,
  and the jitter of Leezy's interval (gaps between its list requests).

Runs on whatever code is checked out (`main` for the "before" figures): it uses only the
runtime's public pieces, and `start_workers` / `worker.poll_threads` only where they exist.

    python bench/polling.py ratelimited --n 2000 --rpm 600 --page 20
    python bench/polling.py churn --rate 20 --seconds 120
    python bench/polling.py watchlist --emails 500 --rate 5 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bookingsync.sandbox.server import start_sandbox
from bookingsync.worker import broker as broker_module
from bookingsync.worker.actors import declare
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, upgrade
from bookingsync.worker.runtime import Runtime, install
from bookingsync.worker.scheduler import Scheduler

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Sink:
    """A subscriber that notes when each meeting's `booked` arrived (by the Leezy id it links)."""

    def __init__(self) -> None:
        self.booked: dict[str, float] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if body.get("type") == "meeting.booked":
                    for link in body["data"]["meeting"]["links"]:
                        with sink.lock:
                            sink.booked.setdefault(link["external_id"], time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()


def start(
    tmp: str,
    sandbox: Any,
    sink: Sink,
    connection: dict[str, Any] | list[dict[str, Any]],
    threads: int = 4,
    before: Any = None,
) -> tuple[Any, ...]:
    """`bookingsync run` in this process; `before(config, engine)` runs once the schema exists."""
    connections = connection if isinstance(connection, list) else [connection]
    config = parse_config(
        {
            "allow_private_targets": True,
            "database": {"url": f"sqlite:///{tmp}/bench.db"},
            "events": {"console": False},
            "worker": {"threads": threads},
            "connections": connections,
            "subscriptions": [
                {"id": "sink", "url": sink.url, "secret": SECRET, "events": ["meeting.booked"]}
            ],
        },
        environ={},
    )
    engine = make_engine(config.database.url)
    upgrade(engine)
    if before is not None:
        before(config, engine)
    rt = install(Runtime(config=config, engine=engine, clock=SystemClock(), role="run"))
    broker = broker_module.make_broker("memory://")
    rt.actors = declare(broker)
    if hasattr(broker_module, "start_workers"):  # this branch: a pool for polls beside the pipeline's
        workers = broker_module.start_workers(broker, threads, config.worker.poll_threads)
    else:  # main before issue 12: one pool for everything
        workers = broker_module.start_worker(broker, threads)
    scheduler = Scheduler(rt)
    scheduler.start()
    return rt, workers, scheduler


def stop(rt: Any, workers: Any, scheduler: Any) -> None:
    scheduler.stop()
    workers.stop()
    rt.close()


def ratelimited(args: argparse.Namespace) -> None:
    import tempfile

    sandbox, sink = start_sandbox(), Sink()
    begin = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    ids = [
        sandbox.leezy.book(
            f"Bench {i}",
            begin + timedelta(minutes=i % 600),
            begin + timedelta(minutes=i % 600 + 30),
            "UTC",
            f"lead{i}@example.com",
        )
        for i in range(args.n)
    ]
    connection = {
        "id": "leezy-bench",
        "provider": "leezy",
        "base_url": sandbox.leezy_url,
        "token": sandbox.leezy_token,
        "poll_interval_seconds": 2,
        "page_size": args.page,
        "options": {"requests_per_minute": float(args.rpm)},
    }
    floor = args.n / args.page / (args.rpm / 60.0)
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        started = time.monotonic()
        running = start(tmp, sandbox, sink, connection)
        deadline = started + max(60.0, floor * 4)
        while time.monotonic() < deadline and len(sink.booked) < args.n:
            time.sleep(0.5)
        stop(*running)
    sandbox.stop()
    sink.stop()
    times = sorted(sink.booked.values())
    first = times[0] - started if times else float("nan")
    last = times[-1] - started if len(times) == args.n else float("nan")
    print(
        f"ratelimited: {args.n} meetings, pages of {args.page}, {args.rpm} requests/min; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"  booked delivered: {len(times)}/{args.n}; first after {first:.1f} s; last after {last:.1f} s")
    print(f"  floor (pages at the allowed rate): {floor:.1f} s; ratio last/floor: {last / floor:.2f}")
    requests = [r for r in sandbox.leezy.requests.entries() if r.path == "/api/v1/meetings"]
    print(
        f"  list requests: {len(requests)} ({len(requests) / (args.n / args.page):.2f} per page of the data); "
        f"429s: {sum(r.status == 429 for r in requests)}"
    )
    del ids


def churn(args: argparse.Namespace) -> None:
    import random
    import tempfile

    sandbox, sink = start_sandbox(), Sink()
    begin = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    existing = [
        sandbox.leezy.book(f"Base {i}", begin, begin + timedelta(minutes=30), "UTC", f"base{i}@example.com")
        for i in range(500)
    ]
    connection = {
        "id": "leezy-bench",
        "provider": "leezy",
        "base_url": sandbox.leezy_url,
        "token": sandbox.leezy_token,
        "poll_interval_seconds": 5,
        "options": {"requests_per_minute": 600.0},
    }
    created: dict[str, float] = {}
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        running = start(tmp, sandbox, sink, connection)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.seconds:
            tick = time.monotonic()
            for _ in range(args.rate - 1):  # moves: a reschedule bumps updated_at
                victim = rng.choice(existing)
                shift = timedelta(minutes=rng.randint(1, 600))
                sandbox.leezy.reschedule(victim, begin + shift, begin + shift + timedelta(minutes=30))
            new = sandbox.leezy.book(
                f"New {n}", begin, begin + timedelta(minutes=30), "UTC", f"new{n}@example.com"
            )
            created[new] = time.monotonic()
            n += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        time.sleep(15)  # the last ones arrive
        stop(*running)
    sandbox.stop()
    sink.stop()
    requests = sorted(r.received_at for r in sandbox.leezy.requests.entries() if r.path == "/api/v1/meetings")
    polls: list[list[datetime]] = []
    for at in requests:  # a poll is a burst: requests less than 1.5 s apart
        if polls and (at - polls[-1][-1]).total_seconds() < 1.5:
            polls[-1].append(at)
        else:
            polls.append([at])
    t0 = requests[0] if requests else datetime.now(UTC)
    print(
        f"churn: {args.rate} changes/s for {args.seconds} s beside 500 meetings, polls every 5 s; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for minute in range(int(args.seconds // 60) + 1):
        in_minute = [len(p) for p in polls if minute * 60 <= (p[0] - t0).total_seconds() < (minute + 1) * 60]
        lags = [
            sink.booked[m] - at
            for m, at in created.items()
            if m in sink.booked and minute * 60 <= at - started < (minute + 1) * 60
        ]
        missing = sum(
            1
            for m, at in created.items()
            if m not in sink.booked and minute * 60 <= at - started < (minute + 1) * 60
        )
        if in_minute or lags:
            print(
                f"  minute {minute}: polls {len(in_minute)}, requests per poll mean {sum(in_minute) / max(1, len(in_minute)):.1f} "
                f"max {max(in_minute, default=0)}; new meeting to booked: mean {sum(lags) / max(1, len(lags)):.1f} s "
                f"max {max(lags, default=float('nan')):.1f} s; not delivered {missing}"
            )
    print("  floor: 1 request per poll (nothing changed); ratio shown as requests per poll above")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def watchlist(args: argparse.Namespace) -> None:
    """K watched LeanData emails at --rate requests/s beside a fast Leezy, both polled every 2 s."""
    import random
    import tempfile

    from bookingsync.adapters.base import WatchHint
    from bookingsync.adapters.leandata_watch import plan
    from bookingsync.worker import store
    from bookingsync.worker.db import transaction

    interval, sandbox, sink = 2.0, start_sandbox(), Sink()
    now = datetime.now(UTC)
    for i in range(args.leezy_meetings):  # Leezy's attendees join LeanData's list (a meeting elsewhere)
        begin = now + timedelta(hours=3)
        sandbox.leezy.book(
            f"Leezy {i}",
            begin,
            begin + timedelta(minutes=30),
            "UTC",
            f"lz{i}@bench.example",
            updated_at=now - timedelta(hours=1),
        )
    soon = "soon@bench.example"  # a meeting starting within 10 minutes: read every interval
    sandbox.leandata.book("Soon", now + timedelta(minutes=8), now + timedelta(minutes=38), soon)
    emails = [f"prospect{i:04d}@bench.example" for i in range(args.emails)]
    floor = (args.emails + args.leezy_meetings) / args.rate  # every email read once at the rate
    # A deployment that has run a while: each email last read up to one of the schedule's own
    # periods ago (its promise for this list once Leezy's attendees are read and only the soon
    # meeting is urgent), so about as many fall due each poll as the schedule reads.
    listed = [*emails, *(f"lz{i}@bench.example" for i in range(args.leezy_meetings)), soon]
    period = plan(
        listed,
        dict.fromkeys(listed, now.timestamp()),
        {soon: WatchHint(next_start=now + timedelta(minutes=8))},
        now,
        interval,
        args.rate,
    )
    rng = random.Random(7)
    seeded = {e: now.timestamp() - rng.uniform(0, period.summary.staleness_seconds) for e in emails}

    def seed(config: Any, engine: Any) -> None:
        with transaction(engine) as session:
            store.save_cursor(session, "leandata-bench", {"read": seeded}, now)

    connections = [
        {
            "id": "leezy-bench",
            "provider": "leezy",
            "base_url": sandbox.leezy_url,
            "token": sandbox.leezy_token,
            "poll_interval_seconds": interval,
            "options": {"requests_per_minute": 600.0},
        },
        {
            "id": "leandata-bench",
            "provider": "leandata",
            "base_url": sandbox.leandata_url,
            "api_key": sandbox.leandata_api_key,
            "requests_per_second": args.rate,
            "poll_interval_seconds": interval,
            "watch_emails": [*emails, soon],
        },
    ]
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        running = start(tmp, sandbox, sink, connections, before=seed)
        time.sleep(args.seconds)
        end = time.time()
        rt = running[0]
        with transaction(rt.engine) as session:
            from bookingsync.models.tables import PollStateRow

            row = session.get(PollStateRow, "leandata-bench")
            promised = (row.watch_count, row.watch_staleness_seconds) if row is not None else (None, None)
        stop(*running)
    sandbox.stop()
    sink.stop()
    reads: dict[str, list[float]] = {}
    for r in sandbox.leandata.requests.entries():
        if r.path == "/v1/meetings":
            reads.setdefault(dict(r.query)["prospectEmail"], []).append(r.received_at.timestamp())
    staleness = []  # at each read of a seeded email: seconds since its previous read
    for email in emails:
        previous = seeded[email]
        for at in reads.get(email, []):
            staleness.append(at - previous)
            previous = at
    unread_age = max(end - (reads[e][-1] if e in reads else seeded[e]) for e in emails)
    soon_reads = reads.get(soon, [])
    soon_gaps = [b - a for a, b in zip(soon_reads, soon_reads[1:], strict=False)]
    asked = sorted(t for times in reads.values() for t in times)
    leezy = sorted(
        r.received_at.timestamp() for r in sandbox.leezy.requests.entries() if r.path == "/api/v1/meetings"
    )
    gaps = [b - a for a, b in zip(leezy, leezy[1:], strict=False)]
    mean = sum(gaps) / len(gaps) if gaps else float("nan")
    spread = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 if gaps else float("nan")
    count, promise = promised
    print(
        f"watchlist: {args.emails} watched LeanData emails (+{args.leezy_meetings} from Leezy, +1 soon) at {args.rate}/s "
        f"beside Leezy, both every {interval:.0f} s, {args.seconds} s; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  schedule: {count} emails, each read at least every {promise if promise is None else round(promise, 1)} s; floor (list / rate): {floor:.1f} s"
    )
    print(
        f"  per-email staleness at read: p50 {_quantile(staleness, 0.5):.1f} s, p99 {_quantile(staleness, 0.99):.1f} s, "
        f"max {max(staleness, default=float('nan')):.1f} s over {len(staleness)} reads; oldest unread at the end {unread_age:.1f} s; "
        f"ratio max/floor {max(staleness, default=float('nan')) / floor:.2f}"
    )
    print(
        f"  meeting starting within 10 min: {len(soon_reads)} reads, max gap {max(soon_gaps, default=float('nan')):.1f} s "
        f"(2 intervals = {2 * interval:.0f} s)"
    )
    print(
        f"  LeanData requests: {len(asked)} ({len(asked) / max(1e-9, asked[-1] - asked[0]) if len(asked) > 1 else 0:.2f}/s)"
    )
    print(
        f"  Leezy interval: {len(gaps)} gaps, mean {mean:.2f} s, p50 {_quantile(gaps, 0.5):.2f} s, p95 {_quantile(gaps, 0.95):.2f} s, "
        f"max {max(gaps, default=float('nan')):.2f} s, stdev {spread:.2f} s (interval {interval:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    rl = sub.add_parser("ratelimited")
    rl.add_argument("--n", type=int, default=2000)
    rl.add_argument("--rpm", type=int, default=600)
    rl.add_argument("--page", type=int, default=20)
    ch = sub.add_parser("churn")
    ch.add_argument("--rate", type=int, default=20)
    ch.add_argument("--seconds", type=int, default=120)
    wl = sub.add_parser("watchlist")
    wl.add_argument("--emails", type=int, default=500)
    wl.add_argument("--rate", type=float, default=5.0)
    wl.add_argument("--seconds", type=int, default=60)
    # Leezy meetings whose attendees join LeanData's list; first seen here, they count as
    # "changed recently" (urgent) for 10 minutes.
    wl.add_argument("--leezy-meetings", type=int, default=20)
    args = parser.parse_args()
    {"ratelimited": ratelimited, "churn": churn, "watchlist": watchlist}[args.scenario](args)


if __name__ == "__main__":
    main()
