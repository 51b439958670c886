"""Issue 16 in real processes (`bookingsync sandbox`, `bookingsync run`, the `bookingsync routes
sync` command, a subscriber): drift repaired by the scheduler's sweep, a route backfilled over 500
existing meetings exactly once, and Meetergo's double opt-in confirmed later. Each test ends with
exactly the meetings, links, events and bookings that should exist: bookings counted in the
simulators' own state, meetings, links and intents in bookingsync's database, events at the
subscriber. Volumes and waits are set by knobs (drift interval, request rates), not sleeps."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bookingsync.sandbox import meetergo
from bookingsync.sandbox.leandata import booking as leandata_booking
from tests.e2e import identity_support
from tests.e2e.identity_support import event_types, links
from tests.e2e.support import BIN, Subscriber, wait_until
from tests.e2e.test_embedded import iso
from tests.e2e.test_safe_writes import Service, appointments, control, live_appointments, next_weekday

pytestmark = pytest.mark.e2e
MEETERGO_TOKEN = "e2e-identity-meetergo-url-token"

# -- drift repair ----------------------------------------------------------------------------------

# LeanData as the target: it sends no webhooks, and its own poll is put an hour out, so only the
# drift sweep (every second here) can see what a person did there.
LEANDATA_TARGET = """
[drift]
interval_seconds = 1
batch_size = 10

[[connections]]
id = "leandata"
provider = "leandata"
base_url = "{url}"
api_key = "ld_sandbox_api_key"
poll_interval_seconds = 3600
[connections.options]
trigger_node = "{node}"

[[routes]]
sources = ["leezy"]
targets = ["leandata"]
"""


def ld_meetings(service: Service) -> list[dict[str, Any]]:
    return control(service, "leandata", "meetings")["meetings"]


def ld_live(service: Service) -> list[dict[str, Any]]:
    return [m for m in ld_meetings(service) if m["meeting"]["bookIt"]["status"] != "canceled"]


def ld_start(meeting: dict[str, Any]) -> datetime:
    ms = meeting["meeting"]["calendarEvent"]["scheduledTime"]["start_time"]
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_a_booking_deleted_and_one_moved_by_hand_at_the_target_are_repaired_by_the_sweep(
    tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    service = identity_support.start(
        tmp_path,
        sandbox_proc,
        subscriber,
        LEANDATA_TARGET.format(url=sandbox_proc["leandata"], node=leandata_booking.TRIGGER_NODE),
    )
    ld = sandbox_proc["leandata"]
    try:
        slot = datetime.fromtimestamp((datetime.now(UTC).timestamp() // 1800 + 4) * 1800, UTC)
        kept = service.book(slot, "Ann Deleted")
        moved = service.book(slot + timedelta(hours=1), "Bob Moved")
        wait_until(
            lambda: (
                len(ld_meetings(service)) == 2 and [s for _, s, _ in service.intents()] == ["done", "done"]
            ),
            30,
            "both meetings mirrored into LeanData",
        )
        # A read taken within mirroring.lease_seconds (2 s) of our own write may predate it and is
        # not called a conflict (worker/conflicts.py): act as a person would, a little later.
        time.sleep(2.5)
        by_start = {ld_start(m): m["id"] for m in ld_meetings(service)}
        httpx.delete(f"{ld}/_sandbox/meetings/{by_start[slot]}").raise_for_status()
        httpx.post(
            f"{ld}/_sandbox/meetings/{by_start[slot + timedelta(hours=1)]}/reschedule",
            json={"start": iso(slot + timedelta(hours=3)), "end": iso(slot + timedelta(hours=3, minutes=30))},
        ).raise_for_status()

        def repaired() -> bool:
            live = sorted((ld_start(m), m["prospect_email"]) for m in ld_live(service))
            return live == [(slot, "ann@acme.example"), (slot + timedelta(hours=1), "bob@acme.example")]

        wait_until(repaired, 30, "the sweep to book the deleted one again and move the other back")
        # LeanData holds the repairs a moment before our answers to them are stored, and the
        # conflicts are delivered on their own.
        wait_until(
            lambda: (
                sorted(a for a, s, _ in service.intents() if s == "done")
                == ["cancel", "create", "create", "create", "reschedule"]
            ),
            30,
            "the repairs stored as done",
        )
        wait_until(
            lambda: all("meeting.sync_conflict" in subscriber.types_for(m) for m in (kept, moved)),
            30,
            "both conflicts delivered",
        )
        time.sleep(2)  # two more sweeps read both mirrors again: nothing may change
    finally:
        identity_support.stop(service)
    # The hand-deleted one is gone; one new booking replaced it; nothing else was booked or cancelled.
    assert len(ld_meetings(service)) == 2 and len(ld_live(service)) == 2
    assert service.meetings() == 2
    assert sorted(a for a, s, _ in service.intents() if s == "done") == [
        "cancel",
        "create",
        "create",
        "create",
        "reschedule",
    ]
    mirrors = service.query(
        "SELECT external_id, missing FROM links WHERE connection = 'leandata' ORDER BY id"
    )
    assert [missing for _, missing in mirrors] == [1, 0, 0]  # the deleted booking, the moved one, the new one
    assert {e for e, missing in mirrors if not missing} == {m["id"] for m in ld_meetings(service)}
    assert event_types(service) == [
        "meeting.booked",
        "meeting.booked",
        "meeting.sync_conflict",
        "meeting.sync_conflict",
    ]
    for leezy_id in (kept, moved):
        assert subscriber.types_for(leezy_id) == ["meeting.booked", "meeting.sync_conflict"]
    audit = service.query("SELECT action, connection FROM meeting_audit ORDER BY id")
    assert sorted(audit) == [("sync_conflict", "leandata"), ("sync_conflict", "leandata")]


# -- backfill --------------------------------------------------------------------------------------

MEETERGO = """
[[connections]]
id = "meetergo"
provider = "meetergo"
base_url = "{url}"
token = "{token}"
webhook_secret = "{secret}"
poll_interval_seconds = 3600
[connections.options]
meeting_type_id = "{meeting_type}"
requests_per_minute = 60000
host_ids = ["{host}"]
"""
ROUTE = """
[[routes]]
sources = ["leezy"]
targets = ["meetergo"]
"""
BACKFILLED = 500


def grid_slots(count: int) -> list[datetime]:
    """`count` half-hour slots on meetergo's default grid (weekdays 9-17 Berlin), from tomorrow."""
    slots: list[datetime] = []
    day = next_weekday(9)
    while len(slots) < count:
        local = day.astimezone(ZoneInfo("Europe/Berlin"))
        if local.weekday() < 5:
            slots += [day + timedelta(minutes=30 * i) for i in range(16)]
        day += timedelta(days=1)
    return slots[:count]


def routes_sync(config: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN), "routes", "sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_route_added_over_500_meetings_backfills_each_exactly_once(
    tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    slots = grid_slots(BACKFILLED)
    bulk = [
        {
            "title": f"Demo {i}",
            "start": iso(start),
            "end": iso(start + timedelta(minutes=30)),
            "timezone": "Europe/Berlin",
            "attendee_email": f"buyer{i}@acme.example",
        }
        for i, start in enumerate(slots)
    ]
    httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings/bulk", json={"meetings": bulk}, timeout=60
    ).raise_for_status()
    target = MEETERGO.format(
        url=sandbox_proc["meetergo"],
        token=meetergo.DEFAULT_TOKEN,
        secret=MEETERGO_TOKEN,
        meeting_type=meetergo.MEETING_TYPE_ID,
        host=meetergo.DEFAULT_USER_ID,
    )
    # 1. The meetings exist before the route: bookingsync reads them from Leezy, books nothing.
    service = identity_support.start(tmp_path, sandbox_proc, subscriber, target)
    try:
        wait_until(lambda: service.meetings() == BACKFILLED, 60, "the 500 Leezy meetings read")
    finally:
        identity_support.stop(service)
    assert appointments(service) == []
    # 2. The route is added; the backfill is stopped after 200 and resumed; then walked again from
    # the start (a stretch of it: what is in step costs no provider call, so it books nothing).
    config, _, _ = identity_support.write(tmp_path, sandbox_proc, subscriber, target + ROUTE)
    first = routes_sync(config, "--limit", "200")
    assert "meetergo: 200/500 meetings walked, 200 in step, 0 not" in first and "stopped" in first
    assert len(appointments(service)) == 200
    rest = routes_sync(config)
    assert "meetergo: 500/500 meetings walked, 300 in step, 0 not" in rest and "done" in rest
    again = routes_sync(config, "--restart", "--limit", "100")
    assert "meetergo: 100/500 meetings walked, 100 in step, 0 not" in again
    # Exactly once: 500 bookings at the target, one per meeting, at each meeting's slot.
    booked = live_appointments(service)
    assert len(appointments(service)) == len(booked) == BACKFILLED
    assert sorted(datetime.fromisoformat(a["meetingInfo"]["start"]).astimezone(UTC) for a in booked) == slots
    assert service.intents() == [("create", "done", i) for _, _, i in service.intents()]
    assert {i for _, _, i in service.intents()} == {a["id"] for a in booked}
    assert service.query("SELECT count(*) FROM links WHERE connection = 'meetergo' AND mirrored = 1") == [
        (BACKFILLED,)
    ]
    assert service.meetings() == BACKFILLED
    assert event_types(service) == ["meeting.booked"] * BACKFILLED  # a backfill announces nothing new


# -- Meetergo double opt-in ------------------------------------------------------------------------


def provisionals(service: Service) -> list[dict[str, Any]]:
    return control(service, "meetergo", "provisional-bookings")["provisional_bookings"]


def test_meetergo_double_opt_in_confirmed_later_and_a_provisional_cancel_that_cannot_be_made(
    tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    """A route books into a double-opt-in meeting type: meetergo answers with a provisional booking.
    Confirmed later, the appointment joins the same meeting (no second meeting, no second
    `booked`). A meeting cancelled while its booking is still provisional cannot be cancelled
    there (meetergo documents no call for it): the cancel is a failed write with that reason and
    a dead route delivery, never a silent success."""
    mg = sandbox_proc["meetergo"]
    service = identity_support.start(
        tmp_path,
        sandbox_proc,
        subscriber,
        MEETERGO.format(
            url=mg,
            token=meetergo.DEFAULT_TOKEN,
            secret=MEETERGO_TOKEN,
            meeting_type=meetergo.DOUBLE_OPT_IN_MEETING_TYPE_ID,
            host=meetergo.DEFAULT_USER_ID,
        ).replace("poll_interval_seconds = 3600", "poll_interval_seconds = 1")
        + ROUTE,
    )
    try:
        httpx.post(
            f"{mg}/_sandbox/webhooks",
            json={"endpoint": f"{service.base}/webhooks/meetergo?token={MEETERGO_TOKEN}"},
        ).raise_for_status()
        day = next_weekday(10)
        confirmed = service.book(day, "Ada Confirmed")
        dropped = service.book(day + timedelta(hours=2), "Cy Cancelled")
        wait_until(lambda: len(provisionals(service)) == 2, 30, "two provisional bookings at meetergo")
        by_start = {
            datetime.fromisoformat(p["start"]).astimezone(UTC): p["id"] for p in provisionals(service)
        }
        httpx.post(f"{mg}/_sandbox/provisional-bookings/{by_start[day]}/confirm").raise_for_status()
        wait_until(lambda: len(appointments(service)) == 1, 20, "the confirmed appointment")
        [appointment] = appointments(service)
        # Joined by our reference (meetergo keeps the attendee notes we planted it in) or, where a
        # confirmation drops them, by attendee and start (`double-opt-in`).
        joined = {("meetergo", appointment["id"], rule) for rule in ("reference", "double-opt-in")}
        wait_until(
            lambda: joined & links(service),
            30,
            "the appointment linked to the provisional booking's meeting",
        )
        service.cancel(dropped)
        wait_until(
            lambda: ("cancel", "failed") in [(a, s) for a, s, _ in service.intents()],
            30,
            "the provisional booking's cancel failed visibly",
        )
        # The route delivery is marked dead after the write is stored as failed, in a transaction
        # of its own; `deleted` reaches the subscriber by a delivery of its own.
        wait_until(
            lambda: (
                service.query(
                    "SELECT count(*) FROM deliveries WHERE subscription_id = 'route:meetergo' AND status = 'dead'"
                )[0][0]
                >= 1
            ),
            30,
            "the cancel's route delivery dead",
        )
        wait_until(lambda: "meeting.deleted" in subscriber.types_for(dropped), 30, "deleted delivered")
        time.sleep(1.5)  # more polls of both providers: nothing may change
    finally:
        identity_support.stop(service)
    # One meeting per real meeting; the confirmed appointment continues the provisional booking.
    assert service.meetings() == 2
    rows = service.query(
        "SELECT l.meeting_id, l.external_id, l.rule, l.content_hash FROM links l WHERE connection = 'meetergo'"
    )
    by_id = {e: (m, r, h) for m, e, r, h in rows}
    provisional_id = f"provisional:{by_start[day]}"
    assert set(by_id) == {
        provisional_id,
        appointment["id"],
        f"provisional:{by_start[day + timedelta(hours=2)]}",
    }
    assert by_id[appointment["id"]][0] == by_id[provisional_id][0]
    assert by_id[provisional_id][2] == "superseded"
    assert subscriber.types_for(confirmed) == ["meeting.booked"]
    assert subscriber.types_for(dropped) == ["meeting.booked", "meeting.deleted"]
    assert event_types(service) == ["meeting.booked", "meeting.booked", "meeting.deleted"]
    # At meetergo: one appointment, one provisional booking confirmed, the other still pending.
    assert [a["id"] for a in live_appointments(service)] == [appointment["id"]]
    assert sorted(p["status"] for p in provisionals(service)) == ["confirmed", "pending"]
    [(reason,)] = service.query("SELECT reason FROM write_intents WHERE action = 'cancel'")
    assert "provisional booking" in reason and "documents no way" in reason
    dead = service.query("SELECT status, last_error FROM deliveries WHERE subscription_id = 'route:meetergo'")
    assert [s for s, _ in dead].count("dead") == 1 and any("provisional" in (e or "") for _, e in dead)
