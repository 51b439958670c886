"""Mirroring: keep a meeting's copies in the connections a route names in step with it.

A route `sources → targets` means: a meeting first seen at a source connection is booked at
every target, moved there when it moves, and cancelled there when it is deleted. Each published
lifecycle event of such a meeting becomes a delivery to `route:<target>`, so mirroring inherits
the outbox's durability, retries, dead letters and replay.

Work converges instead of replaying: whichever event triggered it, `converge` compares the
meeting as it is now with what the target has (the mirror link) and with the writes already made
there (the intents), and takes the next step until nothing is left to do. Every write is an
intent committed before the provider call and completed by its answer (worker/intents.py has
the state machine); a lost answer is looked up where the provider can be asked and otherwise
held as unknown, never written again blindly. A lease per (meeting, target) keeps two workers
from writing the same mirror at once; the intent's own `calling_until` outlives a worker that
dies mid-call.

Outcomes for the delivery: `succeeded` (in step, naming what was done), `retry` (passing trouble,
an answer to look up later, a call in flight elsewhere), `dead` with the reason (the provider
refused, the target cannot do it, an unknown outcome holds it, the breaker halted it).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from bookingsync.adapters.base import BookingRequest, Capability, Finder, Mover, Writer
from bookingsync.models.errors import (
    AnswerLost,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from bookingsync.models.meeting import SourceRecord
from bookingsync.models.tables import MeetingRow
from bookingsync.worker import intent_store, intents, leases, precision, store
from bookingsync.worker.config import Config
from bookingsync.worker.db import transaction
from bookingsync.worker.intents import Do, Intent, Limits, Mirror, Write
from bookingsync.worker.lifecycle import EventType
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)
ROUTE_PREFIX = intent_store.ROUTE_PREFIX
# A sync conflict (a change at a target the policy did not take, worker/conflicts.py) is routed
# too: converging every target of the meeting puts the changed one back.
MIRRORED_EVENTS = frozenset(
    {EventType.BOOKED, EventType.RESCHEDULED, EventType.DELETED, EventType.UPDATED, EventType.SYNC_CONFLICT}
)
# Steps one delivery may take: a move as create + cancel, a lookup after a lost answer, a stale
# booking cancelled first. More means something is off; the delivery comes back later.
MAX_STEPS = 6
WAIT_SECONDS = 5.0
# A unique-key conflict while storing an answer (an echo linked the booking first) is re-read and
# stored again; it never leads to another provider call.
STORE_ATTEMPTS = 3


def targets_for(cfg: Config, origin: str | None, event_type: str) -> list[str]:
    """Delivery targets (`route:<connection>`) for an event of a meeting first seen at `origin`."""
    if origin is None or event_type not in MIRRORED_EVENTS:
        return []
    out: list[str] = []
    for route in cfg.routes:
        ends: tuple[str, ...] = ()
        if origin in route.sources:
            ends = route.targets
        if route.bidirectional and (origin in route.sources or origin in route.targets):
            # Both ways: every end, the origin included (a change merged from a target reaches it).
            ends = route.sources + route.targets
        elif origin in route.sources:
            ends = tuple(t for t in route.targets if t != origin)
        out += [f"{ROUTE_PREFIX}{t}" for t in ends if f"{ROUTE_PREFIX}{t}" not in out]
    return out


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | retry | dead
    detail: str = ""
    retry_after: float | None = None


def new_reference() -> str:
    """What we plant at the provider: short enough for a RocketLead booking name."""
    return f"bsw_{uuid.uuid4().hex[:20]}"


def converge(rt: Runtime, meeting_id: str, target: str) -> Outcome:
    conn = rt.config.connection(target)
    if conn is None:
        return Outcome("dead", f"route target {target!r} is not a configured connection")
    lease_name = f"mirror:{meeting_id}:{target}"
    seconds = rt.config.mirroring.lease_seconds
    done: list[str] = []
    try:
        for _ in range(MAX_STEPS):
            if not leases.acquire(rt.engine, lease_name, rt.holder, rt.clock.now(), seconds):
                return Outcome(
                    "retry", "another worker is mirroring this meeting there", retry_after=WAIT_SECONDS
                )
            outcome = _step(rt, meeting_id, target, conn.provider, done)
            if outcome is not None:
                return outcome
        return Outcome("retry", f"still converging after {', '.join(done)}", retry_after=1.0)
    finally:
        leases.release(rt.engine, lease_name, rt.holder)


@dataclass(frozen=True)
class _Call:
    row_id: int
    intent: Intent
    request: BookingRequest
    lookup: bool = False


def _step(rt: Runtime, meeting_id: str, target: str, provider: str, done: list[str]) -> Outcome | None:
    """One decision and at most one provider call; None when there may be more to do."""
    adapter = rt.adapter(target)
    if not isinstance(adapter, Writer):  # config refuses such targets; a changed config may not
        return Outcome("dead", f"{target} ({provider}) cannot book: it is read-only for bookingsync")
    caps = adapter.capabilities
    now = rt.clock.now()
    lease = timedelta(seconds=rt.config.mirroring.lease_seconds)
    with transaction(rt.engine) as session:
        row = session.get(MeetingRow, meeting_id)
        if row is None:
            return Outcome("dead", f"meeting {meeting_id} does not exist")
        link = store.link_for(session, meeting_id, target)
        if link is not None and not link.mirrored and link.content_hash == row.content_hash:
            return Outcome("succeeded", ", ".join(done) if done else "the meeting's own source: in step")
        mirror = Mirror(link.external_id, link.start, link.end, link.missing) if link else None
        shape = precision.shape_of(adapter)  # compared at the precision the target keeps
        mirror = precision.as_planned(shape, mirror, row.start, row.end)
        if link is not None and link.mirrored and _retitle(adapter, mirror, row, link.observed):
            # In step in time but not in title, at a target whose move takes the title: moved to
            # the same times, with the title (the planner sees a mirror to move).
            assert mirror is not None
            mirror = Mirror(mirror.external_id, None, None, mirror.missing)
        rows = intent_store.for_target(session, meeting_id, target)
        history = [intent_store.value(r) for r in rows]
        action = intents.plan(
            live=row.booked and not row.deleted,
            start=row.start,
            end=row.end,
            now=now,
            mirror=mirror,
            capabilities=caps,
        )
        nxt = intents.decide(
            action,
            start=row.start,
            end=row.end,
            mirror=mirror,
            intents=history,
            now=now,
            limits=Limits(max_writes=rt.config.mirroring.max_writes_per_hour),
            can_find=Capability.FIND_BOOKING in caps and isinstance(adapter, Finder),
            can_cancel=Capability.CANCEL in caps,
            target=target,
        )
        meeting = store.meeting_of(row)
        by_ref = {r.reference: r for r in rows}
        if nxt.do is Do.NOTHING:
            return Outcome("succeeded", ", ".join(done) if done else "already in step")
        cannot = (
            precision.refusal(shape, row.start, row.end, target)
            if nxt.do is Do.WRITE and nxt.write is not Write.CANCEL
            else None
        )
        if cannot is not None:  # refused visibly (`mirrors list`), never approximated
            if not any(
                i.state is intents.State.FAILED
                and i.reason == cannot
                and (i.start, i.end) == (row.start, row.end)
                for i in history
            ):
                intent_store.add(
                    session,
                    Intent(
                        reference=new_reference(),
                        action=nxt.write or Write.CREATE,
                        start=row.start,
                        end=row.end,
                        subject=nxt.subject,
                        state=intents.State.FAILED,
                        reason=cannot,
                    ),
                    meeting_id=meeting_id,
                    connection=target,
                    now=now,
                )
            log.warning("mirror of meeting %s at %s: %s", meeting_id, target, cannot)
            return Outcome("dead", _after(done, cannot))
        if nxt.do is Do.WAIT:
            return Outcome("retry", nxt.reason, retry_after=WAIT_SECONDS)
        if nxt.do in (Do.HOLD, Do.REFUSE):
            log.warning("mirror of meeting %s at %s: %s", meeting_id, target, nxt.reason)
            return Outcome("dead", _after(done, nxt.reason))
        if nxt.do is Do.HALT:
            if nxt.intent is None:  # the breaker trips now: leave a visible trace
                halted = intents.halted(
                    new_reference(),
                    nxt.write or Write.CREATE,
                    row.start,
                    row.end,
                    nxt.reason,
                    subject=nxt.subject,
                )
                intent_store.add(session, halted, meeting_id=meeting_id, connection=target, now=now)
                log.warning("mirror of meeting %s at %s HALTED: %s", meeting_id, target, nxt.reason)
            return Outcome("dead", _after(done, f"halted: {nxt.reason}"))
        assert nxt.intent is not None or nxt.do is Do.WRITE
        if nxt.do is Do.UNREACHABLE:
            assert nxt.intent is not None
            held = intents.unreachable(
                nxt.intent,
                f"{nxt.intent.reason}; {target} documents no way to find a "
                "booking, so whether it was made is unknown",
            )
            intent_store.save(by_ref[held.reference], held, now)
            log.warning(
                "meeting %s: the %s at %s (%s) may or may not have made a booking: its answer was lost "
                "and %s cannot be asked; holding this mirror (see `bookingsync mirrors list --unresolved`)",
                meeting_id,
                held.action,
                target,
                held.reference,
                target,
            )
            return None
        if nxt.do is Do.ADOPT:
            assert nxt.intent is not None and nxt.intent.external_id is not None
            # The echo that named it linked it too (store.link_echo); the answer is not needed.
            intent_store.save(
                by_ref[nxt.intent.reference], intents.found(nxt.intent, nxt.intent.external_id), now
            )
            done.append(f"found {nxt.intent.external_id} (by its echo)")
            log.info(
                "meeting %s: the create at %s whose answer was lost made %s, as its echo showed; linked, not "
                "booked again",
                meeting_id,
                target,
                nxt.intent.external_id,
            )
            return None
        if nxt.do is Do.RESEND:
            assert nxt.intent is not None
            intent_store.save(by_ref[nxt.intent.reference], intents.resend(nxt.intent), now)
            return Outcome(
                "retry",
                f"the {nxt.intent.action}'s answer was lost ({nxt.intent.reason}); sending it again later",
                retry_after=WAIT_SECONDS,
            )
        if nxt.do is Do.ABANDON:
            assert nxt.intent is not None
            intent_store.save(by_ref[nxt.intent.reference], intents.abandoned(nxt.intent, nxt.reason), now)
            return None
        if nxt.do is Do.LOOKUP:
            assert nxt.intent is not None
            call = _Call(
                by_ref[nxt.intent.reference].id or 0, nxt.intent, _request(meeting, nxt.intent), lookup=True
            )
        else:
            if nxt.do is Do.RETRY:
                assert nxt.intent is not None
                current = intents.begin(nxt.intent, now, lease)
                stored = intent_store.save(by_ref[current.reference], current, now)
            else:
                assert nxt.write is not None
                fresh = Intent(
                    reference=new_reference(),
                    action=nxt.write,
                    start=row.start,
                    end=row.end,
                    subject=nxt.subject,
                    attendee_email=row.attendee_email,
                )
                current = intents.begin(fresh, now, lease)
                stored = intent_store.add(session, current, meeting_id=meeting_id, connection=target, now=now)
            call = _Call(stored.id or 0, current, _request(meeting, current))
    # The intent is committed: now, and only now, the provider is called.
    if call.lookup and isinstance(adapter, Finder):  # a lookup is planned only where can_find
        return _lookup(rt, adapter, meeting_id, target, provider, call, done)
    return _write(rt, adapter, meeting_id, target, provider, call, done)


def _retitle(adapter: Any, mirror: Mirror | None, row: MeetingRow, observed: Any) -> bool:
    """Whether a live mirror in step in time shows another title than the meeting's, at a target
    whose move can write the title (`pushes`, README "Routes"). A target that does not keep what
    it was sent is re-sent at most `max_writes_per_hour` times: the breaker counts these moves."""
    if "title" not in getattr(adapter, "pushes", ()) or not row.title or not row.booked or row.deleted:
        return False
    if mirror is None or mirror.missing or (mirror.start, mirror.end) != (row.start, row.end):
        return False
    return isinstance(observed, dict) and observed.get("title") != row.title


def _request(meeting: Any, intent: Intent) -> BookingRequest:
    at = meeting.model_copy(update={"start": intent.start, "end": intent.end})
    replaces = intent.subject if intent.action is Write.CREATE else None
    return BookingRequest(meeting=at, reference=intent.reference, replaces=replaces)


def _after(done: list[str], reason: str) -> str:
    return f"{', '.join(done)} done; then {reason}" if done else reason


def _write(
    rt: Runtime, adapter: Writer, meeting_id: str, target: str, provider: str, call: _Call, done: list[str]
) -> Outcome | None:
    intent, request = call.intent, call.request
    what = f"{intent.action} at {target}"
    try:
        if intent.action is Write.CREATE:
            record: SourceRecord | None = adapter.create(request)
        elif intent.action is Write.RESCHEDULE:
            # The planner moves in place only with RESCHEDULE, which Movers declare (test_adapter_parts).
            assert intent.subject is not None and isinstance(adapter, Mover)
            record = adapter.reschedule(intent.subject, request)
        else:
            assert intent.subject is not None
            record = None
            try:
                adapter.cancel(intent.subject)
            except ProviderNotFound:
                pass  # already gone there: what we wanted
    except AnswerLost as exc:
        _finish(rt, call, intents.lost(intent, str(exc)))
        log.warning(
            "meeting %s: the %s got no answer (%s); %s",
            meeting_id,
            what,
            exc,
            "looking for the booking before anything else"
            if intent.action is Write.CREATE
            else "it will be sent again",
        )
        if intent.action is Write.CREATE:
            return None
        return Outcome("retry", f"{what}: {exc}", retry_after=WAIT_SECONDS)
    except RateLimited as exc:
        _finish(rt, call, intents.deferred(intent, str(exc)))
        return Outcome("retry", f"{what}: {exc}", retry_after=exc.retry_after)
    except ProviderNotFound as exc:
        if intent.action is Write.RESCHEDULE:
            # The booking to move is gone there: the next step books the meeting anew.
            _finish(rt, call, intents.refused(intent, str(exc)), gone=intent.subject)
            return None
        _finish(rt, call, intents.refused(intent, str(exc)))
        return Outcome("dead", _after(done, f"{what}: {exc}"))
    except ProviderRejected as exc:  # includes SlotUnavailable: a person has to decide
        _finish(rt, call, intents.refused(intent, str(exc)))
        return Outcome("dead", _after(done, f"{what}: {exc}"))
    except (
        ProviderUnavailable
    ) as exc:  # nothing reached the provider's write (never sent, or a read before it)
        _finish(rt, call, intents.deferred(intent, str(exc)))
        return Outcome("retry", f"{what}: {exc}")
    except ProviderError as exc:  # the credential or its scope (ProviderAuthError): a person has to fix it
        _finish(rt, call, intents.refused(intent, str(exc)))
        return Outcome("dead", _after(done, f"{what}: {exc}"))
    alias = record.reference if record is not None and record.reference != intent.reference else None
    final = intents.answered(intent, record.external_id if record else (intent.subject or ""), alias)
    _finish(rt, call, final, record=record, provider=provider, meeting_id=meeting_id, target=target)
    done.append(f"{intent.action} {final.external_id}".strip())
    log.info("mirrored meeting %s into %s: %s %s", meeting_id, target, intent.action, final.external_id)
    return None


def _lookup(
    rt: Runtime, adapter: Finder, meeting_id: str, target: str, provider: str, call: _Call, done: list[str]
) -> Outcome | None:
    intent = call.intent
    try:
        record = adapter.find_booking(call.request)
    except ProviderError as exc:
        return Outcome("retry", f"looking for the booking whose answer was lost at {target} failed: {exc}")
    if record is None:
        _finish(rt, call, intents.absent(intent))
        log.info(
            "meeting %s: the create at %s whose answer was lost (%s) made no booking; sending it again",
            meeting_id,
            target,
            intent.reference,
        )
        return None
    alias = record.reference if record.reference != intent.reference else None
    _finish(
        rt,
        call,
        intents.found(intent, record.external_id, alias),
        record=record,
        provider=provider,
        meeting_id=meeting_id,
        target=target,
    )
    done.append(f"found {record.external_id}")
    log.info(
        "meeting %s: the create at %s whose answer was lost made %s; linked, not booked again",
        meeting_id,
        target,
        record.external_id,
    )
    return None


def _finish(
    rt: Runtime,
    call: _Call,
    final: Intent,
    *,
    record: SourceRecord | None = None,
    provider: str = "",
    meeting_id: str = "",
    target: str = "",
    gone: str | None = None,
) -> None:
    """Store the outcome of a call: the intent, and the link it makes or closes, in one transaction.

    An echo may have linked the booking meanwhile (a unique-key conflict on PostgreSQL): the
    transaction is simply run again on what is stored now. Never another provider call.
    """
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            with transaction(rt.engine) as session:
                row = intent_store.get(session, call.row_id)
                if row is None:
                    return
                now = rt.clock.now()
                seen = intent_store.value(row)
                began = call.intent
                if (seen.state, seen.step, seen.attempts) != (
                    began.state,
                    began.step,
                    began.attempts,
                ) and not (final.state is intents.State.DONE and seen.state is not intents.State.DONE):
                    # A call that outlived its lease: another worker has moved this write on since.
                    # Only an answer (the truth about the booking) may still overwrite that.
                    log.info(
                        "write %s moved on while its call was out (%s/%s); keeping that",
                        began.reference,
                        seen.state,
                        seen.step,
                    )
                    final = seen
                # An echo may have named the booking while its answer was being lost.
                if final.answer_missing(now) and seen.external_id:
                    final = intents.found(final, seen.external_id)
                intent_store.save(row, final, now)
                closed = (
                    final.subject
                    if final.action is Write.CANCEL and final.state is intents.State.DONE
                    else gone
                )
                if closed:
                    old = store.lock_links(session, row.connection, {closed})[closed]
                    if old is not None and old.meeting_id == row.meeting_id:
                        old.missing = True
                if final.state is intents.State.DONE and record is not None:
                    replaces = final.subject if final.subject != record.external_id else None
                    store.record_mirror(
                        session,
                        meeting_id=meeting_id,
                        connection=target,
                        provider=provider,
                        record=record,
                        raw=record.meeting.model_dump(mode="json"),
                        now=now,
                        replaces=replaces,
                    )
            return
        except IntegrityError:
            if attempt == STORE_ATTEMPTS:
                raise
            log.info("storing the answer of %s met a link stored meanwhile; storing again", final.reference)
