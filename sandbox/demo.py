"""A demo driver that keeps the sandbox's providers busy, as real customers would.

Every ``interval_seconds`` the driver makes one change at each of Leezy, LeanData, Meetergo and
HubSpot (as if made in the provider's own pages, so their webhooks fire): mostly a
new booking starting 20–90 s from now and lasting 20–60 s (so the service's start and end timers
fire within a minute or two), sometimes a reschedule or a cancellation of a meeting that has not
started yet. Leezy meetings that have ended are marked completed, as Leezy would. LeanData
bookings use `DEMO_PROSPECT_EMAILS` only, so a service can be configured to watch exactly those.

With a ``seed`` the sequence of choices is reproducible (ids stay random: they are the
providers', not the driver's). `step()` makes one round of changes synchronously, for tests.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bookingsync.sandbox.hubspot import parse_time as hubspot_time

if TYPE_CHECKING:
    from bookingsync.sandbox.server import RunningSandbox

DEMO_PROSPECT_EMAILS = (
    "ada.prospect@demo.example",
    "grace.prospect@demo.example",
    "linus.prospect@demo.example",
)
DEMO_ATTENDEES = (
    ("Lisa Thompson", "lisa.thompson@acme.example"),
    ("Omar Haddad", "omar.haddad@globex.example"),
    ("Mei Chen", "mei.chen@initech.example"),
    ("Jonas Berg", "jonas.berg@umbrella.example"),
)
DEMO_TIMEZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
START_DELAY_SECONDS = (20, 90)
DURATION_SECONDS = (20, 60)
# Relative weights of book / reschedule / cancel: bookings dominate so the demo fills up.
ACTION_WEIGHTS = {"book": 5, "reschedule": 2, "cancel": 2}


class DemoDriver:
    def __init__(
        self, sandbox: RunningSandbox, *, interval_seconds: float = 5.0, seed: int | None = None
    ) -> None:
        self.sandbox = sandbox
        self.interval_seconds = interval_seconds
        self.actions: list[str] = []  # what the driver did, oldest first
        self._rng = random.Random(seed)
        self._leezy_ids: list[str] = []
        self._leandata_ids: list[str] = []
        self._meetergo_ids: list[str] = []
        self._hubspot_ids: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-demo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_seconds + 5)
            self._thread = None

    def step(self) -> None:
        self._complete_ended_leezy()
        self._leezy_change()
        self._leandata_change()
        self._meetergo_change()
        self._hubspot_change()

    def _run(self) -> None:
        while True:
            self.step()
            if self._stop.wait(self.interval_seconds):
                return

    def _times(self) -> tuple[datetime, datetime]:
        delay = timedelta(seconds=self._rng.randint(*START_DELAY_SECONDS))
        start = self.sandbox.leezy.now() + delay
        return start, start + timedelta(seconds=self._rng.randint(*DURATION_SECONDS))

    def _choose(self, upcoming: list[str]) -> str:
        action = self._rng.choices(list(ACTION_WEIGHTS), weights=list(ACTION_WEIGHTS.values()))[0]
        return action if upcoming else "book"

    def _complete_ended_leezy(self) -> None:
        state = self.sandbox.leezy
        now = state.now()
        for meeting_id in self._leezy_ids:
            meeting = state.get(meeting_id)
            if meeting.status == "scheduled" and meeting.end_time <= now:
                state.complete(meeting_id)
                self.actions.append(f"leezy complete {meeting_id}")

    def _leezy_change(self) -> None:
        state = self.sandbox.leezy
        now = state.now()
        upcoming = [
            i for i in self._leezy_ids if state.get(i).status == "scheduled" and state.get(i).start_time > now
        ]
        action = self._choose(upcoming)
        if action == "book":
            name, email = self._rng.choice(DEMO_ATTENDEES)
            start, end = self._times()
            meeting_id = state.book(
                f"Demo call with {name}",
                start,
                end,
                self._rng.choice(DEMO_TIMEZONES),
                email,
                attendee_name=name,
            )
            self._leezy_ids.append(meeting_id)
        elif action == "reschedule":
            meeting_id = self._rng.choice(upcoming)
            state.reschedule(meeting_id, *self._times())
        else:
            meeting_id = self._rng.choice(upcoming)
            state.cancel(meeting_id, reason="Attendee cancelled (demo)")
        self.actions.append(f"leezy {action} {meeting_id}")

    def _leandata_change(self) -> None:
        state = self.sandbox.leandata
        now_ms = state.now_ms()
        held = {m.id: m for m in state.meetings()}
        upcoming = [
            i
            for i in self._leandata_ids
            if i in held and held[i].bookit_status != "canceled" and held[i].start_ms > now_ms
        ]
        action = self._choose(upcoming)
        if action == "book":
            start, end = self._times()
            meeting_id = state.book("Intro Call (demo)", start, end, self._rng.choice(DEMO_PROSPECT_EMAILS))
            self._leandata_ids.append(meeting_id)
        elif action == "reschedule":
            meeting_id = self._rng.choice(upcoming)
            state.reschedule(meeting_id, *self._times())
        else:
            meeting_id = self._rng.choice(upcoming)
            state.cancel(meeting_id)
        self.actions.append(f"leandata {action} {meeting_id}")

    def _meetergo_change(self) -> None:
        """As if booked, moved or cancelled in meetergo's own pages (fires its webhooks)."""
        state = self.sandbox.meetergo
        upcoming = [
            a.id
            for a in state.appointments()
            if a.id in self._meetergo_ids and a.cancel is None and a.start > state.now()
        ]
        action = self._choose(upcoming)
        if action == "book":
            name, email = self._rng.choice(DEMO_ATTENDEES)
            start, end = self._times()
            meeting_id = state.create_appointment(start, email, attendee_name=name, end=end).id
            self._meetergo_ids.append(meeting_id)
        elif action == "reschedule":
            meeting_id = self._rng.choice(upcoming)
            start, end = self._times()
            meeting_id = state.reschedule(meeting_id, start, end=end).id
        else:
            meeting_id = self._rng.choice(upcoming)
            state.cancel(meeting_id, reason="Attendee cancelled (demo)")
        self.actions.append(f"meetergo {action} {meeting_id}")

    def _hubspot_change(self) -> None:
        """As if done in HubSpot's UI (fires its signed webhooks)."""
        state = self.sandbox.hubspot
        now = state.now()
        upcoming = [
            m.id
            for m in state.meetings()
            if m.id in self._hubspot_ids
            and not m.archived
            and m.properties.get("hs_meeting_outcome") != "CANCELED"
            and hubspot_time(m.properties["hs_meeting_start_time"]) > now
        ]
        action = self._choose(upcoming)
        if action == "book":
            name, email = self._rng.choice(DEMO_ATTENDEES)
            start, end = self._times()
            meeting_id = state.create_meeting(f"HubSpot demo with {name}", start, end, attendee_email=email)
            self._hubspot_ids.append(meeting_id)
        elif action == "reschedule":
            meeting_id = self._rng.choice(upcoming)
            state.reschedule(meeting_id, *self._times())
        else:
            meeting_id = self._rng.choice(upcoming)
            state.cancel(meeting_id)
        self.actions.append(f"hubspot {action} {meeting_id}")
