"""One subscriber that hangs never slows the others (production shape: PostgreSQL, Redis, real processes).

Two subscriptions get every event: one endpoint holds each request far past the delivery timeout,
the other answers at once. Scheduler and two workers run as separate processes, polling the
Leezy simulator. With more deliveries hanging than the workers have dramatiq threads, the healthy
subscriber's `hasStarted` still arrives within a second of each meeting's start: the hanging
endpoint costs its own lane (worker/lanes.py) and, once its breaker opens, nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.support import SUBSCRIBER_SECRET, Hanging, Proc, Subscriber, free_port, wait_until
from tests.e2e.test_distributed import backing_services  # noqa: F401 - the fixture
from tests.e2e.test_embedded import book_leezy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]
HANG_SECONDS = 60.0
TIMEOUT_SECONDS = 8.0
MEETINGS = 12


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    endpoint = Hanging(hang=HANG_SECONDS)
    yield endpoint
    endpoint.stop()


def arrival_lateness(subscriber: Subscriber, external_id: str) -> float | None:
    """How long after the meeting's start its `hasStarted` first arrived (noted as it was taken in,
    with the event: never one without the other)."""
    arrived = subscriber.arrival(external_id, "meeting.hasStarted")
    for body in subscriber.events_for(external_id):
        if body["type"] == "meeting.hasStarted" and arrived is not None:
            started = datetime.fromisoformat(body["data"]["occurred_at"].replace("Z", "+00:00")).timestamp()
            return arrived - started
    return None


def test_a_hanging_subscriber_does_not_delay_a_healthy_one(
    tmp_path: Path,
    backing_services: tuple[str, str],  # noqa: F811 (the imported fixture)
    sandbox_proc: dict[str, str],
    hanging: Hanging,
) -> None:
    db_url, broker_url = backing_services
    healthy = Subscriber().start()
    config = tmp_path / "bookingsync.toml"
    config.write_text(f"""
allow_private_targets = true  # the subscribers listen on loopback
[database]
url = "{db_url}"
migrate_on_start = false
[broker]
url = "{broker_url}"
[server]
port = {free_port()}
[scheduler]
relay_interval_seconds = 0.25
[events]
console = false
[delivery]
timeout_seconds = {TIMEOUT_SECONDS}
breaker_failures = 3
[worker]
threads = 4

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{sandbox_proc["leezy"]}"
token = "lzy_at_sandbox"
poll_interval_seconds = 1

[[subscriptions]]
id = "stuck"
url = "{hanging.url}"
secret = "{SUBSCRIBER_SECRET}"

[[subscriptions]]
id = "crm"
url = "{healthy.url}"
secret = "{SUBSCRIBER_SECRET}"
""")
    args = ["--config", str(config)]
    migrate = Proc("migrate", ["db", "upgrade", *args], tmp_path).start()
    assert migrate.proc is not None and migrate.proc.wait(60) == 0, migrate.output()
    procs = [
        Proc(name, [role, *args], tmp_path).start()
        for name, role in (("scheduler", "scheduler"), ("worker-a", "worker"), ("worker-b", "worker"))
    ]
    try:
        for proc in procs[1:]:
            wait_until(lambda proc=proc: "consuming" in proc.output(), 60, f"{proc.name}\n{proc.output()}")
        # 2 workers × 4 threads = 8 dramatiq threads; 12 meetings put 24 hanging deliveries in line.
        meetings = [
            book_leezy(sandbox_proc["leezy"], start_in=8 + i * 0.5, minutes=5, email=f"p{i}@acme.example")
            for i in range(MEETINGS)
        ]
        wait_until(
            lambda: all("meeting.hasStarted" in healthy.types_for(m) for m in meetings),
            40,
            "every hasStarted at the healthy subscriber\n" + procs[1].output()[-2000:],
        )
        late = {m: arrival_lateness(healthy, m) for m in meetings}
        assert all(value is not None and value < 1.0 for value in late.values()), late
        assert [healthy.types_for(m) for m in meetings] == [
            ["meeting.booked", "meeting.hasStarted"]
        ] * MEETINGS
        assert not healthy.rejected
        assert hanging.ids  # it was tried, and held its requests
    finally:
        for proc in procs:
            proc.stop()
        healthy.stop()
    for proc in procs:
        assert "Traceback" not in proc.output(), f"{proc.name}:\n{proc.output()}"
