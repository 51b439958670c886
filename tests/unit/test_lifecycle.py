"""The lifecycle rules, as examples and as properties over any sequence of snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, MeetingStatus
from bookingsync.worker.lifecycle import EventIntent, EventType, MeetingState, decide, timer_is_current

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)


def meeting(status: str = "scheduled", start_min: float = 60, minutes: float = 30, title: str = "Demo") -> Meeting:
    start = T0 + timedelta(minutes=start_min)
    return Meeting(status=MeetingStatus(status), title=title, start=start, end=start + timedelta(minutes=minutes),
                   attendee={"email": "lisa@acme.com"})


def types(plan_events: tuple[EventIntent, ...]) -> list[str]:
    return [e.type.value for e in plan_events]


def test_first_active_sighting_books_and_sets_both_timers() -> None:
    plan = decide(None, meeting(), T0, GRACE)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    started = plan.events[1]
    assert started.due_at == T0 + timedelta(minutes=60) and started.set_for == started.due_at
    assert plan.state.booked and not plan.state.deleted


def test_pending_is_not_booked_until_confirmed() -> None:
    plan = decide(None, meeting("pending"), T0, GRACE)
    assert plan.events == () and not plan.state.booked
    plan = decide(plan.state, meeting("confirmed"), T0, GRACE)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]


def test_reschedule_moves_timers_and_cancels_old_ones() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting(start_min=120), T0, GRACE)
    assert types(plan.events) == ["meeting.rescheduled", "meeting.hasStarted", "meeting.hasEnded"]
    assert plan.cancel_timers
    assert plan.events[1].due_at == T0 + timedelta(minutes=120)


def test_cancel_emits_deleted_once_and_cancels_timers() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting("cancelled"), T0, GRACE)
    assert types(plan.events) == ["meeting.deleted"] and plan.cancel_timers
    again = decide(plan.state, meeting("cancelled", title="Other"), T0, GRACE)
    assert again.events == ()


def test_ended_meeting_stays_ended_when_cancelled_afterwards() -> None:
    booked = decide(None, meeting(start_min=1, minutes=1), T0, GRACE).state
    later = T0 + timedelta(minutes=10)
    plan = decide(booked, meeting("cancelled", start_min=1, minutes=1), later, GRACE)
    assert plan.events == () and not plan.cancel_timers
    assert plan.state.meeting.status is MeetingStatus.COMPLETED


def test_backfill_outside_grace_sets_no_stale_timers() -> None:
    plan = decide(None, meeting(start_min=-60, minutes=30), T0, GRACE)
    assert types(plan.events) == ["meeting.booked"]


def test_backfill_inside_grace_fires_due_now() -> None:
    plan = decide(None, meeting(start_min=-2, minutes=30), T0, GRACE)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    assert plan.events[1].due_at == T0 and plan.events[1].occurred_at == T0 - timedelta(minutes=2)


def test_title_change_is_updated_without_touching_timers() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting(title="Renamed"), T0, GRACE)
    assert types(plan.events) == ["meeting.updated"] and not plan.cancel_timers


def test_same_content_is_a_no_op() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    assert decide(booked, meeting(), T0, GRACE).events == ()


def test_deleted_meeting_back_to_life_gets_new_generation_not_second_booked() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    deleted = decide(booked, meeting("cancelled"), T0, GRACE).state
    plan = decide(deleted, meeting(), T0, GRACE)
    assert types(plan.events) == ["meeting.updated", "meeting.hasStarted", "meeting.hasEnded"]
    assert plan.state.generation == 1 and all(e.generation == 1 for e in plan.events)
    assert not timer_is_current(plan.state, EventType.HAS_STARTED, 0, meeting().start)


# --- properties over any history -------------------------------------------------------------

snapshot = st.builds(
    lambda status, start, minutes, title: meeting(status, start, minutes, title),
    st.sampled_from([s.value for s in MeetingStatus]),
    st.sampled_from([-30, -3, 0, 2, 5, 20, 45]),
    st.sampled_from([1, 10, 30]),
    st.sampled_from(["Demo", "Intro"]),
)
steps = st.lists(st.tuples(st.sampled_from([0, 1, 4, 15, 40]), snapshot), min_size=1, max_size=12)


@dataclass
class Emitted:
    type: EventType
    generation: int
    at: datetime
    sequence: int
    key: str
    state: MeetingState | None  # the meeting as it stood when the event went out


@dataclass
class Simulation:
    """The store and relay in miniature: dedupe keys, timers, re-check when due, sequences."""

    state: MeetingState | None = None
    pending: dict[str, EventIntent] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    emitted: list[Emitted] = field(default_factory=list)
    sequence: int = 0

    def emit(self, intent: EventIntent, key: str, now: datetime) -> None:
        self.sequence += 1
        self.done.add(key)
        self.emitted.append(Emitted(intent.type, intent.generation, now, self.sequence, key, self.state))

    def fire_due(self, now: datetime) -> None:
        for key, intent in sorted(self.pending.items(), key=lambda item: item[1].due_at):
            if intent.due_at > now:
                continue
            del self.pending[key]
            assert self.state is not None
            if timer_is_current(self.state, intent.type, intent.generation, intent.set_for):
                self.emit(intent, key, intent.due_at)

    def apply(self, new: Meeting, now: datetime) -> None:
        plan = decide(self.state, new, now, GRACE)
        if plan.cancel_timers:
            self.pending.clear()
        self.state = plan.state
        for intent in plan.events:
            key = f"{intent.type}:{intent.occurrence}"
            if key in self.done:
                continue
            if intent.is_timer:
                self.pending[key] = intent
            else:
                self.emit(intent, key, now)
        self.fire_due(now)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_lifecycle_properties_hold_for_any_history(history: list[tuple[int, Meeting]]) -> None:
    sim, now = Simulation(), T0
    for minutes, snap in history:
        now += timedelta(minutes=minutes)
        sim.fire_due(now)
        sim.apply(snap, now)
    sim.fire_due(now + timedelta(days=1))

    kinds = [e.type for e in sim.emitted]
    assert kinds.count(EventType.BOOKED) <= 1
    assert len({e.key for e in sim.emitted}) == len(sim.emitted), "an occurrence was emitted twice"
    assert [e.sequence for e in sim.emitted] == sorted({e.sequence for e in sim.emitted})
    deleted_generations: dict[int, int] = {}
    for index, event in enumerate(sim.emitted):
        if event.type is EventType.DELETED:
            deleted_generations.setdefault(event.generation, index)
    for index, event in enumerate(sim.emitted):
        if event.type in (EventType.HAS_STARTED, EventType.HAS_ENDED):
            after = deleted_generations.get(event.generation)
            assert after is None or index < after, "a timer fired after its occurrence was deleted"
            # The meeting was booked, not deleted, and at that start/end when the timer fired.
            state = event.state
            assert state is not None and state.booked and not state.deleted
            expected = state.meeting.start if event.type is EventType.HAS_STARTED else state.meeting.end
            assert event.key.endswith(expected.isoformat())
    if any(snap.active for _, snap in history):
        assert kinds.count(EventType.BOOKED) == 1
    else:
        assert EventType.BOOKED not in kinds
