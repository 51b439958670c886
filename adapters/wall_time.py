"""Wall-clock times read by a zone's rules: which instants a local time names, folds and gaps explicit.

A provider that writes a local time without an offset (a calendar slot at "02:00") leaves it to
the reader to apply the calendar zone's rules. Most of the year one local time names one instant.
When clocks go back, the repeated hour names two (`fold` 0 is the first, 1 the second); when they
go forward, the skipped hour names none. Guessing one reading (what `replace(tzinfo=...)` does,
always fold 0) books the wrong hour once a year, so every caller gets all readings and chooses.
A date without a time is no instant at all: `date_only` recognises it so adapters refuse it with
the reason (`DATE_ONLY`) instead of reading midnight UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

# Why a date without a time is refused (quarantined) rather than read as midnight UTC.
DATE_ONLY = (
    "is a date without a time (an all-day value); a meeting here is an instant, and midnight "
    "UTC would be a guess that puts it on the wrong day in most zones, so it is not read"
)


def date_only(value: Any) -> bool:
    """Whether `value` is an ISO 8601 calendar date with no time of day (`2027-10-31`)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if len(text) not in (8, 10) or "T" in text.upper():
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def readings(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants a naive local time names in `zone`, earliest first.

    One normally; two in a fold (first and second occurrence); none in a gap. A reading counts
    only if it reads back as the same local time, which is what rules out the gap: Python maps a
    gap time to an instant anyway, one that reads back as another local time.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"{wall.isoformat()} already has an offset; only local (naive) times have readings")
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return tuple(sorted(found))


def local(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local time of an aware instant in `zone`, `fold` set on the second of a repeated hour."""
    return instant.astimezone(zone).replace(tzinfo=None)
