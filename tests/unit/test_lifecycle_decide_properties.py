"""Properties of `lifecycle.decide` itself, over any history of snapshots.

`test_lifecycle.py` runs histories through a miniature store whose dedupe keys hide repeats. Here
nothing stands between `decide` and the assertions: each snapshot goes to `decide` with the state
the previous call returned, and every event it asks for is checked as it comes out. The only
model kept is the pending-timer set, with the plan's own meaning (`cancel_timers` clears it,
timer intents join it).

For every history, every grace window and both backfill settings:

* `booked` is asked for at most once per meeting, and never after anything else;
* every event carries the generation of the state it leaves, and the version moves by one per
  changed snapshot and not at all for a repeated one;
* timers only while the meeting is booked and not deleted: each timer is current for the state
  its plan leaves (`timer_is_current`), none for a meeting over before the grace window, no timer
  pending while the meeting is unbooked or deleted; while it is booked, alive and active, each
  future start and end has its timer pending (nothing is silently dropped);
* nothing after `deleted` for that occurrence: once generation g is deleted, no event of g is
  asked for again (a revival is generation g+1), and the deletion cancels g's timers;
* a repeated snapshot asks for nothing; `decide` is a function of its inputs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hypothesis import given, note, settings
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, MeetingStatus
from bookingsync.worker.lifecycle import (
    TIMER_TYPES,
    Backfill,
    EventIntent,
    EventType,
    MeetingState,
    decide,
    timer_is_current,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("BOOKINGSYNC_PROPERTY_EXAMPLES", "300"))

# Offsets that put starts and ends before, around and after `now` and the grace window.
snapshots = st.builds(
    lambda status, start, minutes, title, host: (status, start, minutes, title, host),
    st.sampled_from(list(MeetingStatus)),
    st.sampled_from([-720, -90, -31, -6, -1, 0, 1, 3, 20, 61, 600]),
    st.sampled_from([0, 1, 15, 30]),
    st.sampled_from(["Demo", "Intro"]),
    st.sampled_from([(), ("rep@seller.com",)]),
)
histories = st.lists(
    st.tuples(st.sampled_from([0, 1, 7, 30, 120]), snapshots, st.booleans()), min_size=1, max_size=14
)


def build(snapshot: tuple, now: datetime) -> Meeting:
    status, start, minutes, title, hosts = snapshot
    begins = now + timedelta(minutes=start)
    return Meeting(
        status=status,
        title=title,
        start=begins,
        end=begins + timedelta(minutes=minutes),
        attendee={"email": "lisa@acme.com"},
        hosts=hosts,
    )


def key(intent: EventIntent) -> tuple[EventType, str]:
    return intent.type, intent.occurrence


@settings(max_examples=EXAMPLES, deadline=None)
@given(histories, st.sampled_from(list(Backfill)), st.sampled_from([0, 5, 60]))
def test_decide_keeps_the_lifecycle_rules_for_any_history(
    history, backfill: Backfill, grace_minutes: int
) -> None:
    grace = timedelta(minutes=grace_minutes)
    state: MeetingState | None = None
    now = T0
    pending: dict[tuple[EventType, str], EventIntent] = {}
    booked_at: int | None = None
    deleted_generations: set[int] = set()
    asked = 0  # events asked for so far

    for step, (minutes, snapshot, repeat) in enumerate(history):
        now += timedelta(minutes=minutes)
        # A repeat re-delivers the stored content (a replayed webhook, a page read twice).
        new = state.meeting if (repeat and state is not None) else build(snapshot, now)
        plan = decide(state, new, now, grace, backfill)
        assert plan == decide(state, new, now, grace, backfill), "decide is a function of its inputs"
        after = plan.state
        note(
            f"step {step} at +{(now - T0).total_seconds() / 60:g} min: {new.status} {new.start:%H:%M}-{new.end:%H:%M} "
            f"-> booked={after.booked} deleted={after.deleted} g{after.generation} v{after.version} "
            f"{[(e.type.value, e.occurrence) for e in plan.events]} cancel={plan.cancel_timers}"
        )

        if state is not None and new == state.meeting:
            assert plan.events == () and not plan.cancel_timers and after == state, (
                "a repeat asks for nothing"
            )
        elif state is None:
            assert after.version == 1
        else:
            assert after.version == state.version + 1
        assert after.generation >= (state.generation if state else 0)
        if state is not None and state.booked:
            assert after.booked, "booked is for ever"

        for intent in plan.events:
            assert intent.generation == after.generation, (step, intent)
            assert intent.generation not in deleted_generations, f"{intent.type} after generation deleted"
            if intent.type is EventType.BOOKED:
                assert booked_at is None, "booked asked for twice"
                assert asked == 0, "booked comes first"
                booked_at = step
                assert new.active
            if intent.type in TIMER_TYPES:
                assert after.booked and not after.deleted
                assert timer_is_current(after, intent.type, intent.generation, intent.set_for), intent
                assert intent.set_for is not None and after.meeting.end >= now - grace, "a timer for history"
                assert intent.due_at == max(intent.set_for, now)
            else:
                assert intent.due_at == now
            asked += 1
        assert [e.type for e in plan.events].count(EventType.DELETED) <= 1

        if any(e.type is EventType.DELETED for e in plan.events):
            assert plan.cancel_timers and after.deleted
            deleted_generations.add(after.generation)
        if plan.cancel_timers:
            pending.clear()
        pending.update({key(e): e for e in plan.events if e.type in TIMER_TYPES})

        if not after.booked or after.deleted:
            assert pending == {}, "a timer is pending for a meeting that is not booked and alive"
        else:
            for kind, at in (
                (EventType.HAS_STARTED, after.meeting.start),
                (EventType.HAS_ENDED, after.meeting.end),
            ):
                # Only while active: a meeting kept as `completed` after a cancellation that came
                # once it had ended takes that snapshot's times without new timers (it is over).
                if at > now and after.meeting.active:
                    assert any(
                        t.type is kind and t.set_for == at and t.generation == after.generation
                        for t in pending.values()
                    ), f"no {kind} pending for {at} (step {step})"
        state = after
