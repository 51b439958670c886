"""The conflict policy: what a read of one link of a meeting may do to the canonical meeting.

A meeting has one authority, the link it was first seen through (its *origin*), and other links:
*mirrors* our routes booked at their targets, and *peers*, bookings of the same meeting made
independently at another provider and joined to it by an identity rule or by hand. What a read
of each may do (pure; worker/conflicts.py does the I/O):

* Any link: a record older than the one we hold from that link (`source_updated_at` before the
  link's) is **stale** and changes nothing, so a late page or webhook never brings back what a
  newer one replaced.
* The origin is **applied**, whole, except on a bidirectional route where the other end changed
  the meeting later: an origin record stamped before the meeting's content is a **conflict** (the
  newer change stays, the origin is converged to it).
* A mirror or a peer counts only for the fields that changed *there* since we last read it (a
  target's own title for a meeting type, say, is not a change) and that differ from the meeting,
  and not when they are what one of our own writes asked for (our echo). Such an edit is:
  - at a target of a one-way route: a **conflict**: reported (`meeting.sync_conflict`, audit)
    and the target converged back to the meeting;
  - at a target of a bidirectional route: **merged** when its stamp is newer than the meeting's;
    equal stamps, or a stamp missing on either side, leave the origin's content (the stated tie
    rule: the origin wins), and the target is converged back as for a conflict;
  - at a peer (no route writes there): merged when newer than the meeting's stamp or when either
    stamp is missing (a change read at a peer is newer than anything we read there before);
    otherwise observed.

Compared fields: status (as cancelled / active / other: `scheduled` and `confirmed` are one
thing), start, end, title, attendee email and name, hosts — at a mirror only status, start and
end (`MIRRORED`: what a target can be written with). Start and end are compared at the
resolution of the end that was read (`resolution`: a target that keeps whole minutes holds a
meeting at 10:00:20 as 10:00, and that is no change and no conflict), as the planner compares a
mirror (worker/precision.py `in_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bookingsync.models.meeting import Meeting, MeetingStatus, Person


class Role(StrEnum):
    ORIGIN = "origin"
    MIRROR = "mirror"
    PEER = "peer"


class Verdict(StrEnum):
    STALE = "stale"  # older than what this link already said: nothing changes
    APPLY = "apply"  # the whole record is the meeting (the origin)
    MERGE = "merge"  # the fields changed at this end go into the meeting
    OBSERVE = "observe"  # recorded on the link only
    CONFLICT = "conflict"  # reported, and this end converged back to the meeting


COMPARED = ("status", "start", "end", "title", "attendee.email", "attendee.name", "hosts")
# What a mirror is compared on: what a target can be written with. No target's documented create,
# move or cancel takes a new title, attendee or host for an existing booking, and targets show
# their own (Meetergo's title is the meeting type's name, and its webhook and listing disagree on
# it): comparing those at a mirror would report conflicts nothing can converge.
MIRRORED = ("status", "start", "end")


def view(meeting: Meeting) -> dict[str, Any]:
    """The compared fields of a meeting, status by kind."""
    status = meeting.status
    kind = "cancelled" if status is MeetingStatus.CANCELLED else "active" if meeting.active else status.value
    return {
        "status": kind,
        "start": meeting.start,
        "end": meeting.end,
        "title": meeting.title,
        "attendee.email": meeting.attendee.email,
        "attendee.name": meeting.attendee.name,
        "hosts": meeting.hosts,
    }


TIMES = frozenset({"start", "end"})
EXACT = timedelta(0)


def differs(name: str, a: Any, b: Any, resolution: timedelta = EXACT) -> bool:
    """Whether field `name` differs between two views; a time only when one step of `resolution`
    or more apart (EXACT: any difference), so what an end cannot show is no difference there."""
    if name in TIMES and resolution > EXACT and isinstance(a, datetime) and isinstance(b, datetime):
        return abs(a - b) >= resolution
    return bool(a != b)


def edits(
    before: Meeting | None,
    after: Meeting,
    meeting: Meeting,
    fields: tuple[str, ...] = COMPARED,
    resolution: timedelta = EXACT,
) -> tuple[str, ...]:
    """Fields changed at an end (from `before`, its last read, to `after`) that differ from the
    meeting, times at the end's `resolution`. Nothing when we never read it before: joining is
    not a change."""
    if before is None:
        return ()
    was, now, held = view(before), view(after), view(meeting)
    return tuple(
        name
        for name in fields
        if differs(name, was[name], now[name], resolution)
        and differs(name, now[name], held[name], resolution)
    )


@dataclass(frozen=True)
class Read:
    role: Role
    stamp: datetime | None  # the record's source_updated_at
    link_stamp: datetime | None  # the one we hold from this link
    meeting_stamp: datetime | None  # the stamp of the content the meeting holds
    edits: tuple[str, ...] = ()  # see `edits`
    bidirectional: bool = False  # a bidirectional route joins this end and the origin
    ours: bool = False  # the record is what one of our writes to this end asked for (an echo)


def _newer(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and a > b


def decide(read: Read) -> Verdict:
    if _newer(read.link_stamp, read.stamp):
        return Verdict.STALE
    if read.role is Role.ORIGIN:
        if read.bidirectional and _newer(read.meeting_stamp, read.stamp):
            return Verdict.CONFLICT
        return Verdict.APPLY
    if not read.edits or read.ours:
        return Verdict.OBSERVE
    if read.role is Role.PEER:
        missing = read.stamp is None or read.meeting_stamp is None
        return Verdict.MERGE if missing or _newer(read.stamp, read.meeting_stamp) else Verdict.OBSERVE
    if read.bidirectional and _newer(read.stamp, read.meeting_stamp):
        return Verdict.MERGE
    return Verdict.CONFLICT


def merge(meeting: Meeting, record: Meeting, fields: tuple[str, ...]) -> Meeting:
    """The meeting with `fields` taken from `record` (a status taken whole)."""
    update: dict[str, Any] = {}
    person = meeting.attendee
    for name in fields:
        if name == "status":
            update["status"] = record.status
        elif name == "attendee.email":
            person = Person(email=record.attendee.email, name=person.name, phone=person.phone)
        elif name == "attendee.name":
            person = Person(email=person.email, name=record.attendee.name, phone=person.phone)
        else:
            update[name] = getattr(record, name)
    update["attendee"] = person
    merged = meeting.model_copy(update=update)
    if merged.end < merged.start:  # one end moved only the start (or end): keep the length
        merged = merged.model_copy(update={"end": merged.start + (meeting.end - meeting.start)})
    return merged
