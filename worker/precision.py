"""A meeting against its mirror, at the precision the target can hold. Pure: no store, no HTTP.

A target keeps its own grain of time (Meetergo books whole minutes; most JSON APIs keep
milliseconds) and its own set of lengths (a Meetergo meeting type's durations). Comparing the
meeting with the mirror exactly would call a mirror booked at 10:00 for a meeting at
10:00:00.250 out of step, and every converge would book it again. So the mirror is compared at
the target's resolution (`in_step`), and a meeting the target cannot hold at all (a length it
does not allow, no length at all) is refused with the reason (`refusal`), never approximated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bookingsync.adapters.base import BookingShape
from bookingsync.worker.intents import Mirror

DEFAULT = BookingShape()


def shape_of(adapter: Any) -> BookingShape:
    """The adapter's declared shape; one that declares none keeps milliseconds and any length."""
    shape = getattr(adapter, "shape", None)
    return shape if isinstance(shape, BookingShape) else DEFAULT


def in_step(
    shape: BookingShape,
    start: datetime,
    end: datetime,
    mirror_start: datetime | None,
    mirror_end: datetime | None,
) -> bool:
    """Whether a mirror at mirror_start–mirror_end is the meeting start–end as the target keeps it:
    each time less than one step of the target's resolution away. Symmetric on purpose: a
    provider that rounds (HubSpot's epoch milliseconds) is in step as much as one that floors
    (Meetergo's minutes), and a move smaller than the target can show is no reason to re-book."""
    if mirror_start is None or mirror_end is None:
        return False
    return abs(start - mirror_start) < shape.resolution and abs(end - mirror_end) < shape.resolution


def as_planned(shape: BookingShape, mirror: Mirror | None, start: datetime, end: datetime) -> Mirror | None:
    """The mirror as the planner should see it: in step at the target's resolution reads as the
    meeting's own times, so the planner's exact comparison says "nothing to do"."""
    if mirror is None or mirror.missing or not in_step(shape, start, end, mirror.start, mirror.end):
        return mirror
    return Mirror(mirror.external_id, start, end, mirror.missing)


def refusal(shape: BookingShape, start: datetime, end: datetime, target: str) -> str | None:
    """Why `target` cannot hold the meeting (a sentence naming it), or None."""
    why = shape.cannot_hold(start, end)
    return f"{target} cannot hold this meeting: {why}" if why else None
