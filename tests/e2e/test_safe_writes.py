"""Safe writes end to end, in real processes: `bookingsync sandbox`, `bookingsync run`, a subscriber.

A route mirrors Leezy meetings into each provider that can be a target, with that provider's
webhooks pointed back at bookingsync as an operator would set them (Meetergo sends
`booking_created` for our own bookings too; HubSpot notifies, and bookingsync reads its CRM).
Bookings are counted in the simulators' own state (their `/_sandbox/` control APIs), meetings
in bookingsync's database, events at the subscriber:

* Meetergo: echoes by webhook after the answer, before it (a late answer) and by poll; a 504
  after the booking was stored, found again by our reference; a move (book new, cancel old) and
  a cancel, whose echoes change nothing; a worker SIGKILLed between the answer and our commit.
* HubSpot: every mirror comes back through the CRM read and is recognised (no second meeting);
  a connection closed before the answer, found by the CRM search; move and cancel by CRM PATCH.
* RocketLead: an answer lost after the booking was stored is held as unknown (no second booking),
  listed by `mirrors list --unresolved`, warned about; a later cancel says it cannot reach it.
  A move whose cancel is refused (token without admin scope) keeps the new booking linked and
  never books a third time.
* LeanData: a 504 after booking, found by prospect email and slot; move and cancel.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bookingsync.sandbox import hubspot, meetergo, rocketlead
from bookingsync.sandbox.leandata import booking as leandata_booking
from tests.e2e.support import BIN, SUBSCRIBER_SECRET, Proc, Subscriber, free_port, wait_until
from tests.e2e.test_embedded import LEEZY_SECRET, iso

pytestmark = pytest.mark.e2e
MEETERGO_TOKEN = "e2e-meetergo-url-token"
ALL_DAY = {str(day): [[0, 1440]] for day in range(7)}


@dataclass
class Service:
    base: str
    db: Path
    config: Path
    proc: Proc
    sandbox: dict[str, str]
    subscriber: Subscriber

    def meetings(self) -> int:
        return self.query("SELECT count(*) FROM meetings")[0][0]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, timeout=10) as conn:
            return list(conn.execute(sql))

    def intents(self) -> list[tuple[str, str, str | None]]:
        return [
            tuple(row)
            for row in self.query("SELECT action, state, external_id FROM write_intents ORDER BY id")
        ]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN), *args, "--config", str(self.config)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def restart(self) -> None:
        self.proc = Proc("run-again", ["run", "--config", str(self.config)], self.proc.log.parent).start()
        wait_until(
            lambda: httpx.get(f"{self.base}/readyz", timeout=1).is_success, 60, "bookingsync run again"
        )

    # -- the source --------------------------------------------------------------------------------

    def book(self, start: datetime, name: str, minutes: int = 30) -> str:
        response = httpx.post(
            f"{self.sandbox['leezy']}/_sandbox/meetings",
            json={
                "title": f"Demo with {name}",
                "start": iso(start),
                "end": iso(start + timedelta(minutes=minutes)),
                "timezone": "Europe/Berlin",
                "attendee_email": f"{name.split()[0].lower()}@acme.example",
                "attendee_name": name,
            },
        )
        response.raise_for_status()
        return response.json()["id"]

    def move(self, meeting: str, start: datetime, minutes: int = 30) -> None:
        httpx.post(
            f"{self.sandbox['leezy']}/_sandbox/meetings/{meeting}/reschedule",
            json={"start": iso(start), "end": iso(start + timedelta(minutes=minutes))},
        ).raise_for_status()

    def cancel(self, meeting: str) -> None:
        httpx.post(f"{self.sandbox['leezy']}/_sandbox/meetings/{meeting}/cancel", json={}).raise_for_status()

    def fault(self, provider: str, **fault: Any) -> None:
        httpx.post(f"{self.sandbox[provider]}/_sandbox/faults", json=fault).raise_for_status()


def control(service: Service, provider: str, path: str) -> Any:
    return httpx.get(f"{service.sandbox[provider]}/_sandbox/{path}", timeout=10).json()


RUN_CONFIG = """
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
lease_seconds = {mirroring_lease}
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


def write_run_config(
    config: Path,
    db: Path,
    port: int,
    sandbox: dict[str, str],
    subscriber: Subscriber,
    blocks: str,
    *,
    mirroring_lease: float,
    extra: str = "",
) -> None:
    """`bookingsync run` on SQLite, reading Leezy every second, with `blocks` (connections and
    routes) after Leezy's and `extra` (sections) before the connections."""
    config.write_text(
        RUN_CONFIG.format(
            db=db,
            port=port,
            mirroring_lease=mirroring_lease,
            extra=extra,
            leezy=sandbox["leezy"],
            leezy_secret=LEEZY_SECRET,
            blocks=blocks,
            subscriber=subscriber.url,
            subscriber_secret=SUBSCRIBER_SECRET,
        )
    )


@pytest.fixture
def start_service(
    tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> Iterator[Callable[[str, str], Service]]:
    started: list[Service] = []

    def start(target_id: str, target: str) -> Service:
        port = free_port()
        db = tmp_path / "safe.db"
        config = tmp_path / "bookingsync.toml"
        route = f'[[routes]]\nsources = ["leezy"]\ntargets = ["{target_id}"]\n'
        write_run_config(config, db, port, sandbox_proc, subscriber, target + route, mirroring_lease=4)
        proc = Proc("run", ["run", "--config", str(config)], tmp_path).start()
        service = Service(f"http://127.0.0.1:{port}", db, config, proc, sandbox_proc, subscriber)
        started.append(service)
        wait_until(
            lambda: httpx.get(f"{service.base}/readyz", timeout=1).is_success,
            60,
            f"bookingsync run\n{proc.output()}",
        )
        httpx.post(
            f"{sandbox_proc['leezy']}/_sandbox/webhooks",
            json={
                "target_url": f"{service.base}/webhooks/leezy",
                "secret": LEEZY_SECRET,
                "event_types": ["meeting.scheduled", "meeting.cancelled", "meeting.completed"],
            },
        ).raise_for_status()
        return service

    yield start
    for service in started:
        service.proc.stop()
        output = service.proc.output()
        assert "Traceback" not in output, output


def next_weekday(hour: int, zone: str = "Europe/Berlin") -> datetime:
    """The next Monday-to-Friday after today at `hour` local time, in UTC."""
    day = datetime.now(ZoneInfo(zone)).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# -- Meetergo --------------------------------------------------------------------------------------


MEETERGO = """
[[connections]]
id = "meetergo"
provider = "meetergo"
base_url = "{url}"
token = "{token}"
webhook_secret = "{secret}"
poll_interval_seconds = 1
[connections.options]
meeting_type_id = "{meeting_type}"
host_ids = ["{host}"]
"""


def appointments(service: Service) -> list[dict[str, Any]]:
    return control(service, "meetergo", "appointments")["appointments"]


def live_appointments(service: Service) -> list[dict[str, Any]]:
    return [a for a in appointments(service) if not a.get("cancel")]


def start_of(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meetingInfo"]["start"]).astimezone(UTC)


def test_meetergo_echoes_lost_answers_moves_and_a_killed_worker(start_service, sandbox_proc) -> None:
    service = start_service(
        "meetergo",
        MEETERGO.format(
            url=sandbox_proc["meetergo"],
            token=meetergo.DEFAULT_TOKEN,
            secret=MEETERGO_TOKEN,
            meeting_type=meetergo.MEETING_TYPE_ID,
            host=meetergo.DEFAULT_USER_ID,
        ),
    )
    # Meetergo's webhooks point at bookingsync, as the README shows: our own bookings come back.
    httpx.post(
        f"{sandbox_proc['meetergo']}/_sandbox/webhooks",
        json={"endpoint": f"{service.base}/webhooks/meetergo?token={MEETERGO_TOKEN}"},
    ).raise_for_status()
    day = next_weekday(10)
    # 1. The echo after the answer (webhook, then poll), 2. before it (a late answer),
    # 3. a 504 after the booking was stored (found again by our reference in the notes).
    plain = service.book(day, "Ada Plain")
    wait_until(lambda: len(appointments(service)) == 1, 30, "the first appointment")
    service.fault("meetergo", kind="slow_answer", path="/v4/booking", method="POST", seconds=2.0)
    late = service.book(day + timedelta(hours=1), "Bo Late")
    wait_until(lambda: len(appointments(service)) == 2, 30, "the appointment answered late")
    service.fault("meetergo", kind="lost_504", path="/v4/booking", method="POST")
    lost = service.book(day + timedelta(hours=2), "Cy Lost")
    wait_until(
        lambda: (
            ("create", "done", None) not in service.intents()
            and len(service.intents()) == 3
            and all(state == "done" for _, state, _ in service.intents())
        ),
        40,
        "three writes done",
    )
    assert len(appointments(service)) == 3
    # 4. A move (book the new time, cancel the old one), 5. a cancel.
    service.move(plain, day + timedelta(hours=3))
    wait_until(
        lambda: (
            sorted(start_of(a) for a in live_appointments(service))[-1] == day + timedelta(hours=3)
            and len(live_appointments(service)) == 3
        ),
        40,
        "the move at meetergo",
    )
    service.cancel(late)
    wait_until(lambda: len(live_appointments(service)) == 2, 30, "the cancel at meetergo")
    # 6. A worker killed between meetergo storing the booking and our commit of its answer.
    service.fault("meetergo", kind="slow_answer", path="/v4/booking", method="POST", seconds=8.0)
    killed = service.book(day + timedelta(hours=4), "Di Killed")
    wait_until(lambda: len(appointments(service)) == 5, 30, "the booking the dying worker made")
    service.proc.kill()
    service.restart()
    wait_until(
        lambda: len(service.intents()) == 7 and all(s == "done" for _, s, _ in service.intents()),
        40,
        "the killed worker's write resolved after restart",
    )
    httpx.get(f"{sandbox_proc['meetergo']}/_sandbox/deliveries", params={"wait": "true"}, timeout=30)
    # Its `booked` may have been out with the killed process: sent again once that lease runs out.
    wait_until(lambda: "meeting.booked" in service.subscriber.types_for(killed), 30, "the last booked")
    time.sleep(3)  # a few more polls re-read every appointment, ours included: nothing may change

    # Exactly the writes the source asked for: 4 creates + 1 move (create) = 5 bookings, 2 cancels.
    assert len(appointments(service)) == 5
    assert sorted(start_of(a) for a in live_appointments(service)) == [
        day + timedelta(hours=2),
        day + timedelta(hours=3),
        day + timedelta(hours=4),
    ]
    assert sorted(action for action, _, _ in service.intents()) == ["cancel", "cancel"] + ["create"] * 5
    assert service.meetings() == 4  # one canonical meeting per real meeting, no echo-born ones
    assert service.query("SELECT count(*) FROM links WHERE connection = 'meetergo' AND mirrored = 0") == [
        (0,)
    ]
    types = (
        service.subscriber.types_for(plain)
        + service.subscriber.types_for(late)
        + service.subscriber.types_for(lost)
        + service.subscriber.types_for(killed)
    )
    assert sorted(types) == sorted(["meeting.booked"] * 4 + ["meeting.rescheduled", "meeting.deleted"])
    titles = {item.body["data"]["meeting"]["title"] for item in service.subscriber.received}
    assert titles <= {"Demo with Ada Plain", "Demo with Bo Late", "Demo with Cy Lost", "Demo with Di Killed"}
    webhook_deliveries = control(service, "meetergo", "deliveries")["deliveries"]
    assert sum(1 for d in webhook_deliveries if d["status_code"] == 202) >= 5  # the echoes did reach us


# -- HubSpot ---------------------------------------------------------------------------------------


HUBSPOT = """
[[connections]]
id = "hubspot"
provider = "hubspot"
base_url = "{url}"
token = "{token}"
webhook_secret = "{secret}"
poll_interval_seconds = 1
[connections.options]
meeting_slug = "e2e-any-time"
booking_timezone = "UTC"
"""


def crm_meetings(service: Service) -> list[dict[str, Any]]:
    return control(service, "hubspot", "meetings")["meetings"]


def test_hubspot_mirrors_come_back_as_themselves_and_move_and_cancel_by_crm(
    start_service, sandbox_proc
) -> None:
    hub = sandbox_proc["hubspot"]
    httpx.post(
        f"{hub}/_sandbox/links",
        json={"slug": "e2e-any-time", "name": "Any time", "timezone": "UTC", "weekly_hours": ALL_DAY},
    ).raise_for_status()
    service = start_service(
        "hubspot", HUBSPOT.format(url=hub, token=hubspot.DEFAULT_TOKEN, secret=hubspot.DEFAULT_CLIENT_SECRET)
    )
    httpx.put(
        f"{hub}/_sandbox/webhooks",
        json={
            "target_url": f"{service.base}/webhooks/hubspot",
            "client_secret": hubspot.DEFAULT_CLIENT_SECRET,
        },
    ).raise_for_status()
    httpx.post(f"{hub}/_sandbox/subscriptions", json={"meetings": True}).raise_for_status()
    day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    first = service.book(day, "Eve First")
    wait_until(lambda: len(crm_meetings(service)) == 1, 30, "the first CRM meeting")
    service.fault(
        "hubspot", kind="lost_drop", path="/scheduler/2026-03/meetings/meeting-links/book", method="POST"
    )
    second = service.book(day + timedelta(hours=1), "Fay Dropped")
    wait_until(lambda: [s for _, s, _ in service.intents()] == ["done", "done"], 40, "both writes done")
    wait_until(
        lambda: service.query("SELECT count(*) FROM links WHERE connection = 'hubspot'") == [(2,)],
        20,
        "both CRM meetings read back",
    )
    service.move(first, day + timedelta(hours=2))
    service.cancel(second)

    def settled() -> bool:
        by_start = {
            m["properties"]["hs_meeting_start_time"]: m["properties"].get("hs_meeting_outcome")
            for m in crm_meetings(service)
        }
        return by_start == {
            iso(day + timedelta(hours=2)).replace("Z", ".000Z"): "SCHEDULED",
            iso(day + timedelta(hours=1)).replace("Z", ".000Z"): "CANCELED",
        }

    wait_until(settled, 40, "the move and the cancel at HubSpot")
    # Both events, each delivered on its own: `deleted` arriving first says nothing of `rescheduled`.
    wait_until(lambda: service.subscriber.types_for(second)[-1:] == ["meeting.deleted"], 20, "deleted")
    wait_until(lambda: service.subscriber.types_for(first)[-1:] == ["meeting.rescheduled"], 20, "rescheduled")
    assert len(crm_meetings(service)) == 2 and service.meetings() == 2
    # The mirrors are linked under the CRM ids that polls and webhooks use, never as meetings of their own.
    crm_ids = {m["id"] for m in crm_meetings(service)}
    assert {
        row[0] for row in service.query("SELECT external_id FROM links WHERE connection = 'hubspot'")
    } == crm_ids
    assert service.subscriber.types_for(first) == ["meeting.booked", "meeting.rescheduled"]
    assert service.subscriber.types_for(second) == ["meeting.booked", "meeting.deleted"]
    assert sorted(a for a, _, _ in service.intents()) == ["cancel", "create", "create", "reschedule"]


# -- RocketLead ------------------------------------------------------------------------------------


ROCKETLEAD = """
[[connections]]
id = "rocketlead"
provider = "rocketlead"
base_url = "{url}"
token = "{token}"
[connections.options]
calendar_id = "{calendar}"
appointment_type_id = "{atype}"
"""


def rl_bookings(service: Service) -> list[dict[str, Any]]:
    return [item["booking"] for item in control(service, "rocketlead", "bookings")["bookings"]]


def test_rocketlead_lost_answer_is_held_and_a_refused_cancel_never_books_a_third(
    start_service, sandbox_proc
) -> None:
    rl = sandbox_proc["rocketlead"]
    write_only = httpx.post(f"{rl}/_sandbox/tokens", json={"scopes": ["write"]}).json()["token"]
    service = start_service(
        "rocketlead",
        ROCKETLEAD.format(
            url=rl,
            token=write_only,
            calendar=rocketlead.DEFAULT_CALENDAR_ID,
            atype=rocketlead.DEFAULT_APPOINTMENT_TYPE_ID,
        ),
    )
    day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=30, second=0, microsecond=0)
    # A 504 after RocketLead stored the booking: no way to ask, so held as unknown.
    service.fault("rocketlead", kind="lost_504", path="/connect/calendar_bookings/", method="POST")
    held = service.book(day, "Gus Held")
    wait_until(lambda: service.intents() == [("create", "unknown", None)], 30, "the write held as unknown")
    unresolved = service.cli("mirrors", "list", "--unresolved")
    assert "unknown" in unresolved and "rocketlead" in unresolved
    meeting_id = service.query("SELECT meeting_id FROM write_intents")[0][0]
    assert f"meeting {meeting_id}" in service.proc.output() and "WARNING" in service.proc.output()
    metrics = httpx.get(f"{service.base}/metrics").text
    assert 'bookingsync_mirror_writes{state="unknown"} 1.0' in metrics
    service.cancel(held)
    wait_until(
        lambda: (
            "cannot reach"
            in " ".join(
                row[0] or ""
                for row in service.query("SELECT last_error FROM deliveries WHERE status = 'dead'")
            )
        ),
        30,
        "the cancel saying it cannot reach the booking",
    )
    assert len(rl_bookings(service)) == 1  # booked once, never again

    # A move whose cancel is refused: the token has no admin scope.
    moved = service.book(day + timedelta(hours=2), "Hal Moved")
    wait_until(lambda: len(rl_bookings(service)) == 2, 30, "the second booking")
    service.move(moved, day + timedelta(hours=3))
    wait_until(
        lambda: (
            len(rl_bookings(service)) == 3
            and "admin"
            in " ".join(
                row[0] or ""
                for row in service.query("SELECT last_error FROM deliveries WHERE status = 'dead'")
            )
        ),
        30,
        "the new booking, and the old one's cancel refused",
    )
    link = service.query(
        "SELECT l.external_id FROM links l JOIN write_intents w ON w.meeting_id = l.meeting_id "
        "WHERE l.connection = 'rocketlead' AND w.action = 'cancel' AND l.content_hash != "
        "'superseded'"
    )
    newest = max(rl_bookings(service), key=lambda b: b["startDateTime"])
    assert (
        newest["startDateTime"].startswith(iso(day + timedelta(hours=3))[:16]) and link[0][0] == newest["id"]
    )
    refused = "SELECT count(*) FROM write_intents WHERE action = 'cancel' AND state = 'failed'"
    assert service.query(refused) == [(1,)]
    service.cli("deliveries", "replay", "--all-dead")
    wait_until(lambda: service.query(refused) == [(2,)], 30, "the cancel tried again on replay")
    assert len(rl_bookings(service)) == 3  # never a third booking for the moved meeting
    assert service.meetings() == 2


# -- LeanData --------------------------------------------------------------------------------------


LEANDATA = """
[[connections]]
id = "leandata"
provider = "leandata"
base_url = "{url}"
api_key = "ld_sandbox_api_key"
poll_interval_seconds = 1
[connections.options]
trigger_node = "{node}"
"""


def ld_meetings(service: Service) -> list[dict[str, Any]]:
    return control(service, "leandata", "meetings")["meetings"]


def ld_live(service: Service) -> list[dict[str, Any]]:
    return [m for m in ld_meetings(service) if m["meeting"]["bookIt"]["status"] != "canceled"]


def test_leandata_lost_answer_found_by_email_and_slot_then_moved_and_cancelled(
    start_service, sandbox_proc
) -> None:
    service = start_service(
        "leandata", LEANDATA.format(url=sandbox_proc["leandata"], node=leandata_booking.TRIGGER_NODE)
    )
    now = datetime.now(UTC)
    slot = datetime.fromtimestamp(
        (now.timestamp() // 1800 + 4) * 1800, UTC
    )  # a 30-minute boundary, 1.5-2 h out
    service.fault("leandata", kind="lost_504", path="/v1/meeting", method="POST")
    meeting = service.book(slot, "Ivy Lost")
    wait_until(
        lambda: (
            service.intents() == [("create", "done", ld_meetings(service)[0]["id"])]
            if ld_meetings(service)
            else False
        ),
        40,
        "the write found after its lost answer",
    )
    service.move(meeting, slot + timedelta(hours=1))
    wait_until(
        lambda: (
            [m["meeting"]["calendarEvent"]["scheduledTime"]["start_time"] for m in ld_live(service)]
            == [int((slot + timedelta(hours=1)).timestamp() * 1000)]
        ),
        40,
        "the move at LeanData",
    )
    service.cancel(meeting)
    wait_until(lambda: ld_live(service) == [], 40, "the cancel at LeanData")
    # The cancel at LeanData and `deleted` at the subscriber are two deliveries of one change, made
    # side by side: the one seen first says nothing of the other.
    wait_until(lambda: "meeting.deleted" in service.subscriber.types_for(meeting), 20, "deleted")
    assert len(ld_meetings(service)) == 1 and service.meetings() == 1
    assert service.subscriber.types_for(meeting) == [
        "meeting.booked",
        "meeting.rescheduled",
        "meeting.deleted",
    ]
    assert [a for a, _, _ in service.intents()] == ["create", "reschedule", "cancel"]
