"""The intent state machine and the next-step decision, pure (worker/intents.py, worker/identity.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.worker import intents
from bookingsync.worker.identity import ANSWER, OPEN_INTENT, REFERENCE, choose
from bookingsync.worker.intents import (
    Action,
    Do,
    IllegalTransition,
    Intent,
    Limits,
    Mirror,
    State,
    Step,
    Write,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START, END = NOW + timedelta(days=1), NOW + timedelta(days=1, minutes=30)
LEASE = timedelta(seconds=120)


def intent(action: Write = Write.CREATE, **changes) -> Intent:
    base = Intent(
        reference="bsw_1",
        action=action,
        start=START,
        end=END,
        attendee_email="lisa@acme.com",
        created_at=NOW,
        meeting_id="mtg_1",
        id=1,
    )
    return replace(base, **changes)


def sent(action: Write = Write.CREATE, **changes) -> Intent:
    return intents.begin(intent(action, **changes), NOW, LEASE)


DEFAULT_LIMITS = Limits()


def decide(
    action: Action,
    history: list[Intent],
    mirror: Mirror | None = None,
    *,
    now: datetime = NOW,
    can_find: bool = True,
    can_cancel: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> intents.Next:
    return intents.decide(
        action,
        start=START,
        end=END,
        mirror=mirror,
        intents=history,
        now=now,
        limits=limits,
        can_find=can_find,
        can_cancel=can_cancel,
        target="tgt",
    )


# -- transitions -------------------------------------------------------------------------------------


def test_a_write_is_pending_while_its_call_is_out_and_done_with_the_answer() -> None:
    calling = sent()
    assert (calling.state, calling.step, calling.attempts) == (State.PENDING, Step.CALLING, 1)
    assert calling.in_flight(NOW) and not calling.in_flight(NOW + LEASE)
    assert calling.answer_missing(NOW + LEASE)  # its caller died: the answer is lost too
    done = intents.answered(calling, "b1")
    assert (done.state, done.external_id, done.calling_until) == (State.DONE, "b1", None)


def test_a_lost_answer_is_found_or_sent_again_under_the_same_reference() -> None:
    lost = intents.lost(sent(), "504")
    assert lost.answer_missing(NOW)
    assert intents.found(lost, "b7").state is State.DONE
    again = intents.absent(lost)
    assert (again.state, again.step, again.reference) == (State.PENDING, Step.READY, "bsw_1")
    assert intents.begin(again, NOW, LEASE).attempts == 2


def test_a_lost_create_is_never_resent_blindly() -> None:
    with pytest.raises(IllegalTransition):
        intents.resend(intents.lost(sent(), "timeout"))
    assert intents.resend(intents.lost(sent(Write.CANCEL, subject="b1"), "timeout")).step is Step.READY


def test_an_echo_proves_a_booking_whatever_we_concluded_before() -> None:
    in_flight = intents.echoed(sent(), "b1")
    assert in_flight.state is State.PENDING and in_flight.external_id == "b1"  # the answer still completes it
    for earlier in (
        intents.lost(sent(), "x"),
        intents.unreachable(intents.lost(sent(), "x"), "no lookup"),
        intents.refused(sent(), "400 but it booked anyway"),
    ):
        confirmed = intents.echoed(earlier, "b1")
        assert (confirmed.state, confirmed.external_id) == (State.DONE, "b1")
    cancel = intents.refused(sent(Write.CANCEL, subject="b1"), "403")
    assert intents.echoed(cancel, "b1") == cancel  # an echo proves bookings, not cancellations


TRANSITIONS = {
    "begin": lambda i: intents.begin(i, NOW, LEASE),
    "answered": lambda i: intents.answered(i, "b1"),
    "refused": lambda i: intents.refused(i, "no"),
    "deferred": lambda i: intents.deferred(i, "429"),
    "lost": lambda i: intents.lost(i, "504"),
    "found": lambda i: intents.found(i, "b1"),
    "absent": intents.absent,
    "unreachable": lambda i: intents.unreachable(i, "cannot ask"),
    "echoed": lambda i: intents.echoed(i, "b1"),
    "abandoned": lambda i: intents.abandoned(i, "changed"),
}


@given(st.lists(st.sampled_from(sorted(TRANSITIONS)), max_size=25))
def test_no_sequence_of_transitions_leaves_the_machine(names: list[str]) -> None:
    """Whatever is tried in whatever order: a final state is final, a done write names its booking,
    and attempts only count calls."""
    current = intent()
    for name in names:
        before = current
        try:
            current = TRANSITIONS[name](current)
        except IllegalTransition:
            continue
        assert current.attempts == before.attempts + (name == "begin")
        if before.state is State.DONE:
            assert current == before or name == "echoed"
        if current.state is State.DONE:
            assert current.external_id
        if current.step is Step.CALLING:
            assert current.state is State.PENDING and current.calling_until is not None
        assert current.state in State


# -- decide -----------------------------------------------------------------------------------------


def test_nothing_written_twice_while_a_call_is_in_flight() -> None:
    assert decide(Action.CREATE, [sent()]).do is Do.WAIT


def test_a_lost_create_is_looked_up_or_held() -> None:
    lost = [intents.lost(sent(), "504")]
    assert decide(Action.CREATE, lost).do is Do.LOOKUP
    assert decide(Action.CREATE, lost, can_find=False).do is Do.UNREACHABLE
    assert decide(Action.CREATE, [sent()], now=NOW + LEASE).do is Do.LOOKUP  # a caller that died
    # An echo named the booking while the call was out, then the caller died: no lookup needed.
    assert decide(Action.CREATE, [intents.echoed(sent(), "b1")], now=NOW + LEASE).do is Do.ADOPT


def test_an_unknown_outcome_holds_every_write_but_cancels_of_what_we_know() -> None:
    unknown = intents.unreachable(intents.lost(sent(), "504"), "no lookup")
    held = decide(Action.CREATE, [unknown])
    assert held.do is Do.HOLD and "mirrors resolve" in held.reason
    earlier = intents.answered(sent(reference="bsw_0"), "b0")
    mirror = Mirror("b0", START - timedelta(hours=1), END - timedelta(hours=1), False)
    assert decide(Action.RECREATE, [earlier, unknown], mirror).do is Do.HOLD
    cancel = decide(Action.CANCEL, [earlier, unknown], Mirror("b0", START, END, False))
    assert (cancel.do, cancel.write, cancel.subject) == (Do.WRITE, Write.CANCEL, "b0")
    after = decide(
        Action.NOTHING,
        [earlier, unknown, intents.answered(sent(Write.CANCEL, subject="b0", reference="bsw_2"), "b0")],
    )
    assert after.do is Do.HOLD and "cannot reach" in after.reason


def test_a_booking_of_ours_that_is_not_the_mirror_is_cancelled_first() -> None:
    old = intents.answered(sent(reference="bsw_0"), "b0")
    new = intents.answered(sent(reference="bsw_1", subject="b0"), "b1")
    nxt = decide(Action.NOTHING, [old, new], Mirror("b1", START, END, False))
    assert (nxt.do, nxt.write, nxt.subject) == (Do.WRITE, Write.CANCEL, "b0")
    refused = decide(Action.NOTHING, [old, new], Mirror("b1", START, END, False), can_cancel=False)
    assert refused.do is Do.REFUSE and "b0" in refused.reason


def test_a_cancel_that_failed_is_retried_and_no_third_booking_is_made() -> None:
    old = intents.answered(sent(reference="bsw_0"), "b0")
    new = intents.answered(sent(reference="bsw_1", subject="b0"), "b1")
    failed = intents.refused(sent(Write.CANCEL, subject="b0", reference="bsw_2"), "403: admin scope")
    nxt = decide(Action.NOTHING, [old, new, failed], Mirror("b1", START, END, False))
    assert (nxt.do, nxt.write, nxt.subject) == (Do.WRITE, Write.CANCEL, "b0")


def test_the_rate_breaker_halts_before_the_sixth_create_or_move_in_an_hour() -> None:
    history = [intents.answered(sent(reference=f"bsw_{n}"), f"b{n}") for n in range(5)]
    history += [
        intents.answered(sent(Write.CANCEL, subject=f"b{n}", reference=f"bsw_c{n}"), f"b{n}")
        for n in range(5)
    ]
    nxt = decide(Action.CREATE, history)
    assert nxt.do is Do.HALT and "5 creates or moves" in nxt.reason
    assert decide(Action.CREATE, history, now=NOW + timedelta(hours=1, seconds=1)).do is Do.WRITE
    halted = intents.halted("bsw_h", Write.CREATE, START, END, nxt.reason)
    assert decide(Action.CREATE, [*history, halted], now=NOW + timedelta(hours=2)).do is Do.HALT  # sticky
    lifted = replace(intents.lifted(halted, "a person looked"), updated_at=NOW + timedelta(minutes=1))
    assert decide(Action.CREATE, [*history, lifted], now=NOW + timedelta(minutes=2)).do is Do.WRITE


def test_refused_writes_do_not_count_towards_the_breaker() -> None:
    history = [intents.refused(sent(reference=f"bsw_{n}"), "slot taken") for n in range(8)]
    assert decide(Action.CREATE, history).do is Do.WRITE


def test_an_unsent_write_is_retried_while_wanted_and_abandoned_when_the_meeting_moved() -> None:
    ready = intents.deferred(sent(), "429")
    assert decide(Action.CREATE, [ready]).do is Do.RETRY
    moved = intents.decide(
        Action.CREATE,
        start=START + timedelta(hours=1),
        end=END + timedelta(hours=1),
        mirror=None,
        intents=[ready],
        now=NOW,
        limits=Limits(),
        can_find=True,
        can_cancel=True,
        target="tgt",
    )
    assert moved.do is Do.ABANDON


def test_what_the_target_cannot_do_is_a_visible_refusal_never_nothing() -> None:
    done = intents.answered(sent(), "b1")
    assert decide(Action.UNSUPPORTED, [done], Mirror("b1", START, END, False)).do is Do.REFUSE
    assert decide(Action.NOTHING, [done], Mirror("b1", START, END, False)).do is Do.NOTHING


# -- echo recognition --------------------------------------------------------------------------------


def record(
    external_id: str,
    *,
    reference: str | None = None,
    email: str | None = "lisa@acme.com",
    start: datetime = START,
) -> SourceRecord:
    return SourceRecord(
        external_id=external_id,
        reference=reference,
        meeting=Meeting(
            status="scheduled", start=start, end=start + (END - START), attendee={"email": email}
        ),
    )


def test_an_echo_is_matched_by_answer_then_reference_then_open_intent() -> None:
    done = intents.answered(sent(), "b1")
    assert choose(record("b1"), [done]).rule == ANSWER
    assert choose(record("x", reference="bsw_1"), [done]).rule == REFERENCE
    assert choose(record("x"), [sent()]).rule == OPEN_INTENT  # before the answer
    assert (
        choose(record("x", email=None), [sent()]).rule == OPEN_INTENT
    )  # a record without attendee (HubSpot CRM)
    assert choose(record("x", email="other@acme.com"), [sent()]) is None
    assert choose(record("x", start=START + timedelta(minutes=30)), [sent()]) is None
    assert choose(record("x"), [done]) is None  # answered: only its own id matches now
    assert choose(record("x"), [intent()]) is None  # never sent: nothing can echo it


def test_an_echo_that_two_meetings_could_own_links_nothing() -> None:
    a, b = sent(), sent(reference="bsw_2", meeting_id="mtg_2", id=2)
    assert choose(record("x"), [a, b]) is None
    assert choose(record("x", reference="bsw_2"), [a, b]).meeting_id == "mtg_2"
