"""Production shape with real processes: PostgreSQL, Redis, separate web / worker / scheduler.

Two workers and two schedulers run; one worker is SIGKILLed mid-run and restarted, the leading
scheduler is SIGKILLed and the other takes over. Every meeting's events still arrive, each under
one event id: nothing lost, nothing emitted twice under two ids.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import text

from bookingsync.worker.db import make_engine
from tests.conftest import POSTGRES_URL, REDIS_URL, service_missing
from tests.e2e.support import SUBSCRIBER_SECRET, Proc, Subscriber, free_port, leezy_signed, wait_until
from tests.e2e.test_embedded import LEEZY_SECRET, book_leezy, iso

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def backing_services() -> Iterator[tuple[str, str]]:
    try:
        client = redis.Redis.from_url(REDIS_URL)
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc))
    client.flushdb()  # the test database only (/15 by default)
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", str(exc).splitlines()[0])
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url, REDIS_URL
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        client.flushdb()
        client.close()


def leader(db_url: str) -> str | None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT holder FROM leases WHERE name = 'scheduler-leader' AND until > now()")
            ).first()
            return row[0] if row else None
    finally:
        engine.dispose()


def test_separate_processes_survive_sigkill_without_losing_or_doubling(
    tmp_path: Path, backing_services: tuple[str, str], sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    db_url, broker_url = backing_services
    port = free_port()
    config = tmp_path / "bookingsync.toml"
    config.write_text(f"""
allow_private_targets = true  # the sandbox and the subscriber are on loopback
[database]
url = "{db_url}"
migrate_on_start = false
[broker]
url = "{broker_url}"
[server]
port = {port}
[scheduler]
relay_interval_seconds = 0.2
lease_seconds = 4
# Renewed every 2 s: a leader held up for a second or two on a loaded machine keeps it. A killed
# leader's lock goes with it, so the standby still leads at once.
leader_lease_seconds = 6
[events]
grace_seconds = 60
console = false
[delivery]
min_backoff_seconds = 0.5
[worker]
threads = 4

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{sandbox_proc["leezy"]}"
token = "lzy_at_sandbox"
webhook_secret = "{LEEZY_SECRET}"
poll_interval_seconds = 1

[[subscriptions]]
id = "crm"
url = "{subscriber.url}"
secret = "{SUBSCRIBER_SECRET}"
""")
    args = ["--config", str(config)]
    migrate = Proc("migrate", ["db", "upgrade", *args], tmp_path).start()
    assert migrate.proc is not None and migrate.proc.wait(60) == 0, migrate.output()

    procs = {
        name: Proc(name, [role, *args], tmp_path)
        for name, role in (
            ("web", "web"),
            ("worker-a", "worker"),
            ("worker-b", "worker"),
            ("scheduler-1", "scheduler"),
        )
    }
    for proc in procs.values():
        proc.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=1).is_success, 60, f"web\n{procs['web'].output()}"
        )
        first_leader = wait_until(lambda: leader(db_url), 30, "a scheduler to lead")
        procs["scheduler-2"] = Proc("scheduler-2", ["scheduler", *args], tmp_path).start()

        live = [
            book_leezy(sandbox_proc["leezy"], start_in=6 + i, minutes=0.05, email=f"p{i}@acme.example")
            for i in range(6)
        ]
        doomed = [
            book_leezy(sandbox_proc["leezy"], start_in=20 + i, email=f"c{i}@acme.example") for i in range(2)
        ]
        wait_until(
            lambda: all("meeting.booked" in subscriber.types_for(m) for m in live + doomed), 30, "bookings"
        )
        time.sleep(1)
        assert leader(db_url) == first_leader, "the second scheduler must wait, not take over"

        procs["worker-a"].kill()  # mid-run: timers fall due while it is gone
        for meeting in doomed:
            httpx.post(
                f"{sandbox_proc['leezy']}/_sandbox/meetings/{meeting}/cancel", json={}
            ).raise_for_status()
        time.sleep(3)
        procs["worker-a"] = Proc("worker-a2", ["worker", *args], tmp_path).start()

        # The webhook path through the web process and a worker, too.
        start = datetime.now(UTC) + timedelta(hours=3)
        envelope = {
            "id": "evt_d",
            "type": "meeting.scheduled",
            "created_at": iso(datetime.now(UTC)),
            "data": {
                "id": "meeting_hooked",
                "type": "meeting",
                "attributes": {
                    "title": "From webhook",
                    "start_time": iso(start),
                    "end_time": iso(start + timedelta(minutes=15)),
                    "timezone": "UTC",
                    "attendee": {"email": "hook@acme.example"},
                    "status": "scheduled",
                    "updated_at": iso(datetime.now(UTC)),
                },
            },
        }
        headers, body = leezy_signed(LEEZY_SECRET, envelope, delivery_id="del_d", event="meeting.scheduled")
        assert httpx.post(f"{base}/webhooks/leezy", content=body, headers=headers).status_code == 202

        # The leader dies without releasing its lease; the other scheduler takes over when it runs out.
        leader_pid = int(first_leader.split(":")[1])  # holder ids are role@host:pid:nonce
        leading = next(name for name in ("scheduler-1", "scheduler-2") if procs[name].proc.pid == leader_pid)
        procs[leading].kill()
        wait_until(lambda: leader(db_url) not in (None, first_leader), 30, "the standby scheduler to lead")

        wait_until(
            lambda: all("meeting.hasEnded" in subscriber.types_for(m) for m in live),
            90,
            f"every hasEnded\n{procs['worker-b'].output()[-3000:]}",
        )
        wait_until(lambda: all("meeting.deleted" in subscriber.types_for(m) for m in doomed), 30, "deletions")
        wait_until(
            lambda: subscriber.types_for("meeting_hooked") == ["meeting.booked"], 30, "webhook booking"
        )
        time.sleep(2)  # let any straggling duplicate arrive before counting

        for meeting in live:
            assert subscriber.types_for(meeting) == [
                "meeting.booked",
                "meeting.hasStarted",
                "meeting.hasEnded",
            ]
        for meeting in doomed:
            assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.deleted"]
        assert not subscriber.rejected
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                stuck = conn.execute(
                    text(
                        "SELECT count(*) FROM events WHERE status IN ('pending','leased') "
                        "AND due_at < now() - interval '5 seconds'"
                    )
                ).scalar()

            # A delivery is marked succeeded after the subscriber answered it: seen there first.
            def undelivered() -> int | None:
                with engine.connect() as conn:
                    return conn.execute(
                        text("SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
                    ).scalar()

            wait_until(lambda: undelivered() == 0, 15, "every delivery marked succeeded")
        finally:
            engine.dispose()
        assert stuck == 0
    finally:
        for proc in procs.values():
            proc.stop()
    for name, proc in procs.items():
        assert "Traceback" not in proc.output(), f"{name}:\n{proc.output()}"
