"""The replay window of a signed webhook: its timestamp header must be near our clock.

Leezy (seconds) and HubSpot (milliseconds) both sign a timestamp with each delivery and document a
window (five minutes, each adapter names its own); a delivery outside it may be a replay of one
captured earlier and is refused before its signature is even computed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bookingsync.models.errors import WebhookUnauthorized

_UNITS = {1: "seconds", 1000: "milliseconds"}


def check_sent_at(
    header: str, value: str, now: datetime, *, tolerance: timedelta, per_second: int = 1
) -> datetime:
    """When the delivery says it was sent; WebhookUnauthorized naming `header` unless it is a
    Unix time (counted in 1/`per_second` s) within `tolerance` of `now`."""
    try:
        if not value.isdigit():
            raise ValueError(value)
        sent = datetime.fromtimestamp(int(value) / per_second, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise WebhookUnauthorized(
            f"{header} {value[:20]!r} is not a Unix time in {_UNITS.get(per_second, 'seconds')}"
        ) from exc
    if abs(now - sent) > tolerance:
        raise WebhookUnauthorized(
            f"{header} {value} is more than {tolerance.total_seconds() / 60:g} minutes from our clock; "
            "refusing a possible replay"
        )
    return sent
