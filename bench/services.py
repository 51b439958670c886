"""Real processes for the end-to-end benchmarks: bookingsync roles, the sink, the sandbox.

Every process gets a free port and writes its output to a log file in the run's temporary
directory; a failed wait shows the tail of that log. Redis is `BOOKINGSYNC_BENCH_REDIS_URL`
(default `redis://127.0.0.1:6379/13`); the benchmarks flush only that database.

The process, port and wait helpers are the end-to-end tests' own (tests/e2e/support.py): the
benchmarks import the tests' helpers, never the other way, and the package imports neither.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # `python bench/x.py` has only bench/ on the path

from tests.e2e import support  # noqa: E402
from tests.e2e.support import BIN, SUBSCRIBER_SECRET, free_port  # noqa: E402

__all__ = ["BIN", "SUBSCRIBER_SECRET", "free_port"]  # re-exported for the benchmark scripts

REDIS_URL = os.environ.get("BOOKINGSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
PROVIDERS = ("leezy", "leandata", "rocketlead", "meetergo", "hubspot")


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """The tests' wait, failing with RuntimeError: a benchmark reports a timeout and may go on."""
    try:
        return support.wait_until(check, timeout, what, interval)
    except AssertionError as exc:
        raise RuntimeError(str(exc)) from None


class Proc(support.Proc):
    """A process started at once; `argv` is its whole command (bookingsync, or a bench script)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(name, argv, log_dir, env)
        self.start()

    def command(self) -> list[str]:
        return list(self.args)

    @classmethod
    def bookingsync(cls, name: str, args: list[str], log_dir: Path) -> Proc:
        return cls(name, [str(BIN), *args], log_dir)

    @classmethod
    def script(cls, name: str, script: str, args: list[str], log_dir: Path) -> Proc:
        return cls(name, [sys.executable, str(BENCH / script), *args], log_dir)

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]


class Sink:
    """bench/sink.py in its own process."""

    def __init__(
        self, log_dir: Path, *, secret: str | None = None, name: str = "sink", hang_seconds: float = 0.0
    ) -> None:
        self.port = free_port()
        args = ["--port", str(self.port)] + (["--secret", secret] if secret else [])
        args += ["--hang-seconds", str(hang_seconds)] if hang_seconds else []
        self.proc = Proc.script(name, "sink.py", args, log_dir)
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.client = httpx.Client(timeout=30)
        wait_until(
            lambda: self.client.get(f"http://127.0.0.1:{self.port}/_stats").is_success,
            30,
            f"the sink\n{self.proc.tail()}",
        )

    def stats(self) -> dict[str, int]:
        return self.client.get(f"http://127.0.0.1:{self.port}/_stats").json()

    def items(self) -> list[tuple[str, float, str | None]]:
        return [
            tuple(item) for item in self.client.get(f"http://127.0.0.1:{self.port}/_dump").json()["items"]
        ]

    def reset(self) -> None:
        self.client.delete(f"http://127.0.0.1:{self.port}/_dump")

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


def start_sandbox(log_dir: Path) -> tuple[Proc, str]:
    """`bookingsync sandbox` (the providers' simulators) on free ports; the Leezy simulator's URL."""
    ports = {name: free_port() for name in PROVIDERS}
    args = [item for name, port in ports.items() for item in (f"--{name}-port", str(port))]
    proc = Proc.bookingsync("sandbox", ["sandbox", *args], log_dir)
    url = f"http://127.0.0.1:{ports['leezy']}"
    wait_until(
        lambda: httpx.get(f"{url}/_sandbox/requests", timeout=1).is_success, 60, f"the sandbox\n{proc.tail()}"
    )
    return proc, url


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


def database_url(engine: Any) -> str:
    """The URL a bookingsync process uses for a bench database (PostgreSQL: its schema on the path)."""
    if engine.bench_schema:
        return f"{engine.bench_url}?options=-csearch_path%3D{engine.bench_schema}"
    return engine.bench_url


def config_text(
    *,
    db_url: str,
    broker_url: str,
    port: int,
    subscriptions: list[tuple[str, str]],
    connections: str = "",
    extra: str = "",
    events: str = "",
) -> str:
    """A bookingsync config. Without a connection `run` would start the sandbox demo, so a disabled
    placeholder connection is added unless `connections` names real ones."""
    if not connections:
        connections = """
[[connections]]
id = "idle"
provider = "leezy"
base_url = "http://127.0.0.1:9"
token = "lzy_at_bench"
enabled = false
"""
    subs = "".join(
        f'\n[[subscriptions]]\nid = "{sid}"\nurl = "{url}"\nsecret = "{SUBSCRIBER_SECRET}"\n'
        for sid, url in subscriptions
    )
    return f"""
allow_private_targets = true  # the sink and the simulators listen on loopback
[database]
url = "{db_url}"
migrate_on_start = false
[broker]
url = "{broker_url}"
[server]
port = {port}
[events]
console = false
{events}
[logging]
level = "WARNING"
{extra}
{connections}
{subs}
"""


def start_roles(backend: str, config: Path, log_dir: Path, *, workers: int, web: bool) -> list[Proc]:
    """`run` on SQLite; scheduler + workers (+ web) on PostgreSQL."""
    args = ["--config", str(config)]
    if backend == "sqlite":
        return [Proc.bookingsync("run", ["run", *args], log_dir)]
    procs = [Proc.bookingsync("scheduler", ["scheduler", *args], log_dir)]
    procs += [Proc.bookingsync(f"worker-{i}", ["worker", *args], log_dir) for i in range(workers)]
    if web:
        procs.append(Proc.bookingsync("web", ["web", *args], log_dir))
    return procs


def wait_ready(port: int, procs: list[Proc]) -> None:
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success,
        60,
        "bookingsync to answer /readyz\n" + "\n".join(p.tail() for p in procs),
    )


def stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        proc.stop()
    for proc in procs:
        if "Traceback" in proc.tail(200_000):
            print(f"  ! {proc.name} logged a traceback:\n{proc.tail()}")


def wait_log(proc: Proc, text: str, timeout: float = 60) -> None:
    wait_until(lambda: text in proc.tail(200_000), timeout, f"{proc.name} to print {text!r}\n{proc.tail()}")


def wait_started(procs: list[Proc], port: int | None) -> None:
    """Ready when the HTTP side answers /readyz (run, web) and every worker and scheduler said so."""
    for proc in procs:
        if proc.name.startswith("worker"):
            wait_log(proc, "consuming")
        elif proc.name == "scheduler":
            wait_log(proc, "started")
    if port is not None and any(p.name in ("run", "web") for p in procs):
        wait_ready(port, procs)
