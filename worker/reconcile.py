"""Mirroring: keep a meeting's copies in the connections a route names in step with it.

A route `sources → targets` means: a meeting first seen at a source connection is booked at
every target, moved there when it moves, and cancelled there when it is deleted. Each published
lifecycle event of such a meeting becomes a delivery to `route:<target>`, so mirroring inherits
the outbox's durability, retries, dead letters and replay.

Work converges instead of replaying: whichever event triggered it, `converge` compares the
meeting as it is now with what the target has (the mirror link) and does what closes the gap,
so deliveries that arrive out of order or twice do no harm. A lease per (meeting, target) keeps
two workers from booking the same mirror at once.

Known limits: a change made directly at a target is ingested like any change (if the target is
also read) but is not pushed back to the origin; a target read that races the link being stored
can see the mirror before it is linked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bookingsync.adapters.base import BookingRequest, Capability
from bookingsync.models.errors import ProviderError, ProviderNotFound, ProviderRejected, RateLimited
from bookingsync.models.tables import MeetingRow
from bookingsync.worker import leases, store
from bookingsync.worker.config import Config
from bookingsync.worker.db import transaction
from bookingsync.worker.lifecycle import EventType
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)
ROUTE_PREFIX = "route:"
MIRRORED_EVENTS = frozenset({EventType.BOOKED, EventType.RESCHEDULED, EventType.DELETED, EventType.UPDATED})
LEASE_SECONDS = 120.0


class Action(StrEnum):
    NOTHING = "nothing"
    CREATE = "create"
    RESCHEDULE = "reschedule"
    RECREATE = "recreate"  # a target that cannot move a booking: book the new time, cancel the old
    CANCEL = "cancel"


@dataclass(frozen=True)
class Mirror:
    external_id: str
    start: datetime | None
    end: datetime | None
    missing: bool


def plan(*, live: bool, start: datetime, end: datetime, now: datetime, mirror: Mirror | None,
         capabilities: frozenset[Capability]) -> Action:
    """Pure: the one step that brings the target in line with the meeting."""
    has_mirror = mirror is not None and not mirror.missing
    if not live:
        return Action.CANCEL if has_mirror and Capability.CANCEL in capabilities else Action.NOTHING
    if end <= now:
        return Action.NOTHING  # history: nothing to book or move any more
    if not has_mirror:
        return Action.CREATE if Capability.CREATE in capabilities else Action.NOTHING
    assert mirror is not None
    if (mirror.start, mirror.end) == (start, end):
        return Action.NOTHING
    if Capability.RESCHEDULE in capabilities:
        return Action.RESCHEDULE
    if {Capability.CREATE, Capability.CANCEL} <= capabilities:
        return Action.RECREATE
    return Action.NOTHING


def targets_for(cfg: Config, origin: str | None, event_type: str) -> list[str]:
    """Delivery targets (`route:<connection>`) for an event of a meeting first seen at `origin`."""
    if origin is None or event_type not in MIRRORED_EVENTS:
        return []
    out: list[str] = []
    for route in cfg.routes:
        if origin in route.sources:
            out += [f"{ROUTE_PREFIX}{t}" for t in route.targets if t != origin and f"{ROUTE_PREFIX}{t}" not in out]
    return out


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | retry | dead
    detail: str = ""
    retry_after: float | None = None


def converge(rt: Runtime, meeting_id: str, target: str) -> Outcome:
    conn = rt.config.connection(target)
    if conn is None:
        return Outcome("dead", f"route target {target!r} is not a configured connection")
    lease_name = f"mirror:{meeting_id}:{target}"
    if not leases.acquire(rt.engine, lease_name, rt.holder, rt.clock.now(), LEASE_SECONDS):
        return Outcome("retry", "another worker is mirroring this meeting there", retry_after=5)
    try:
        return _converge(rt, meeting_id, target, conn.provider)
    finally:
        leases.release(rt.engine, lease_name, rt.holder)


def _converge(rt: Runtime, meeting_id: str, target: str, provider: str) -> Outcome:
    adapter = rt.adapter(target)
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row = session.get(MeetingRow, meeting_id)
        if row is None:
            return Outcome("dead", f"meeting {meeting_id} does not exist")
        link = store.link_for(session, meeting_id, target)
        mirror = Mirror(link.external_id, link.start, link.end, link.missing) if link else None
        request = BookingRequest(meeting=store.meeting_of(row), reference=row.id)
        action = plan(live=row.booked and not row.deleted, start=row.start, end=row.end, now=now, mirror=mirror,
                      capabilities=adapter.capabilities)
    writer = adapter  # capabilities say it writes; the Writer methods are its own
    try:
        if action is Action.CREATE or action is Action.RECREATE:
            record = writer.create(request)  # type: ignore[attr-defined]
            if action is Action.RECREATE and mirror is not None:
                _cancel_quietly(writer, mirror.external_id)
        elif action is Action.RESCHEDULE:
            assert mirror is not None
            record = writer.reschedule(mirror.external_id, request)  # type: ignore[attr-defined]
        elif action is Action.CANCEL:
            assert mirror is not None
            _cancel_quietly(writer, mirror.external_id)
            record = None
        else:
            return Outcome("succeeded", "already in step")
    except RateLimited as exc:
        return Outcome("retry", str(exc), retry_after=exc.retry_after)
    except ProviderRejected as exc:  # includes SlotUnavailable: a person has to decide
        return Outcome("dead", f"{action}: {exc}")
    except ProviderError as exc:
        return Outcome("retry", f"{action}: {exc}")
    with transaction(rt.engine) as session:
        if record is not None:
            store.record_mirror(session, meeting_id=meeting_id, connection=target, provider=provider, record=record,
                                raw=record.meeting.model_dump(mode="json"), now=rt.clock.now())
        else:
            link_row = store.link_for(session, meeting_id, target)
            if link_row is not None:
                link_row.missing = True
    log.info("mirrored %s into %s: %s", meeting_id, target, action)
    return Outcome("succeeded", str(action))


def _cancel_quietly(writer: object, external_id: str) -> None:
    try:
        writer.cancel(external_id)  # type: ignore[attr-defined]
    except ProviderNotFound:
        pass  # already gone there: what we wanted
