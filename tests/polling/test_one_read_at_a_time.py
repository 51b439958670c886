"""One read per connection, whoever holds it; the pacing holds across threads and processes.

Two processes of two threads each poll one Leezy connection of the simulator as fast as they can,
sharing a database file and (through Redis) the account's pacer. Each read's span of requests
(recorded by its transport) never overlaps another's, and in the simulator's request log no two
requests are closer than the paced interval and none is refused with a 429.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bookingsync.sandbox.server import start_sandbox
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import Config, parse_config
from bookingsync.worker.poll import poll
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.db import make_engine, upgrade


REDIS_URL = os.environ.get("BOOKINGSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]
PER_MINUTE = 120  # the connection's pacing: one request every 0.5 s (x 1.02 margin)

CHILD = """
import json, sys, threading, time
from bookingsync.worker.broker import use_shared_pacing
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, upgrade
from bookingsync.worker.poll import poll
from bookingsync.worker.runtime import Runtime

url, token, db, redis_url, _, seconds = sys.argv[1:7]
from tests.polling.test_one_read_at_a_time import config as make_config
config = make_config(url, token)
use_shared_pacing(redis_url if redis_url != "none" else "memory://")
import httpx
local = threading.local()

class Recording(httpx.HTTPTransport):
    # When each request of this thread's current read left: the read's span, for the parent.
    def handle_request(self, request):
        local.times.append(time.time())
        return super().handle_request(request)

rt = Runtime(config=config, engine=make_engine(db), clock=SystemClock(), role="child",
             adapter_overrides={"transport": Recording()})
counts = {"ran": 0, "busy": 0, "errors": [], "reads": []}
lock = threading.Lock()
deadline = time.monotonic() + float(seconds)

def loop():
    while time.monotonic() < deadline:
        local.times = []
        result = poll(rt, "leezy-main")
        with lock:
            if result.ran:
                counts["ran"] += 1
                if local.times:
                    counts["reads"].append([min(local.times), max(local.times)])
            if result.skipped == "busy":
                counts["busy"] += 1
            if result.error:
                counts["errors"].append(result.error)
        time.sleep(0.01)

threads = [threading.Thread(target=loop) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
rt.close()
print(json.dumps(counts))
"""


def config(url: str, token: str) -> Config:
    return parse_config(
        {
            "allow_private_targets": True,
            "connections": [
                {
                    "id": "leezy-main",
                    "provider": "leezy",
                    "base_url": url,
                    "token": token,
                    "options": {"requests_per_minute": float(PER_MINUTE)},
                }
            ],
        },
        environ={},
    )


@pytest.mark.redis
def test_two_threads_in_two_processes_never_read_at_once_nor_over_the_limit(tmp_path):
    sandbox = start_sandbox()
    try:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
        for i in range(101):
            sandbox.leezy.book(
                f"Demo {i}", start, start + timedelta(minutes=30), "UTC", f"lead{i}@example.com"
            )
        db = f"sqlite:///{tmp_path / 'store.db'}"
        engine = make_engine(db)
        upgrade(engine)
        # A first read stores the meetings, so the children's reads are cheap re-reads.
        first = Runtime(
            config=config(sandbox.leezy_url, sandbox.leezy_token), engine=engine, clock=SystemClock()
        )
        assert poll(first, "leezy-main").records == 101
        first.close()
        engine.dispose()
        sandbox.leezy.requests.clear()
        sandbox.leezy.rate_limit_per_minute = PER_MINUTE
        args = [sandbox.leezy_url, sandbox.leezy_token, db, REDIS_URL, str(PER_MINUTE), "4"]
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(2)
        ]
        outputs = [child.communicate(timeout=120) for child in children]
        requests = [r for r in sandbox.leezy.requests.entries() if r.path == "/api/v1/meetings"]
    finally:
        sandbox.stop()
    counts = [json.loads(out.strip().splitlines()[-1]) for out, err in outputs]
    assert all(not c["errors"] for c in counts), counts
    assert sum(c["ran"] for c in counts) >= 3 and sum(c["busy"] for c in counts) >= 3, counts

    assert requests and all(r.status == 200 for r in requests), [r.status for r in requests]
    # One read at a time: from its first request to its last, no other read sent one.
    reads = sorted(tuple(read) for c in counts for read in c["reads"])
    assert len(reads) >= 3
    for (_, end), (start, _) in zip(reads, reads[1:], strict=False):
        assert start > end, reads
    times = sorted(r.received_at for r in requests)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # Paced at 0.51 s across both processes; a little arrival jitter is allowed. Pacers of their
    # own would let a process start its read right after the other's last request.
    assert min(gaps) >= 0.45, sorted(gaps)[:5]
