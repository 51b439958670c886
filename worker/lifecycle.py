"""Which events a change to a meeting produces: a pure function of old state, new content and now.

The rules (DESIGN.md, Events):

* `booked` once per meeting, ever, when it is first seen active (scheduled or confirmed);
  a provisional (`pending`) booking is not booked until it is confirmed.
* `hasStarted` / `hasEnded` are timers due at the start / end, set when the meeting is booked
  and moved by `rescheduled`.
* Late first sight. A meeting first seen (or moved) after its start gets `hasStarted` at once,
  once, carrying `late_by` (how long after the start it was set); one seen after its end gets
  both, each marked. A poll stall, a rate-limit pause or a prospect added to LeanData's watch
  list late must not leave a CRM waiting for a `hasStarted` that never comes. The limit is the
  late window (`window`: `events.late_window_seconds`, 24 h by default): a meeting that ended
  longer ago than that is history, and its timers are skipped and reported in `Plan.skipped`
  (the store counts and logs them), never silently.
* `deleted` when a booked meeting is cancelled or vanishes at its source; it cancels the pending
  timers. A meeting whose end has passed stays ended: a later cancellation changes nothing.
* `updated` for any other change of a booked meeting, including a deleted meeting that comes
  back to life (a new *generation*: its timers are new ones; `booked` is not sent twice).
* `completed` / `noShow` when a booked meeting's provider says it was held / the attendee did
  not come (the status turns `completed` / `no_show`), once per generation each, instead of
  `updated`. A cancellation after the end that we keep as `completed` is our reading, not the
  provider's word, and stays silent.
* Backfill (`events.backfill`): with `upcoming` (the default) a meeting first seen when it is
  already over (its end before now minus the late window) is stored but not announced: no
  `booked`, no timers, and nothing later while it stays over. If it is moved into the future it
  is announced then, as `booked`. With `all` every active meeting is announced once.

What consumers get beside the meeting: `rescheduled` carries `previous` (start, end before the
move), and `rescheduled`, `updated`, `completed` and `noShow` carry `changes`: every field that
differs, with its old and new value (`diff`).

Timers stand while the meeting is booked and not deleted; `completed` and `no_show` keep them
(the meeting happened, `hasEnded` is still news). The relay re-checks a timer against the
meeting when it is due (`timer_is_current`), which drops any timer this module superseded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bookingsync.models.meeting import Meeting, MeetingStatus


class EventType(StrEnum):
    BOOKED = "meeting.booked"
    HAS_STARTED = "meeting.hasStarted"
    HAS_ENDED = "meeting.hasEnded"
    DELETED = "meeting.deleted"
    RESCHEDULED = "meeting.rescheduled"
    UPDATED = "meeting.updated"
    COMPLETED = "meeting.completed"
    NO_SHOW = "meeting.noShow"
    # Issue 16: not lifecycle changes but what happened to the meeting's identity and mirrors.
    SYNC_CONFLICT = "meeting.sync_conflict"  # a change at a target the route's policy did not take
    LINKED = "meeting.linked"  # a person joined a provider's booking to this meeting
    UNLINKED = "meeting.unlinked"  # a person split a provider's booking off this meeting


class Backfill(StrEnum):
    """Whether a meeting first seen when it is already over is announced (`events.backfill`)."""

    UPCOMING = "upcoming"
    ALL = "all"


TIMER_TYPES = frozenset({EventType.HAS_STARTED, EventType.HAS_ENDED})
# A booked meeting turning into one of these statuses is its own event, not `updated`.
OUTCOME_EVENTS = {MeetingStatus.COMPLETED: EventType.COMPLETED, MeetingStatus.NO_SHOW: EventType.NO_SHOW}


@dataclass(frozen=True)
class Change:
    """One field that differs between two versions of a meeting (`attendee.email`, `hosts`, …)."""

    field: str
    old: Any
    new: Any


def _fields(meeting: Meeting) -> dict[str, Any]:
    return {
        "status": meeting.status.value,
        "title": meeting.title,
        "start": meeting.start,
        "end": meeting.end,
        "timezone": meeting.timezone,
        "attendee.email": meeting.attendee.email,
        "attendee.name": meeting.attendee.name,
        "attendee.phone": meeting.attendee.phone,
        "hosts": meeting.hosts,
        "conference_url": meeting.conference_url,
    }


def diff(old: Meeting, new: Meeting) -> tuple[Change, ...]:
    """Every canonical field whose value differs, in a fixed order."""
    before, after = _fields(old), _fields(new)
    return tuple(Change(name, before[name], after[name]) for name in before if before[name] != after[name])


@dataclass(frozen=True)
class MeetingState:
    """What the store knows of a meeting, as the rules need it."""

    meeting: Meeting
    booked: bool = False
    deleted: bool = False
    generation: int = 0
    version: int = 0


@dataclass(frozen=True)
class EventIntent:
    type: EventType
    # Distinguishes occurrences of one type for one meeting; part of the dedupe key.
    occurrence: str
    occurred_at: datetime
    due_at: datetime
    generation: int
    set_for: datetime | None = None  # timers: the start/end this timer belongs to
    previous: tuple[datetime, datetime] | None = None  # rescheduled: (start, end) before the move
    changes: tuple[Change, ...] = ()  # rescheduled, updated, completed, noShow: what differs
    late_by: timedelta | None = None  # timers set after their moment: by how much (late first sight)

    @property
    def is_timer(self) -> bool:
        return self.type in TIMER_TYPES


@dataclass(frozen=True)
class Plan:
    state: MeetingState
    events: tuple[EventIntent, ...] = ()
    cancel_timers: bool = False  # cancel every pending timer of the meeting before adding `events`
    # Timers not set because the meeting ended longer ago than the late window: counted and logged.
    skipped: tuple[EventType, ...] = ()


def _timers(meeting: Meeting, generation: int, now: datetime, window: timedelta) -> list[EventIntent]:
    """The meeting's `hasStarted` and `hasEnded`; those already past are due now, marked `late_by`."""
    if _over(meeting, now, window):
        return []  # history: see `_skipped`
    intents = []
    for kind, at in ((EventType.HAS_STARTED, meeting.start), (EventType.HAS_ENDED, meeting.end)):
        intents.append(
            EventIntent(
                type=kind,
                occurrence=f"g{generation}:{at.isoformat()}",
                occurred_at=at,
                due_at=max(at, now),
                generation=generation,
                set_for=at,
                late_by=now - at if at < now else None,
            )
        )
    return intents


def _skipped(meeting: Meeting, now: datetime, window: timedelta) -> tuple[EventType, ...]:
    """The timers `_timers` leaves out of a meeting that ended longer ago than the late window."""
    return (EventType.HAS_STARTED, EventType.HAS_ENDED) if _over(meeting, now, window) else ()


def _now_event(
    kind: EventType,
    occurrence: str,
    now: datetime,
    generation: int,
    *,
    previous: tuple[datetime, datetime] | None = None,
    changes: tuple[Change, ...] = (),
) -> EventIntent:
    return EventIntent(
        type=kind,
        occurrence=occurrence,
        occurred_at=now,
        due_at=now,
        generation=generation,
        previous=previous,
        changes=changes,
    )


def _over(meeting: Meeting, now: datetime, window: timedelta) -> bool:
    """Ended before the late window: history, not news (the same cut-off for `booked` and timers)."""
    return meeting.end < now - window


def _announces(new: Meeting, now: datetime, grace: timedelta, backfill: Backfill) -> bool:
    return new.active and (backfill is Backfill.ALL or not _over(new, now, grace))


def _ended(state: MeetingState, now: datetime) -> bool:
    return state.booked and not state.deleted and state.meeting.end <= now


def decide(
    old: MeetingState | None,
    new: Meeting,
    now: datetime,
    grace: timedelta,
    backfill: Backfill = Backfill.UPCOMING,
) -> Plan:
    """The stored state and the events that follow from `new` arriving at `now`.

    `grace` is the late window: timers set up to this long after a meeting's end still fire.
    """
    if old is None:
        if _announces(new, now, grace, backfill):
            state = MeetingState(meeting=new, booked=True, version=1)
            events = [_now_event(EventType.BOOKED, "once", now, 0), *_timers(new, 0, now, grace)]
            return Plan(state=state, events=tuple(events), skipped=_skipped(new, now, grace))
        return Plan(
            state=MeetingState(meeting=new, version=1),
            skipped=_skipped(new, now, grace) if new.active else (),
        )

    if new == old.meeting:
        return Plan(state=old)
    version = old.version + 1

    if new.status is MeetingStatus.CANCELLED:
        if _ended(old, now):
            # Already over: a cancellation after the fact does not un-happen it.
            kept = new.model_copy(update={"status": MeetingStatus.COMPLETED})
            return Plan(state=replace(old, meeting=kept, version=version))
        if old.booked and not old.deleted:
            state = replace(old, meeting=new, deleted=True, version=version)
            deleted = _now_event(EventType.DELETED, f"g{old.generation}", now, old.generation)
            return Plan(state=state, events=(deleted,), cancel_timers=True)
        return Plan(state=replace(old, meeting=new, version=version))

    if not old.booked:
        if _announces(new, now, grace, backfill):
            state = replace(old, meeting=new, booked=True, version=version)
            events = [
                _now_event(EventType.BOOKED, "once", now, old.generation),
                *_timers(new, old.generation, now, grace),
            ]
            return Plan(state=state, events=tuple(events), skipped=_skipped(new, now, grace))
        return Plan(state=replace(old, meeting=new, version=version))

    if old.deleted:
        if new.status is MeetingStatus.PENDING:
            return Plan(state=replace(old, meeting=new, version=version))
        # Back from the dead: a new generation with timers of its own.
        generation = old.generation + 1
        state = replace(old, meeting=new, deleted=False, generation=generation, version=version)
        events = [
            _now_event(EventType.UPDATED, f"v{version}", now, generation, changes=diff(old.meeting, new)),
            *_timers(new, generation, now, grace),
        ]
        return Plan(state=state, events=tuple(events), cancel_timers=True, skipped=_skipped(new, now, grace))

    state = replace(old, meeting=new, version=version)
    changes = diff(old.meeting, new)
    events = []
    outcome = OUTCOME_EVENTS.get(new.status) if new.status is not old.meeting.status else None
    if outcome is not None:
        # Once per generation: a provider flipping back and forth does not announce it twice.
        events.append(_now_event(outcome, f"g{old.generation}", now, old.generation, changes=changes))
    if (new.start, new.end) != (old.meeting.start, old.meeting.end):
        moved = _now_event(
            EventType.RESCHEDULED,
            f"v{version}",
            now,
            old.generation,
            previous=(old.meeting.start, old.meeting.end),
            changes=changes,
        )
        return Plan(
            state=state,
            events=(moved, *events, *_timers(new, old.generation, now, grace)),
            cancel_timers=True,
            skipped=_skipped(new, now, grace),
        )
    if not events:
        events.append(_now_event(EventType.UPDATED, f"v{version}", now, old.generation, changes=changes))
    return Plan(state=state, events=tuple(events))


def timer_is_current(state: MeetingState, kind: EventType, generation: int, set_for: datetime | None) -> bool:
    """Whether a due timer still belongs to the meeting as it is now."""
    if not state.booked or state.deleted or generation != state.generation:
        return False
    expected = state.meeting.start if kind is EventType.HAS_STARTED else state.meeting.end
    return set_for == expected
