"""The production shape the polling end-to-end tests start: migrate, workers and a scheduler on
PostgreSQL and Redis (the `backing_services` fixture of test_distributed.py), and what they read
back from the simulators and the processes."""

from __future__ import annotations

import os
import re
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.support import Proc
from tests.e2e.test_embedded import iso


def production_config(path: Path, db_url: str, broker_url: str, rest: str) -> list[str]:
    """Write a config of the shared sections plus `rest` (worker, connections, subscriptions)."""
    path.write_text(f"""
allow_private_targets = true  # the sandbox and the subscriber are on loopback
[database]
url = "{db_url}"
migrate_on_start = false
[broker]
url = "{broker_url}"
[scheduler]
relay_interval_seconds = 0.2
lease_seconds = 4
leader_lease_seconds = 3
[events]
console = false
[delivery]
min_backoff_seconds = 0.5
{rest}""")
    return ["--config", str(path)]


def leezy_block(leezy: str, *, threads: int, poll_threads: int, interval: float, rest: str = "") -> str:
    """The `[worker]` section and the Leezy connection, with `rest` (more of its keys) after its
    poll interval."""
    return f"""
[worker]
threads = {threads}
poll_threads = {poll_threads}

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{leezy}"
token = "lzy_at_sandbox"
poll_interval_seconds = {interval}
{rest}"""


def seed_leezy(leezy: str, first_key: datetime, begins: datetime, count: int, per_minute: int) -> None:
    """`count` meetings at `begins`, last changed a second apart from `first_key` on (so that a read
    pages through them in that order), and the simulator limited to `per_minute` requests."""
    meetings = [
        {
            "title": f"Demo {i}",
            "start": iso(begins),
            "end": iso(begins + timedelta(minutes=30)),
            "attendee_email": f"p{i}@acme.example",
            "updated_at": iso(first_key + timedelta(seconds=i)),
        }
        for i in range(count)
    ]
    httpx.post(f"{leezy}/_sandbox/meetings/bulk", json={"meetings": meetings}, timeout=30).raise_for_status()
    # The simulator refuses what goes over the limit (fixed one-minute windows).
    httpx.put(f"{leezy}/_sandbox/settings", json={"rate_limit_per_minute": per_minute}).raise_for_status()


def start(tmp_path: Path, args: list[str], roles: dict[str, str]) -> list[Proc]:
    """Migrate, then start one process per name in `roles` (name -> `worker` or `scheduler`)."""
    migrate = Proc("migrate", ["db", "upgrade", *args], tmp_path).start()
    assert migrate.proc is not None and migrate.proc.wait(60) == 0, migrate.output()
    return [Proc(name, [role, *args], tmp_path).start() for name, role in roles.items()]


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM to every process at once, then wait for each: the shutdowns overlap."""
    for proc in procs:
        if proc.alive():
            assert proc.proc is not None
            os.killpg(proc.proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.stop()


def assert_no_traceback(procs: list[Proc]) -> None:
    for proc in procs:
        assert "Traceback" not in proc.output(), f"{proc.name}:\n{proc.output()}"


def worker_polls(proc: Proc, connection: str) -> dict[str, float]:
    """A worker's own count of its polls of `connection` by outcome, from its metrics endpoint."""
    url = re.search(r"health and metrics on (http://\S+)", proc.output())
    assert url, proc.output()
    counts: dict[str, float] = {}
    pattern = re.compile(rf'bookingsync_polls_total\{{connection="{connection}",outcome="(\w+)"\}} (\S+)')
    for line in httpx.get(f"{url[1]}/metrics", timeout=5).text.splitlines():
        found = pattern.match(line)
        if found:
            counts[found[1]] = float(found[2])
    return counts


def requests_of(simulator: str, path: str) -> list[dict[str, Any]]:
    """What the simulator at `simulator` was asked on `path`, oldest first."""
    log = httpx.get(f"{simulator}/_sandbox/requests", timeout=10).json()["requests"]
    return [entry for entry in log if entry["path"] == path]


def received_at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["received_at"]).timestamp()
