"""Issue 16's end-to-end tests share this: `bookingsync run` over a config made of connection
blocks and routes, against the sandbox process and a subscriber; counts read from bookingsync's
own database and the simulators' control APIs (tests/e2e/test_safe_writes.py's `Service`)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.support import SUBSCRIBER_SECRET, Proc, Subscriber, free_port, wait_until
from tests.e2e.test_embedded import LEEZY_SECRET
from tests.e2e.test_safe_writes import Service

BASE = """
allow_private_targets = true
[database]
url = "sqlite:///{db}"
[server]
port = {port}
[scheduler]
relay_interval_seconds = 0.2
lease_seconds = 5
[events]
console = false
[delivery]
min_backoff_seconds = 0.5
max_backoff_seconds = 3
[mirroring]
lease_seconds = 2
{extra}
[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{leezy}"
token = "lzy_at_sandbox"
webhook_secret = "{leezy_secret}"
poll_interval_seconds = 1
{blocks}
[[subscriptions]]
id = "crm"
url = "{subscriber}"
secret = "{subscriber_secret}"
"""


def write(
    tmp_path: Path, sandbox: dict[str, str], subscriber: Subscriber, blocks: str, *, extra: str = ""
) -> tuple[Path, Path, int]:
    """The config file (connection blocks and routes after Leezy's), its database and port."""
    port = free_port()
    db = tmp_path / "identity.db"
    config = tmp_path / "bookingsync.toml"
    config.write_text(
        BASE.format(
            db=db,
            port=port,
            extra=extra,
            leezy=sandbox["leezy"],
            leezy_secret=LEEZY_SECRET,
            blocks=blocks,
            subscriber=subscriber.url,
            subscriber_secret=SUBSCRIBER_SECRET,
        )
    )
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
