"""Inbound webhooks: `bookingsync web` vs a bare ASGI app under the same server, driven by wrk.

Every request is a distinct Leezy delivery (its own delivery id and meeting), signed the way
Leezy's production documents describe (`X-Leezy-Signature: sha256=hex(HMAC(secret, "{ts}.{body}"))`),
signed just before the turn that sends them. wrk (`apt-get install wrk`) sends them from
--connections connections for --seconds, cycling through the pre-signed requests with
bench/ingress.lua, which counts answers by status and keeps the delivery id of every 2xx.

Both servers stay up while wrk drives them in turns, floor then bookingsync, --rounds times per
backend, and each side's figure is its totals over its turns: on a machine shared with other work,
a spell of load falls on both sides alike instead of on whichever ran during it.

  floor        a bare ASGI callable under uvicorn, configured as `bookingsync web` configures it
               (`worker/cli.py:_serve`): reads the body, answers 202 with a small JSON
  bookingsync  `bookingsync web`: verify, store the receipt, answer 202. SQLite (file, WAL) and
               PostgreSQL, each with the Redis broker (`web` needs one another process can consume)

Afterwards the bench opens the store and checks that every delivery answered 2xx is there.
Figures: requests/s, 5xx and other non-2xx counts, and the ratio to the floor's turns of the same run;
also the server process's CPU time per request (all its threads, from /proc), and the floor's
CPU ÷ ours: steadier than requests/s when other work shares the cores.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from common import backends_of, database, iso, parse_args
from services import BENCH, REDIS_URL, Proc, config_text, database_url, flush_redis, free_port, wait_until
from sqlalchemy import Engine, select

from bookingsync.models.tables import ReceiptRow

SECRET = "lzy_ws_bench_secret_0123456789"
WRK_THREADS = 2


def floor_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        delivery = dict(scope["headers"]).get(b"x-leezy-delivery", b"").decode()
        body = json.dumps({"status": "accepted", "delivery_id": delivery}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def serve_floor(port: int) -> None:
    import uvicorn

    from bookingsync.worker.probes import bind

    # The socket and settings `bookingsync web` gives uvicorn (worker/cli.py: _serve), nothing else.
    uvicorn.Server(uvicorn.Config(floor_app(), log_level="warning", access_log=False)).run(
        sockets=[bind("127.0.0.1", port)]
    )


def write_requests(path: Path, n: int, run: str) -> None:
    """n distinct deliveries, each a new meeting, signed now."""
    now = datetime.now(UTC)
    ts = str(int(time.time()))
    key = SECRET.encode()
    with path.open("w") as out:
        for i in range(n):
            start = now.replace(microsecond=0) + timedelta(days=1, minutes=15 * i)
            body = json.dumps(
                {
                    "id": f"evt_{run}_{i}",
                    "type": "meeting.scheduled",
                    "created_at": iso(now),
                    "organization_id": "org_bench",
                    "chatbot_id": "chatbot_bench",
                    "data": {
                        "id": f"meeting_{run}_{i}",
                        "type": "meeting",
                        "attributes": {
                            "title": f"Demo call #{i}",
                            "start_time": iso(start),
                            "end_time": iso(start + timedelta(minutes=30)),
                            "timezone": "Europe/Berlin",
                            "attendee": {
                                "name": f"Prospect {i}",
                                "email": f"prospect.{i}@example.com",
                                "phone": None,
                            },
                            "status": "scheduled",
                            "meeting_url": None,
                            "cancelled_at": None,
                            "created_at": iso(now),
                            "updated_at": iso(now),
                        },
                    },
                },
                separators=(",", ":"),
            )
            signature = hmac.new(key, f"{ts}.".encode() + body.encode(), hashlib.sha256).hexdigest()
            out.write(f"del_{run}_{i}\t{ts}\tsha256={signature}\t{body}\n")


def wrk(port: int, path: str, requests: Path, args: Any, out: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "WRK_REQUESTS": str(requests),
        "WRK_PATH": path,
        "WRK_OUT": str(out),
        "WRK_THREADS": str(WRK_THREADS),
    }
    subprocess.run(
        [
            "wrk",
            "-t",
            str(WRK_THREADS),
            "-c",
            str(args.connections),
            "-d",
            f"{args.seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "ingress.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    statuses: Counter[int] = Counter()
    ok: list[str] = []
    totals: dict[str, int] = {}
    for line in out.read_text().splitlines():
        key, value = line.split("\t", 1)
        if key == "ok":
            ok.append(value)
        elif key.isdigit():
            statuses[int(key)] += int(value)
        else:
            totals[key] = int(value)
    seconds = totals["duration_us"] / 1e6
    two = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "seconds": seconds,
        "rate": totals["requests"] / seconds,
        "ok_rate": two / seconds,
        "statuses": dict(statuses),
        "errors": totals["errors"],
        "ok_ids": ok,
        "requests": totals["requests"],
        "latency_ms": {k: totals[f"{k}_us"] / 1000 for k in ("p50", "p99", "max")},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, port: int, requests: Path, args: Any, out: Path) -> dict[str, Any]:
    """wrk against the server, with the server's CPU time per request (steadier than req/s on a shared machine)."""
    before = cpu_seconds(pid)
    result = wrk(port, "/webhooks/leezy", requests, args, out)
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
    return result


def stored(engine: Engine, ids: list[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as conn:
        for base in range(0, len(ids), 5000):
            chunk = ids[base : base + 5000]
            query = select(ReceiptRow.delivery_id).where(
                ReceiptRow.connection == "leezy", ReceiptRow.delivery_id.in_(chunk)
            )
            found.update(conn.execute(query).scalars())
    return found


def describe(result: dict[str, Any]) -> str:
    five = sum(n for s, n in result["statuses"].items() if s >= 500)
    other = sum(n for s, n in result["statuses"].items() if not 200 <= s < 300 and s < 500)
    return (
        f"{result['rate']:7.0f} req/s, server CPU {result['cpu_us']:5.0f} µs/request ({result['requests']} requests: "
        + ", ".join(f"{s}×{n}" for s, n in sorted(result["statuses"].items()))
        + f"; 5xx {five}, other non-2xx {other}, socket errors {result['errors']})"
    )


def combined(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk segments against one server as one result: totals over their summed time."""
    seconds = sum(r["seconds"] for r in segments)
    requests = sum(r["requests"] for r in segments)
    statuses: Counter[int] = Counter()
    for r in segments:
        statuses.update(r["statuses"])
    return {
        "seconds": seconds,
        "requests": requests,
        "rate": requests / seconds,
        "statuses": dict(statuses),
        "errors": sum(r["errors"] for r in segments),
        "ok_ids": [i for r in segments for i in r["ok_ids"]],
        "cpu_us": sum(r["cpu_us"] * r["requests"] for r in segments) / max(requests, 1),
        "rates": [r["rate"] for r in segments],
        "p99s": [r["latency_ms"]["p99"] for r in segments],
        "max_ms": max(r["latency_ms"]["max"] for r in segments),
    }


class Floor:
    """The bare ASGI app in its own process, up for the whole run."""

    def __init__(self, args: Any, log_dir: Path) -> None:
        self.args, self.log_dir, self.port = args, log_dir, free_port()
        self.requests = log_dir / "floor-requests.tsv"
        write_requests(self.requests, min(args.requests, 20_000), "floor")
        self.proc = Proc(
            f"floor-{self.port}", [sys.executable, __file__, "--floor-app", str(self.port)], log_dir
        )
        wait_until(lambda: _answering(self.port), 30, f"the floor app\n{self.proc.tail()}")

    def segment(self) -> dict[str, Any]:
        return measured(self.proc.proc.pid, self.port, self.requests, self.args, self.log_dir / "floor.out")

    def stop(self) -> None:
        self.proc.stop()


def _answering(port: int) -> bool:
    """The server answers HTTP. Listening is not enough: `bookingsync web` binds its socket before
    it imports and builds its app (a second or more of CPU), which would count against its
    requests, and its first requests would wait in the backlog meanwhile."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


def run_bookingsync(
    backend: str, floor: Floor, args: Any, log_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`bookingsync web` on `backend` and the floor, driven in turns (--rounds of each, floor first):
    both sides see the same spells of load from whatever else runs on the machine."""
    with database(backend) as engine:
        port = free_port()
        # `web` needs a broker another process could consume (memory:// is only for `run`); the
        # ingest messages it sends are flushed with this Redis database afterwards.
        broker = REDIS_URL
        flush_redis()
        connection = f"""
[[connections]]
id = "leezy"
provider = "leezy"
base_url = "http://127.0.0.1:9"
token = "lzy_at_bench"
webhook_secret = "{SECRET}"
"""
        config = log_dir / f"{backend}.toml"
        config.write_text(
            config_text(
                db_url=database_url(engine),
                broker_url=broker,
                port=port,
                subscriptions=[],
                connections=connection,
            )
        )
        run = uuid.uuid4().hex[:8]
        ours: list[dict[str, Any]] = []
        floors: list[dict[str, Any]] = []
        proc = Proc.bookingsync(f"web-{backend}", ["web", "--config", str(config)], log_dir)
        try:
            wait_until(lambda: _answering(port), 60, f"bookingsync web\n{proc.tail()}")
            for turn in range(args.rounds):
                floors.append(floor.segment())
                # Fresh deliveries each turn, signed just before it (wrk starts a file from its top).
                requests = log_dir / f"{backend}-requests-{turn}.tsv"
                write_requests(requests, args.requests, f"{run}t{turn}")
                time.sleep(0.5)
                ours.append(measured(proc.proc.pid, port, requests, args, log_dir / f"{backend}.out"))
        finally:
            proc.stop()
            flush_redis()
        if "Traceback" in proc.tail(1_000_000):
            print(f"  ! bookingsync web logged a traceback:\n{proc.tail()}")
        result = combined(ours)
        found = stored(engine, result["ok_ids"])
        result["lost"] = len(set(result["ok_ids"]) - found)
        result["stored"] = len(found)
        return result, combined(floors)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--floor-app":
        serve_floor(int(sys.argv[2]))
        return
    args = parse_args(
        __doc__,
        n=0,
        connections=(32, "wrk connections"),
        seconds=(10, "wrk duration of each turn"),
        rounds=(3, "turns of each side per backend, floor and bookingsync alternating"),
        requests=(60_000, "distinct pre-signed deliveries per turn (more than a turn sends)"),
    )
    print(
        f"ingress: wrk -t{WRK_THREADS} -c{args.connections}, {args.rounds} turns of {args.seconds}s each side, "
        "every request a distinct signed Leezy delivery (machine shared: figures are noisy)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bookingsync-ingress-") as tmp:
        log_dir = Path(tmp)
        floor = Floor(args, log_dir)
        try:
            for backend in backends_of(args):
                result, floor_result = run_bookingsync(backend, floor, args, log_dir)
                print(f"  floor (bare ASGI, uvicorn)  {describe(floor_result)}", flush=True)
                print(f"  bookingsync web {backend:10s} {describe(result)}", flush=True)
                print(
                    f"  {'':26s} turns, req/s: floor "
                    + " ".join(f"{r:.0f}" for r in floor_result["rates"])
                    + f"; bookingsync {' '.join(f'{r:.0f}' for r in result['rates'])}"
                    + f"; 2xx'd deliveries in the store: {result['stored']} of {len(result['ok_ids'])}"
                    f" (missing {result['lost']})",
                    flush=True,
                )
                print(
                    f"  {'':26s} turns, latency p99 ms: floor "
                    + " ".join(f"{r:.1f}" for r in floor_result["p99s"])
                    + f" (max {floor_result['max_ms']:.1f}); bookingsync "
                    + " ".join(f"{r:.1f}" for r in result["p99s"])
                    + f" (max {result['max_ms']:.1f})",
                    flush=True,
                )
                rows.append((backend, result, floor_result))
        finally:
            floor.stop()
    print()
    print(
        f"{'':12s}{'req/s':>9s}{'floor':>9s}{'ratio':>8s}{'5xx':>6s}{'lost':>6s}"
        f"{'CPU µs/req':>12s}{'floor':>8s}{'ratio':>8s}{'p99 ms':>9s}{'floor':>8s}"
    )
    for backend, r, floor_r in rows:
        five = sum(n for s, n in r["statuses"].items() if s >= 500)
        print(
            f"{backend:12s}{r['rate']:9.0f}{floor_r['rate']:9.0f}{r['rate'] / floor_r['rate']:8.3f}{five:6d}{r['lost']:6d}"
            f"{r['cpu_us']:12.0f}{floor_r['cpu_us']:8.0f}{floor_r['cpu_us'] / r['cpu_us']:8.3f}"
            f"{median(r['p99s']):9.1f}{median(floor_r['p99s']):8.1f}"
        )
    print("(p99 ms: the median of the turns' 99th-percentile latencies, as wrk measures them)")


if __name__ == "__main__":
    main()
