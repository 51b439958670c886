"""Issue 16's end-to-end tests share this: `bookingsync run` over a config made of connection
blocks and routes, against the sandbox process and a subscriber; counts read from bookingsync's
own database and the simulators' control APIs (tests/e2e/test_safe_writes.py's `Service`)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.support import Proc, Subscriber, free_port, wait_until
from tests.e2e.test_safe_writes import Service, write_run_config


def write(
    tmp_path: Path, sandbox: dict[str, str], subscriber: Subscriber, blocks: str, *, extra: str = ""
) -> tuple[Path, Path, int]:
    """The config file (connection blocks and routes after Leezy's), its database and port."""
    port = free_port()
    db = tmp_path / "identity.db"
    config = tmp_path / "bookingsync.toml"
    write_run_config(config, db, port, sandbox, subscriber, blocks, mirroring_lease=2, extra=extra)
    return config, db, port


def start(
    tmp_path: Path, sandbox: dict[str, str], subscriber: Subscriber, blocks: str, *, extra: str = ""
) -> Service:
    config, db, port = write(tmp_path, sandbox, subscriber, blocks, extra=extra)
    proc = Proc("run", ["run", "--config", str(config)], tmp_path).start()
    service = Service(f"http://127.0.0.1:{port}", db, config, proc, sandbox, subscriber)
    wait_until(
        lambda: httpx.get(f"{service.base}/readyz", timeout=1).is_success,
        60,
        f"bookingsync run\n{proc.output()}",
    )
    return service


def stop(service: Service) -> None:
    service.proc.stop()
    output = service.proc.output()
    assert "Traceback" not in output, output


def links(service: Service) -> set[tuple[str, str, str | None]]:
    """Every link as (connection, external id, rule)."""
    return {(c, e, r) for c, e, r in service.query("SELECT connection, external_id, rule FROM links")}


def event_types(service: Service) -> list[str]:
    """The meeting events bookingsync wrote, timers left out, in order."""
    rows = service.query("SELECT type FROM events ORDER BY id")
    return [t for (t,) in rows if t not in ("meeting.hasStarted", "meeting.hasEnded")]
