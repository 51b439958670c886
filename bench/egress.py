"""Outbound deliveries: N events due at once → signed webhooks at a local sink, vs a bare httpx loop.

Per backend (SQLite: `bookingsync run`; PostgreSQL: `bookingsync scheduler` + --workers
`bookingsync worker` on Redis), with one subscription pointing at bench/sink.py (its own process,
answers 204 at once, counts every webhook-id):

  floor    a bare `httpx.Client` loop, N POSTs of the same body size to the same sink from as many
           threads (one client each) as bookingsync may have requests out to one subscription:
           --concurrency (the default `delivery.concurrency_per_subscription`) per worker process
  burst    N `meeting.booked` events (meetings and events written with Core) all due at one
           instant a few seconds after the processes are up; time from that instant to the last
           delivery's arrival at the sink
  replay   those N deliveries turned into dead letters, then `bookingsync deliveries replay
           --all-dead`; time from the command's commit (its `now`, every row's due_at) to the
           last arrival

Every event must arrive exactly once by webhook-id (the bench counts missing and duplicates).
Figures are deliveries/s and the ratio to the floor measured in the same run. Beside the burst:
when its events were published and its deliveries arrived (quantiles, seconds after the due
instant, and each delivery's lag from its publishing), the CPU the bookingsync processes used, and
how long their threads waited runnable for a CPU (/proc schedstat): on a shared 2-core machine
that wait, not any sleep of ours, is where most of a burst's time goes (issue 6). The floor is measured
twice, before the burst and after the replay, and the ratios use the mean of the two: on a shared
machine the load moves in the minute between them, and one floor measured in a quiet moment (or a
busy one) made the same code's ratio swing by half.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import backends_of, database, iso, meeting_row, parse_args, serial_hex
from services import (
    REDIS_URL,
    Proc,
    Sink,
    config_text,
    database_url,
    flush_redis,
    free_port,
    start_roles,
    stop_all,
    wait_started,
    wait_until,
)
from sqlalchemy import Engine, insert, select, text

from bookingsync.models.tables import DeliveryRow, EventRow, LinkRow, MeetingRow

LEAD_SECONDS = 3.0  # from "every process is up" to the instant the burst falls due
# BENCH_PYSPY=<dir>: sample every bookingsync process with py-spy (idle threads too with
# BENCH_PYSPY_IDLE=1; on a busy machine a thread waiting for a CPU counts as idle) for
# BENCH_PYSPY_SECONDS from the burst's due instant, into <dir>/<process>.txt (collapsed stacks).
# BENCH_PYSPY_GIL=1: only the thread holding the GIL (where a process's CPU goes, not which
# threads wait for the GIL).
PYSPY_DIR = os.environ.get("BENCH_PYSPY")
PYSPY_SECONDS = int(os.environ.get("BENCH_PYSPY_SECONDS", "4"))


def profile(procs: list[Proc]) -> list[subprocess.Popen[bytes]]:
    """py-spy record on each process (see PYSPY_DIR); started at the due instant."""
    if not PYSPY_DIR:
        return []
    Path(PYSPY_DIR).mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                *(["--idle"] if os.environ.get("BENCH_PYSPY_IDLE") else []),
                *(["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []),
                "--threads",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                "200",
                "--duration",
                str(PYSPY_SECONDS),
                "-p",
                str(p.proc.pid),
                "-o",
                f"{PYSPY_DIR}/{p.name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(f"{PYSPY_DIR}/{p.name}.err", "wb"),
        )
        for p in procs
        if p.proc is not None
    ]


def snapshot(mid: str, row: dict[str, Any], external_id: str) -> dict[str, Any]:
    """The meeting as `payloads.meeting_json` renders it into a booked event."""
    return {
        "id": mid,
        "status": row["status"],
        "title": row["title"],
        "start": iso(row["start"]),
        "end": iso(row["end"]),
        "timezone": row["timezone"],
        "attendee": {"email": row["attendee_email"], "name": row["attendee_name"], "phone": None},
        "hosts": [],
        "conference_url": None,
        "links": [{"connection": "idle", "provider": "leezy", "external_id": external_id}],
    }


def insert_burst(engine: Engine, n: int, due: datetime) -> list[str]:
    """N booked meetings whose `booked` events are pending and due at `due`; returns the event ids."""
    now = datetime.now(UTC)
    event_ids = []
    for base in range(0, n, 5000):
        meetings, links, events = [], [], []
        for i in range(base, min(n, base + 5000)):
            mid = f"mtg_{serial_hex()}"
            start = now + timedelta(days=1, minutes=i)
            row = meeting_row(mid, start, start + timedelta(minutes=30), now, i)
            meetings.append(row)
            links.append(
                {
                    "meeting_id": mid,
                    "connection": "idle",
                    "provider": "leezy",
                    "external_id": f"ext_{i}",
                    "content_hash": row["content_hash"],
                    "missing": False,
                    "first_seen_at": now,
                    "last_seen_at": now,
                }
            )
            event_id = f"evt_{serial_hex()}"
            event_ids.append(event_id)
            events.append(
                {
                    "event_id": event_id,
                    "meeting_id": mid,
                    "type": "meeting.booked",
                    "dedupe_key": f"{mid}:meeting.booked:g0",
                    "generation": 0,
                    "set_for": None,
                    "occurred_at": now,
                    "due_at": due,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "payload": {"meeting": snapshot(mid, row, f"ext_{i}")},
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(MeetingRow.__table__), meetings)
            conn.execute(insert(LinkRow.__table__), links)
            conn.execute(insert(EventRow.__table__), events)
    return event_ids


def floor(sink: Sink, n: int, concurrency: int, body: bytes) -> float:
    """A bare httpx loop: `concurrency` threads, each with its own pooled client, n POSTs in all."""
    headers = {
        "content-type": "application/json",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 44,
        "user-agent": "bench-floor",
    }
    counter = iter(range(n))
    lock = threading.Lock()
    failures = []

    def loop() -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                response = client.post(
                    sink.url, content=body, headers={**headers, "webhook-id": f"floor_{i}"}
                )
                if not response.is_success:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    began, cpu = time.perf_counter(), time.process_time()
    sink_cpu = cpu_seconds([sink.proc.proc.pid])
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    print(
        f"           floor CPU (s): client {time.process_time() - cpu:.2f} sink {cpu_seconds([sink.proc.proc.pid]) - sink_cpu:.2f}"
        f" in {seconds:.2f} s",
        flush=True,
    )
    assert not failures and sink.stats()["distinct"] == n, (failures[:5], sink.stats())
    return n / seconds


def collect(sink: Sink, expected: list[str], since: float, timeout: float) -> dict[str, Any]:
    """Wait until every expected id arrived (or the timeout), then count missing and duplicates."""
    try:
        wait_until(lambda: sink.stats()["distinct"] >= len(expected), timeout, "every delivery", interval=0.1)
    except RuntimeError:
        pass
    time.sleep(0.5)  # a straggling duplicate would arrive now
    items = sink.items()
    arrivals: dict[str, list[float]] = {}
    for webhook_id, at, _ in items:
        arrivals.setdefault(webhook_id, []).append(at)
    wanted = set(expected)
    missing = len(wanted - set(arrivals))
    duplicates = sum(len(times) - 1 for webhook_id, times in arrivals.items() if webhook_id in wanted)
    strangers = len(set(arrivals) - wanted)
    last = max((min(times) for webhook_id, times in arrivals.items() if webhook_id in wanted), default=since)
    seconds = max(last - since, 1e-9)
    return {
        "seconds": seconds,
        "rate": (len(wanted) - missing) / seconds,
        "missing": missing,
        "duplicates": duplicates,
        "strangers": strangers,
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes `pids` used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def sched(pids: list[int]) -> tuple[float, float]:
    """Seconds the processes' threads ran on a CPU, and waited runnable for one (/proc schedstat)."""
    ran = waited = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:
                continue
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
    return ran / 1e9, waited / 1e9


def timeline(engine: Engine, sink: Sink, t0: float, published: bool = True) -> str:
    """When the burst's events were published, and its deliveries arrived, in seconds after the due
    instant (first / 10 % / median / 90 % / last): where a slow burst spends its time."""

    def marks(times: list[float]) -> str:
        times = sorted(times)
        if not times:
            return "-"
        picks = [times[0], *(times[int(q * (len(times) - 1))] for q in (0.1, 0.5, 0.9)), times[-1]]
        return " / ".join(f"{t - t0:5.2f}" for t in picks)

    with engine.connect() as conn:
        events = EventRow.__table__.c  # typed columns: SQLite hands back text for a raw query
        when = {
            row[0]: row[1].timestamp()
            for row in conn.execute(select(events.event_id, events.published_at))
            if row[1] is not None
        }
    arrived = {webhook_id: at for webhook_id, at, _ in sink.items()}
    lag = [at - when[w] + t0 for w, at in arrived.items() if w in when]
    if not published:
        return f"           arrived {marks(list(arrived.values()))}   (s after the replay: first/10%/50%/90%/last)"
    return (
        f"           published {marks(list(when.values()))}   arrived {marks(list(arrived.values()))}"
        f"   lag {marks(lag)}   (s after due: first/10%/50%/90%/last)"
    )


def run(backend: str, n: int, args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bookingsync-egress-") as tmp, database(backend) as engine:
        log_dir = Path(tmp)
        sink = Sink(log_dir)
        procs: list[Proc] = []
        try:
            sample_body = json.dumps(
                {
                    "type": "meeting.booked",
                    "timestamp": iso(datetime.now(UTC)),
                    "data": {
                        "event_id": f"evt_{serial_hex()}",
                        "sequence": 1,
                        "occurred_at": iso(datetime.now(UTC)),
                        "meeting": snapshot(
                            "mtg_" + "0" * 32,
                            meeting_row("m", datetime.now(UTC), datetime.now(UTC), datetime.now(UTC), 123456),
                            "ext_123456",
                        ),
                    },
                },
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
            # The same concurrency: each worker process sends at most `concurrency` at once to one subscription.
            threads = args.concurrency * (1 if backend == "sqlite" else args.workers)
            out["floor"] = floor(sink, n, threads, sample_body)
            print(
                f"  {backend:8s} floor   {n} POSTs, {threads} threads, {len(sample_body)} B bodies: "
                f"{out['floor']:7.0f}/s",
                flush=True,
            )
            sink.reset()

            port = free_port()
            broker = "memory://" if backend == "sqlite" else REDIS_URL
            if backend == "postgres":
                flush_redis()
            config = log_dir / "bookingsync.toml"
            config.write_text(
                config_text(
                    db_url=database_url(engine),
                    broker_url=broker,
                    port=port,
                    subscriptions=[("sink", sink.url)],
                )
            )
            # The rows go in before the processes start; they fall due once everything is up.
            due = datetime.now(UTC) + timedelta(days=1)
            event_ids = insert_burst(engine, n, due)
            procs = start_roles(backend, config, log_dir, workers=args.workers, web=False)
            wait_started(procs, port)
            t0 = time.time() + LEAD_SECONDS
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE events SET due_at = :due WHERE status = 'pending'"),
                    {"due": datetime.fromtimestamp(t0, UTC)},
                )
            time.sleep(max(0.0, t0 - time.time()))
            spies = profile(procs)
            pids = [p.proc.pid for p in procs if p.proc is not None]
            cpu_before = cpu_seconds(pids)
            each_before = {p.name: cpu_seconds([p.proc.pid]) for p in procs if p.proc is not None}
            sched_before = sched(pids)
            sink_before = cpu_seconds([sink.proc.proc.pid])
            burst = collect(sink, event_ids, t0, args.timeout)
            sched_after = sched(pids)
            print(
                f"           threads ran {sched_after[0] - sched_before[0]:.2f} s, waited for a CPU"
                f" {sched_after[1] - sched_before[1]:.2f} s",
                flush=True,
            )
            print(
                f"           CPU during the burst (s): bookingsync {cpu_seconds(pids) - cpu_before:.2f} ("
                + ", ".join(
                    f"{p.name} {cpu_seconds([p.proc.pid]) - each_before[p.name]:.2f}"
                    for p in procs
                    if p.proc is not None
                )
                + ")"
                f" sink {cpu_seconds([sink.proc.proc.pid]) - sink_before:.2f}",
                flush=True,
            )
            for spy in spies:
                spy.wait()
            out["burst"] = burst["rate"]
            print(
                f"  {backend:8s} burst   {n} events due at once: {burst['seconds']:7.2f} s {burst['rate']:7.0f}/s "
                f"missing {burst['missing']} duplicates {burst['duplicates']}",
                flush=True,
            )
            out["burst_check"] = burst
            print(timeline(engine, sink, t0), flush=True)

            sink.reset()
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE deliveries SET status = 'dead', attempts = 10, last_status_code = 503, "
                        "lease_until = NULL, finished_at = due_at"
                    )
                )
            began = time.time()
            replay = Proc.bookingsync(
                "replay", ["deliveries", "replay", "--all-dead", "--config", str(config)], log_dir
            )
            replay.proc.wait(120)
            command = time.time() - began
            # From the replay's commit (the `now` it wrote as every row's due_at), not from the
            # command's exit: on a busy machine the workers sent every delivery before the
            # command's process had exited, and the rate came out as 2000 in 0 s. The earliest
            # due_at: a delivery a full lane deferred is due again later (its due_at moves on),
            # and the latest cut the replay's first second off (3,000-7,000/s, above the floor).
            result = collect(sink, event_ids, 0.0, args.timeout)
            with engine.connect() as conn:
                deliveries = DeliveryRow.__table__.c
                due = [when.timestamp() for when in conn.execute(select(deliveries.due_at)).scalars()]
            replayed = min(due)
            result = collect(sink, event_ids, replayed, 0.0)
            result["deferred"] = sum(1 for when in due if when > replayed)
            out["replay"] = result["rate"]
            out["replay_check"] = result
            print(
                f"  {backend:8s} replay  {n} dead letters (command {command:.1f} s): {result['seconds']:7.2f} s "
                f"{result['rate']:7.0f}/s missing {result['missing']} duplicates {result['duplicates']}"
                f" deferred {result['deferred']} (a full lane sent them back for a moment)",
                flush=True,
            )
            print(timeline(engine, sink, replayed, published=False), flush=True)
            sink.reset()
            out["floor_after"] = floor(sink, n, threads, sample_body)
            print(f"  {backend:8s} floor   again after the replay: {out['floor_after']:7.0f}/s", flush=True)
        finally:
            stop_all(procs)
            sink.stop()
            if backend == "postgres":
                flush_redis()
    return out


def main() -> None:
    args = parse_args(
        __doc__,
        n=2000,
        concurrency=(4, "the per-subscription concurrency of a worker process"),
        workers=(2, "bookingsync worker processes on PostgreSQL"),
        timeout=(300.0, "give up waiting for deliveries after this many seconds"),
    )
    print(f"egress: {args.n} events → one subscription at a local sink (machine shared: figures are noisy)")
    results = {backend: run(backend, args.n, args) for backend in backends_of(args)}
    print()
    print(
        f"{'':10s}{'floor/s':>10s}{'burst/s':>10s}{'ratio':>8s}{'replay/s':>10s}{'ratio':>8s}   exactly once"
        "   (floor: mean of before and after)"
    )
    for backend, r in results.items():
        once = all(r[k]["missing"] == 0 and r[k]["duplicates"] == 0 for k in ("burst_check", "replay_check"))
        base = (r["floor"] + r["floor_after"]) / 2
        print(
            f"{backend:10s}{base:10.0f}{r['burst']:10.0f}{r['burst'] / base:8.3f}"
            f"{r['replay']:10.0f}{r['replay'] / base:8.3f}   {'yes' if once else 'NO'}"
        )


if __name__ == "__main__":
    main()
