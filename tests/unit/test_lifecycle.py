"""The lifecycle rules, as examples and as properties over any sequence of snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, MeetingStatus
from bookingsync.worker.lifecycle import (
    Backfill,
    Change,
    EventIntent,
    EventType,
    MeetingState,
    decide,
    diff,
    timer_is_current,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)


def meeting(
    status: str = "scheduled",
    start_min: float = 60,
    minutes: float = 30,
    title: str = "Demo",
    email: str = "lisa@acme.com",
) -> Meeting:
    start = T0 + timedelta(minutes=start_min)
    return Meeting(
        status=MeetingStatus(status),
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes),
        attendee={"email": email},
    )


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


def test_backfill_all_announces_a_meeting_over_beyond_the_late_window_without_timers() -> None:
    plan = decide(None, meeting(start_min=-60, minutes=30), T0, GRACE, Backfill.ALL)
    assert types(plan.events) == ["meeting.booked"] and plan.state.booked
    assert plan.skipped == (EventType.HAS_STARTED, EventType.HAS_ENDED)


def test_backfill_upcoming_stores_a_meeting_already_over_silently() -> None:
    plan = decide(None, meeting(start_min=-60, minutes=30), T0, GRACE)  # upcoming is the default
    assert plan.events == () and not plan.state.booked
    assert plan.skipped == (EventType.HAS_STARTED, EventType.HAS_ENDED)  # counted and logged by the store
    # Still over: a change says nothing either, and a cancellation deletes nothing that was never announced.
    renamed = decide(plan.state, meeting(start_min=-60, minutes=30, title="Renamed"), T0, GRACE)
    assert renamed.events == () and renamed.state.meeting.title == "Renamed"
    assert decide(renamed.state, meeting("cancelled", start_min=-60, minutes=30), T0, GRACE).events == ()
    # Moved into the future, it is news: booked, with its timers.
    moved = decide(renamed.state, meeting(start_min=60), T0, GRACE)
    assert types(moved.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    assert all(e.late_by is None for e in moved.events)


def test_first_seen_after_its_end_inside_the_late_window_gets_both_timers_marked() -> None:
    plan = decide(None, meeting(start_min=-10, minutes=8), T0, GRACE)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    started, ended = plan.events[1:]
    assert (started.due_at, ended.due_at) == (T0, T0)
    assert (started.late_by, ended.late_by) == (timedelta(minutes=10), timedelta(minutes=2))
    assert (started.occurred_at, ended.occurred_at) == (T0 - timedelta(minutes=10), T0 - timedelta(minutes=2))
    assert plan.skipped == ()


def test_first_seen_ten_minutes_after_its_start_gets_has_started_at_once_marked() -> None:
    late = timedelta(hours=24)
    plan = decide(None, meeting(start_min=-10, minutes=30), T0, late)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    started, ended = plan.events[1:]
    assert started.due_at == T0 and started.late_by == timedelta(minutes=10)
    assert ended.due_at == T0 + timedelta(minutes=20) and ended.late_by is None
    # The same snapshot read again changes nothing: hasStarted is set once.
    assert (
        decide(plan.state, meeting(start_min=-10, minutes=30), T0 + timedelta(minutes=1), late).events == ()
    )


def test_the_late_window_is_counted_from_the_meetings_end() -> None:
    window = timedelta(hours=24)
    inside = decide(None, meeting(start_min=-(24 * 60 + 30), minutes=60), T0, window)  # ended 23 h 30 min ago
    assert types(inside.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    assert inside.events[1].late_by == timedelta(hours=24, minutes=30)
    beyond = decide(None, meeting(start_min=-(25 * 60), minutes=30), T0, window)  # ended 24 h 30 min ago
    assert beyond.events == () and beyond.skipped == (EventType.HAS_STARTED, EventType.HAS_ENDED)


def test_a_meeting_moved_into_the_past_fires_its_timers_marked() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting(start_min=-3, minutes=60), T0, GRACE)
    assert types(plan.events) == ["meeting.rescheduled", "meeting.hasStarted", "meeting.hasEnded"]
    assert plan.events[1].late_by == timedelta(minutes=3) and plan.events[2].late_by is None


def test_title_change_is_updated_without_touching_timers() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting(title="Renamed"), T0, GRACE)
    assert types(plan.events) == ["meeting.updated"] and not plan.cancel_timers
    assert plan.events[0].changes == (Change("title", "Demo", "Renamed"),)


def test_updated_lists_every_changed_field_with_old_and_new() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting(title="Renamed", email="max@acme.com"), T0, GRACE)
    assert plan.events[0].changes == (
        Change("title", "Demo", "Renamed"),
        Change("attendee.email", "lisa@acme.com", "max@acme.com"),
    )


def test_rescheduled_carries_the_previous_start_and_end() -> None:
    before = meeting()
    booked = decide(None, before, T0, GRACE).state
    plan = decide(booked, meeting(start_min=120, minutes=45), T0, GRACE)
    moved = plan.events[0]
    assert moved.type is EventType.RESCHEDULED and moved.previous == (before.start, before.end)
    assert [c.field for c in moved.changes] == ["start", "end"]


def test_completed_and_no_show_are_their_own_events_once_per_generation() -> None:
    booked = decide(None, meeting(start_min=-4, minutes=2), T0, GRACE).state
    done = decide(booked, meeting("completed", start_min=-4, minutes=2), T0, GRACE)
    assert types(done.events) == ["meeting.completed"] and not done.cancel_timers
    assert done.events[0].changes == (Change("status", "scheduled", "completed"),)
    assert done.events[0].occurrence == "g0"  # the dedupe key: a flip back and forth is not news twice
    no_show = decide(booked, meeting("no_show", start_min=-4, minutes=2), T0, GRACE)
    assert types(no_show.events) == ["meeting.noShow"]


def test_a_status_change_that_also_moves_is_rescheduled_and_completed() -> None:
    booked = decide(None, meeting(), T0, GRACE).state
    plan = decide(booked, meeting("completed", start_min=90), T0, GRACE)
    assert types(plan.events)[:2] == ["meeting.rescheduled", "meeting.completed"]


def test_a_cancellation_after_the_end_kept_as_completed_is_not_a_completed_event() -> None:
    booked = decide(None, meeting(start_min=1, minutes=1), T0, GRACE).state
    plan = decide(booked, meeting("cancelled", start_min=1, minutes=1), T0 + timedelta(minutes=10), GRACE)
    assert plan.events == ()


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
    lambda status, start, minutes, title, email: meeting(status, start, minutes, title, email),
    st.sampled_from([s.value for s in MeetingStatus]),
    st.sampled_from([-600, -120, -30, -3, 0, 2, 5, 20, 45]),
    st.sampled_from([1, 10, 30]),
    st.sampled_from(["Demo", "Intro"]),
    st.sampled_from(["lisa@acme.com", "max@acme.com"]),
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
    intent: EventIntent
    before: MeetingState | None = None  # for events of a change: the state the change started from


@dataclass
class Simulation:
    """The store and relay in miniature: dedupe keys, timers, re-check when due, sequences."""

    state: MeetingState | None = None
    pending: dict[str, EventIntent] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    emitted: list[Emitted] = field(default_factory=list)
    sequence: int = 0
    backfill: Backfill = Backfill.UPCOMING

    def emit(self, intent: EventIntent, key: str, now: datetime, before: MeetingState | None = None) -> None:
        self.sequence += 1
        self.done.add(key)
        self.emitted.append(
            Emitted(intent.type, intent.generation, now, self.sequence, key, self.state, intent, before)
        )

    def fire_due(self, now: datetime) -> None:
        for key, intent in sorted(self.pending.items(), key=lambda item: item[1].due_at):
            if intent.due_at > now:
                continue
            del self.pending[key]
            assert self.state is not None
            if timer_is_current(self.state, intent.type, intent.generation, intent.set_for):
                self.emit(intent, key, intent.due_at)

    def apply(self, new: Meeting, now: datetime) -> None:
        before = self.state
        plan = decide(before, new, now, GRACE, self.backfill)
        assert plan == decide(before, new, now, GRACE, self.backfill), "decide is a function of its inputs"
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
                self.emit(intent, key, now, before)
        self.fire_due(now)


@settings(max_examples=400, deadline=None)
@given(steps, st.sampled_from(list(Backfill)))
def test_lifecycle_properties_hold_for_any_history(
    history: list[tuple[int, Meeting]], backfill: Backfill
) -> None:
    sim, now = Simulation(backfill=backfill), T0
    announced = False  # some snapshot was active and, under `upcoming`, not over when it arrived
    for minutes, snap in history:
        now += timedelta(minutes=minutes)
        sim.fire_due(now)
        announced = announced or (snap.active and (backfill is Backfill.ALL or snap.end >= now - GRACE))
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
    # Booked exactly when some snapshot announced the meeting, and nothing is said before it.
    assert kinds.count(EventType.BOOKED) == (1 if announced else 0)
    assert not sim.emitted or sim.emitted[0].type is EventType.BOOKED
    for event in sim.emitted:
        intent, before, after = event.intent, event.before, event.state
        if event.type in (EventType.RESCHEDULED, EventType.UPDATED, EventType.COMPLETED, EventType.NO_SHOW):
            # `changes` names exactly the fields that differ, with the values before and after.
            assert before is not None and after is not None
            assert intent.changes == diff(before.meeting, after.meeting) and intent.changes
            for change in intent.changes:
                assert change.old != change.new
        if event.type is EventType.RESCHEDULED:
            assert before is not None and after is not None
            assert intent.previous == (before.meeting.start, before.meeting.end)
            assert intent.previous != (after.meeting.start, after.meeting.end)
        else:
            assert intent.previous is None
        if event.type in (EventType.COMPLETED, EventType.NO_SHOW):
            assert (
                before is not None and after is not None and after.meeting.status is not before.meeting.status
            )
            wanted = MeetingStatus.COMPLETED if event.type is EventType.COMPLETED else MeetingStatus.NO_SHOW
            assert after.meeting.status is wanted
    for kind in (EventType.COMPLETED, EventType.NO_SHOW):
        generations = [e.generation for e in sim.emitted if e.type is kind]
        assert len(generations) == len(set(generations)), f"{kind} twice in one generation"


def test_a_zero_length_meeting_gets_has_started_before_has_ended_as_two_occurrences() -> None:
    plan = decide(None, meeting(start_min=30, minutes=0), T0, GRACE)
    assert types(plan.events) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    started, ended = plan.events[1:]
    # The same instant, but two dedupe keys; the store inserts (and the relay claims) them in this order.
    assert started.due_at == ended.due_at and started.occurrence == ended.occurrence
    assert started.type is not ended.type
