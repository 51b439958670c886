"""Writes to route targets as intents: what the target should have, and the state machine of each
write that gets it there. Pure: no database, no HTTP, no clock of its own.

Every write to a target is first an intent, committed with the reference we plant at the
provider; then the call; then the answer completes the intent. Every attempt starts from the
intents of that (meeting, target), so a step that already happened is never repeated:

    pending(ready) ─begin→ pending(calling) ─answered→ done
                                            ─refused→ failed         the provider said no; nothing made
                                            ─deferred→ pending(ready) refused before acting (429, never sent)
                                            ─lost→ pending(lost) ─found→ done
                                                                 ─absent→ pending(ready)  sent again, same reference
                                                                 ─unreachable→ unknown    no way to ask: held
    pending, unknown, failed ─echoed→ done    a read of the booking proves it exists
    (before any call) ─halted→ halted ─lifted→ failed (lifted): a person looked at it

A `calling` intent whose lease ran out is a call whose worker died: its answer is lost too.
Only creates are looked up after a lost answer; a lost cancel or reschedule is simply sent again
(cancelling twice, or moving to the same time twice, ends in the same state).

`plan` says what one step brings the target in line with the meeting; `decide` says what to do
next given the intents: wait, resolve a lost answer, retry or abandon an unsent write, hold,
halt, refuse, write, or nothing. Two breakers: at most one live booking per (meeting, target)
counted from our own intents (a booking of ours that is not the mirror is cancelled before
anything else, and nothing is created while an outcome is unknown), and more than
`Limits.max_writes` creates/moves within `Limits.window` halts the mirror until a person lifts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bookingsync.adapters.base import Capability


class Write(StrEnum):
    CREATE = "create"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"


class State(StrEnum):
    PENDING = "pending"
    DONE = "done"
    UNKNOWN = "unknown"  # the answer was lost and the provider cannot be asked: held for a person
    FAILED = "failed"
    HALTED = "halted"


class Step(StrEnum):
    READY = "ready"  # not sent, or known not to have taken effect: may be sent (again)
    CALLING = "calling"  # sent; the answer is awaited until `calling_until`
    LOST = "lost"  # sent, and no answer came back: it may have taken effect
    LIFTED = "lifted"  # a halt a person lifted (state failed)


class IllegalTransition(ValueError):
    """A transition the state machine does not have (a bug in the caller, never an input error)."""


@dataclass(frozen=True)
class Intent:
    reference: str
    action: Write
    start: datetime
    end: datetime
    state: State = State.PENDING
    step: Step = Step.READY
    subject: str | None = None
    external_id: str | None = None
    alias: str | None = None
    attendee_email: str | None = None
    attempts: int = 0
    reason: str | None = None
    calling_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    meeting_id: str = ""
    id: int | None = None

    @property
    def books(self) -> bool:
        """Whether this write can leave a booking behind (create, or a move)."""
        return self.action is not Write.CANCEL

    def in_flight(self, now: datetime) -> bool:
        return (
            self.state is State.PENDING
            and self.step is Step.CALLING
            and self.calling_until is not None
            and self.calling_until > now
        )

    def answer_missing(self, now: datetime) -> bool:
        """Sent, and its answer is not coming: lost, or its caller died mid-call."""
        return self.state is State.PENDING and (
            self.step is Step.LOST or (self.step is Step.CALLING and not self.in_flight(now))
        )


# -- transitions ---------------------------------------------------------------------------------


def _need(intent: Intent, states: set[State], steps: set[Step] | None, what: str) -> None:
    if intent.state not in states or (steps is not None and intent.step not in steps):
        raise IllegalTransition(
            f"intent {intent.reference} cannot be {what} from {intent.state}/{intent.step}"
        )


def begin(intent: Intent, now: datetime, lease: timedelta) -> Intent:
    """The call is about to be made: committed before it, so a crash leaves a trace."""
    _need(intent, {State.PENDING}, {Step.READY}, "sent")
    return replace(intent, step=Step.CALLING, attempts=intent.attempts + 1, calling_until=now + lease)


def answered(intent: Intent, external_id: str, alias: str | None = None) -> Intent:
    _need(intent, {State.PENDING}, {Step.CALLING, Step.LOST}, "answered")
    return replace(
        intent,
        state=State.DONE,
        step=Step.READY,
        external_id=external_id,
        alias=alias or intent.alias,
        calling_until=None,
        reason=None,
    )


def refused(intent: Intent, reason: str) -> Intent:
    _need(intent, {State.PENDING}, {Step.CALLING}, "refused")
    return replace(intent, state=State.FAILED, step=Step.READY, calling_until=None, reason=reason)


def deferred(intent: Intent, reason: str) -> Intent:
    """Refused before the provider acted (429, never sent): the same intent may be sent again."""
    _need(intent, {State.PENDING}, {Step.CALLING}, "deferred")
    return replace(intent, step=Step.READY, calling_until=None, reason=reason)


def lost(intent: Intent, reason: str) -> Intent:
    _need(intent, {State.PENDING}, {Step.CALLING}, "lost")
    return replace(intent, step=Step.LOST, calling_until=None, reason=reason)


def found(intent: Intent, external_id: str, alias: str | None = None) -> Intent:
    """A lookup after a lost answer found the booking: it was made."""
    _need(intent, {State.PENDING}, {Step.CALLING, Step.LOST}, "found")
    return replace(
        intent,
        state=State.DONE,
        step=Step.READY,
        external_id=external_id,
        alias=alias or intent.alias,
        calling_until=None,
        reason=f"answer lost ({intent.reason}); found by lookup" if intent.reason else None,
    )


def absent(intent: Intent) -> Intent:
    """A lookup after a lost answer found nothing: the call never took effect; send it again."""
    _need(intent, {State.PENDING}, {Step.CALLING, Step.LOST}, "found absent")
    return replace(
        intent,
        step=Step.READY,
        calling_until=None,
        reason=f"answer lost ({intent.reason}); not found by lookup, so not made",
    )


def resend(intent: Intent) -> Intent:
    """A lost cancel or move: sending it again is harmless (cancel twice, move to one time twice)."""
    _need(intent, {State.PENDING}, {Step.CALLING, Step.LOST}, "resent")
    if intent.books and intent.action is Write.CREATE:
        raise IllegalTransition(
            f"intent {intent.reference}: a create whose answer was lost is looked up, never resent"
        )
    return replace(intent, step=Step.READY, calling_until=None)


def unreachable(intent: Intent, reason: str) -> Intent:
    _need(intent, {State.PENDING}, {Step.CALLING, Step.LOST}, "held as unknown")
    return replace(intent, state=State.UNKNOWN, step=Step.READY, calling_until=None, reason=reason)


def echoed(intent: Intent, external_id: str) -> Intent:
    """A read of the booking this intent made (by reference, id or open slot) arrived.

    While the call is in flight the answer completes it; otherwise the echo proves the booking
    exists, whatever we concluded before (lost, unknown, or given up on).
    """
    if not intent.books or intent.state in (State.DONE, State.HALTED):
        return intent
    if intent.state is State.PENDING and intent.step is Step.CALLING:
        return replace(intent, external_id=intent.external_id or external_id)
    return replace(
        intent,
        state=State.DONE,
        step=Step.READY,
        external_id=external_id,
        calling_until=None,
        reason=f"confirmed by a read of {external_id}"
        + (f" after: {intent.reason}" if intent.reason else ""),
    )


def abandoned(intent: Intent, reason: str) -> Intent:
    """Never sent (or known not made) and no longer wanted: the meeting changed meanwhile."""
    _need(intent, {State.PENDING}, {Step.READY}, "abandoned")
    return replace(intent, state=State.FAILED, reason=reason)


def halted(
    reference: str, action: Write, start: datetime, end: datetime, reason: str, subject: str | None = None
) -> Intent:
    return Intent(
        reference=reference,
        action=action,
        start=start,
        end=end,
        state=State.HALTED,
        reason=reason,
        subject=subject,
    )


def lifted(intent: Intent, reason: str) -> Intent:
    _need(intent, {State.HALTED}, None, "lifted")
    return replace(intent, state=State.FAILED, step=Step.LIFTED, reason=reason)


# -- what the intents say ------------------------------------------------------------------------


def live_bookings(intents: Sequence[Intent]) -> list[str]:
    """The bookings our own finished writes left live at the target, oldest first."""
    live: dict[str, None] = {}
    for intent in intents:
        if intent.state is not State.DONE:
            continue
        if intent.action is Write.CANCEL and intent.subject:
            live.pop(intent.subject, None)
        elif intent.external_id:
            if intent.action is Write.RESCHEDULE and intent.subject and intent.subject != intent.external_id:
                live.pop(intent.subject, None)  # moved under a new id: the old one went with it
            live[intent.external_id] = None
    return list(live)


def writes_since(intents: Sequence[Intent], since: datetime) -> int:
    """Calls that may have added or moved a booking since `since`: every attempt of a create or
    move (an answer lost and sent again counts twice), except writes the provider refused. Cancels
    never add a booking, so they do not count."""
    return sum(
        i.attempts
        for i in intents
        if i.books and i.state is not State.FAILED and i.created_at is not None and i.created_at > since
    )


# -- what the target should have ------------------------------------------------------------------


class Action(StrEnum):
    NOTHING = "nothing"
    CREATE = "create"
    RESCHEDULE = "reschedule"
    RECREATE = "recreate"  # a target that cannot move a booking: book the new time, cancel the old
    CANCEL = "cancel"
    UNSUPPORTED = "unsupported"  # the target cannot do what the meeting needs: a visible failure


@dataclass(frozen=True)
class Mirror:
    external_id: str
    start: datetime | None
    end: datetime | None
    missing: bool


def plan(
    *,
    live: bool,
    start: datetime,
    end: datetime,
    now: datetime,
    mirror: Mirror | None,
    capabilities: frozenset[Capability],
) -> Action:
    """The one step that brings the target in line with the meeting."""
    has_mirror = mirror is not None and not mirror.missing
    if not live:
        if not has_mirror:
            return Action.NOTHING
        return Action.CANCEL if Capability.CANCEL in capabilities else Action.UNSUPPORTED
    if end <= now:
        return Action.NOTHING  # history: nothing to book or move any more
    if not has_mirror:
        return Action.CREATE if Capability.CREATE in capabilities else Action.UNSUPPORTED
    assert mirror is not None
    if (mirror.start, mirror.end) == (start, end):
        return Action.NOTHING
    if Capability.RESCHEDULE in capabilities:
        return Action.RESCHEDULE
    if {Capability.CREATE, Capability.CANCEL} <= capabilities:
        return Action.RECREATE
    return Action.UNSUPPORTED


# -- the next step --------------------------------------------------------------------------------


class Do(StrEnum):
    WAIT = "wait"  # a call is in flight (another worker): come back later
    ADOPT = "adopt"  # a create's answer is missing but an echo already named its booking: take it
    LOOKUP = "lookup"  # a create's answer is missing: ask the provider for the booking
    UNREACHABLE = "unreachable"  # ... and the provider cannot be asked: mark it unknown
    RESEND = "resend"  # a lost cancel/move: make it ready again
    RETRY = "retry"  # a ready intent that is still wanted: send it (same reference)
    ABANDON = "abandon"  # a ready intent no longer wanted
    WRITE = "write"  # a new intent: `write`, on `subject`
    HOLD = "hold"  # an unknown outcome blocks this: a person must look (dead letter)
    HALT = "halt"  # the breaker: record a halted intent (or one is there already)
    REFUSE = "refuse"  # the target cannot do it: a visible failure
    NOTHING = "nothing"  # in step


@dataclass(frozen=True)
class Limits:
    max_writes: int = 5
    window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Next:
    do: Do
    intent: Intent | None = None
    write: Write | None = None
    subject: str | None = None
    reason: str = ""


def _wants(intent: Intent, write: Write, subject: str | None, start: datetime, end: datetime) -> bool:
    times = intent.action is Write.CANCEL or (intent.start, intent.end) == (start, end)
    return intent.action is write and intent.subject == subject and times


def decide(
    action: Action,
    *,
    start: datetime,
    end: datetime,
    mirror: Mirror | None,
    intents: Sequence[Intent],
    now: datetime,
    limits: Limits,
    can_find: bool,
    can_cancel: bool,
    target: str,
) -> Next:
    """What to do next for one (meeting, target); `action` is what `plan` says the target needs."""
    halts = [i for i in intents if i.state is State.HALTED]
    if halts:
        return Next(Do.HALT, intent=halts[-1], reason=halts[-1].reason or "halted")
    busy = next((i for i in intents if i.in_flight(now)), None)
    if busy is not None:
        return Next(
            Do.WAIT, intent=busy, reason=f"a {busy.action} at {target} is in flight ({busy.reference})"
        )
    for intent in intents:
        if intent.answer_missing(now):
            if intent.action is not Write.CREATE:
                return Next(Do.RESEND, intent=intent)
            if intent.external_id:
                return Next(Do.ADOPT, intent=intent)
            return Next(Do.LOOKUP if can_find else Do.UNREACHABLE, intent=intent)

    # What one write would do now, if nothing else stood in the way.
    write: Write | None = None
    subject = mirror.external_id if mirror is not None and not mirror.missing else None
    if action is Action.CREATE:
        write = Write.CREATE
    elif action is Action.RECREATE:
        write = Write.CREATE  # with `subject` as the booking it replaces; the old one is cancelled next
    elif action is Action.RESCHEDULE:
        write = Write.RESCHEDULE
    elif action is Action.CANCEL:
        write = Write.CANCEL
    for intent in intents:
        if intent.state is State.PENDING and intent.step is Step.READY:
            if write is not None and _wants(intent, write, subject, start, end):
                return Next(Do.RETRY, intent=intent)
            return Next(
                Do.ABANDON, intent=intent, reason="superseded: the meeting changed before this write was made"
            )

    unknown = [i for i in intents if i.state is State.UNKNOWN]
    live = live_bookings(intents)
    stale = [b for b in live if mirror is None or b != mirror.external_id or mirror.missing]
    if stale:
        if not can_cancel:
            return Next(
                Do.REFUSE,
                reason=f"booking {stale[0]} at {target} is ours and no longer the meeting's "
                f"mirror, but {target} cannot cancel bookings: cancel it there by hand",
            )
        return Next(Do.WRITE, write=Write.CANCEL, subject=stale[0])
    if unknown and write is not Write.CANCEL:
        held = unknown[-1]
        return Next(
            Do.HOLD,
            intent=held,
            reason=(
                f"the {held.action} at {target} sent at {held.start.isoformat()} ({held.reference}) may have made a "
                f"booking: its answer was lost and {target} cannot be asked ({held.reason}); nothing more is written "
                "there for this meeting until a person checks and runs `bookingsync mirrors resolve`"
                + (
                    "; the meeting's cancel or move cannot reach that booking"
                    if action is not Action.CREATE
                    else ""
                )
            ),
        )
    if action is Action.UNSUPPORTED:
        return Next(
            Do.REFUSE,
            reason=f"{target} cannot do what this meeting needs "
            "(its capabilities lack the cancel or move it takes)",
        )
    if write is None:
        return Next(Do.NOTHING)
    if write is not Write.CANCEL:
        if write is Write.CREATE and live and not (mirror is not None and live == [mirror.external_id]):
            return Next(
                Do.HALT,
                write=write,
                subject=subject,
                reason=f"our intents say {', '.join(live)} is live at {target}; not booking again",
            )
        # A halt a person lifted starts the count afresh.
        since = max(
            [now - limits.window]
            + [i.updated_at for i in intents if i.step is Step.LIFTED and i.updated_at is not None]
        )
        if writes_since(intents, since) >= limits.max_writes:
            return Next(
                Do.HALT,
                write=write,
                subject=subject,
                reason=(
                    f"{writes_since(intents, since)} creates or moves of this meeting at {target} within "
                    f"{limits.window}; halted before another one, in case something loops "
                    "(`bookingsync mirrors resume` lifts it)"
                ),
            )
    return Next(Do.WRITE, write=write, subject=subject)
