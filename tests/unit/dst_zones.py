"""IANA zones whose clocks change in 2026–2027, and the instants they change at (for property tests)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

FROM, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)


def _offset(zone: ZoneInfo, at: datetime) -> timedelta | None:
    return at.astimezone(zone).utcoffset()


def _changes(key: str) -> tuple[datetime, ...]:
    zone, found, at = ZoneInfo(key), [], FROM
    step = timedelta(days=7)  # clocks change at most once a week (Morocco's Ramadan pause lasts a month)
    while at < UNTIL:
        nxt = at + step
        if _offset(zone, at) != _offset(zone, nxt):
            low, high = at, nxt  # bisect to the minute the offset changes
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                low, high = (mid, high) if _offset(zone, mid) == _offset(zone, low) else (low, mid)
            found.append(high.replace(second=0, microsecond=0))
        at = nxt
    return tuple(found)


@functools.cache
def dst_zone_keys() -> list[str]:
    """The keys of `dst_changes`, sorted: what the property tests draw from.

    Hypothesis's `timezone_keys()` filtered to these would draw the same keys, but it lists the
    tz database on every draw (most of a minute per few hundred examples on a busy machine).
    """
    return sorted(dst_changes())


@functools.cache
def dst_changes() -> dict[str, tuple[datetime, ...]]:
    """Zone key → the instants its UTC offset changes in 2026–2027 (only zones that have some)."""
    out = {}
    for key in sorted(available_timezones()):
        if key.startswith(("posix/", "right/")) or key in ("Factory", "localtime"):
            continue
        try:
            changes = _changes(key)
        except Exception:  # noqa: BLE001 - a key the tz database lists but cannot load here
            continue
        if changes:
            out[key] = changes
    return out
