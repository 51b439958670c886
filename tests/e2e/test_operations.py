"""Honest operations with real processes: a busy port, a database or broker that does not answer,
health and metrics on every role, JSON logs, and the demo's verified deliveries."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, service_missing
from tests.e2e.support import BIN, Proc, free_port, wait_until
from tests.unit.test_cli import cli_env

pytestmark = pytest.mark.e2e
LEEZY = (
    '[[connections]]\nid = "leezy-main"\nprovider = "leezy"\nbase_url = "https://app.leezy.example"\n'
    'token = "lz_live_7f3a9c2e51"\n'
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def run(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path, busy_port: int) -> None:
    config = tmp_path / "site.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "bs.db"}"\n[broker]\nurl = "redis://127.0.0.1:1/0"\n'
        f"[server]\nport = {busy_port}\n[worker]\nhealth_port = {busy_port}\n" + LEEZY
    )
    cases = [
        (["run", "--config", str(config)], "server.port"),
        (["web", "--config", str(config)], "server.port"),
        (["worker", "--config", str(config)], "worker.health_port"),
        (["sandbox", "--leezy-port", str(busy_port)], "--leezy-port"),
    ]
    for args, key in cases:
        started = time.monotonic()
        result = run(tmp_path, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"127.0.0.1:{busy_port} is already in use" in result.stderr and key in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "listening" not in result.stdout and time.monotonic() - started < 30
    assert {p.name for p in tmp_path.iterdir()} == {"site.toml"}, "nothing started, nothing created"


def test_start_up_says_within_5s_what_does_not_answer_and_keeps_trying(tmp_path: Path) -> None:
    dead_db, dead_broker = free_port(), free_port()
    no_db = tmp_path / "no-db.toml"
    no_db.write_text(
        f'[database]\nurl = "postgresql+psycopg://bs:dbs3cret@127.0.0.1:{dead_db}/bs"\n'
        f'[broker]\nurl = "memory://"\n[server]\nport = {free_port()}\n' + LEEZY
    )
    no_broker = tmp_path / "no-broker.toml"
    no_broker.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "bs.db"}"\n'
        f'[broker]\nurl = "redis://:brs3cret@127.0.0.1:{dead_broker}/0"\n'
        '[logging]\nformat = "json"\n' + LEEZY
    )
    procs = [
        Proc("no-db", ["run", "--config", str(no_db)], tmp_path).start(),
        Proc("no-broker", ["worker", "--config", str(no_broker)], tmp_path).start(),
    ]
    started = time.monotonic()
    try:
        wait_until(
            lambda: "does not answer" in procs[0].output() and "does not answer" in procs[1].output(),
            5,
            "both to say what does not answer",
        )
        assert time.monotonic() - started < 5
        time.sleep(4)  # still trying, and saying so
        for proc in procs:
            assert proc.alive(), proc.output()
            assert proc.output().count("does not answer") >= 2, proc.output()
    finally:
        for proc in procs:
            proc.stop()
    db_out, broker_out = procs[0].output(), procs[1].output()
    assert f"the database at postgresql+psycopg://bs:***@127.0.0.1:{dead_db}/bs does not answer" in db_out
    assert f"the broker at redis://:***@127.0.0.1:{dead_broker}/0 does not answer" in broker_out
    for out, secret in ((db_out, "dbs3cret"), (broker_out, "brs3cret")):
        assert secret not in out and "Traceback" not in out


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc))
    yield REDIS_URL
    client.close()


@pytest.mark.redis
def test_worker_and_scheduler_serve_health_readiness_and_metrics(tmp_path: Path, redis_url: str) -> None:
    worker_port, scheduler_port = free_port(), free_port()
    config = tmp_path / "site.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "bs.db"}"\n[broker]\nurl = "{redis_url}"\n'
        f"[worker]\nhealth_port = {worker_port}\n[scheduler]\nhealth_port = {scheduler_port}\n"
        '[logging]\nformat = "json"\n'
        + LEEZY.replace("https://app.leezy.example", "https://app.leezy.invalid")
    )
    assert run(tmp_path, "db", "upgrade", "--config", str(config)).returncode == 0
    worker = Proc("worker", ["worker", "--config", str(config)], tmp_path).start()
    scheduler = Proc("scheduler", ["scheduler", "--config", str(config)], tmp_path).start()
    try:
        for port, proc in ((worker_port, worker), (scheduler_port, scheduler)):
            base = f"http://127.0.0.1:{port}"
            wait_until(
                lambda base=base: httpx.get(f"{base}/healthz", timeout=2).is_success,
                60,
                f"{proc.name} health\n{proc.output()}",
            )
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json() == {
                "status": "ready",
                "database": "ok",
                "broker": "ok",
            }
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert "bookingsync_backlog{" in text and "process_resident_memory_bytes" in text
            assert httpx.get(f"{base}/nothing", timeout=2).status_code == 404
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{scheduler_port}/healthz", timeout=2).json().get("leading"),
            20,
            "the scheduler to lead",
        )
        # The gauge is set just after the flag /healthz reads (worker/scheduler.py): wait for it too.
        wait_until(
            lambda: (
                "bookingsync_scheduler_leading 1.0"
                in httpx.get(f"http://127.0.0.1:{scheduler_port}/metrics", timeout=10).text
            ),
            10,
            "the leading gauge",
        )
        # The poll of the unresolvable provider fails: the worker counts it, and logs it as JSON.
        wait_until(
            lambda: (
                'bookingsync_polls_total{connection="leezy-main",outcome="error"}'
                in httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).text
            ),
            60,
            f"a counted poll\n{worker.output()}",
        )
        logged = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
        assert any(
            entry.get("connection") == "leezy-main" and entry["level"] == "WARNING" for entry in logged
        ), worker.output()
    finally:
        worker.stop()
        scheduler.stop()
    assert "Traceback" not in worker.output() + scheduler.output()


def test_the_demo_prints_what_a_subscriber_receives_verified(tmp_path: Path) -> None:
    port = free_port()
    # No config file: the environment only moves the port and the database file out of the way.
    demo = Proc(
        "demo",
        ["run"],
        tmp_path,
        env={
            **cli_env(),
            "BOOKINGSYNC_SERVER__PORT": str(port),
            "BOOKINGSYNC_DATABASE__URL": f"sqlite:///{tmp_path / 'demo.db'}",
        },
    )
    demo.env.pop("BOOKINGSYNC_CONFIG", None)
    demo.start()
    try:
        wait_until(lambda: "✓ meeting.booked" in demo.output(), 90, f"a verified delivery\n{demo.output()}")
        output = demo.output()
        assert "Sandbox demo" in output and "signature verified" in output and "refused" not in output
        line = next(line for line in output.splitlines() if "✓ meeting.booked" in line)
        assert "webhook-id evt_" in line and "mtg_" in line
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).is_success
    finally:
        demo.stop()
    assert "Traceback" not in demo.output()
    assert (tmp_path / "demo.db").exists()
