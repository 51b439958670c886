"""The two times an HTTP answer carries in its headers: `Date` and `Retry-After` (RFC 9110).

Parsed once here for the providers' answers (adapters/http.py, adapters/skew.py) and for our
subscribers' answers (worker/delivery.py): a header that cannot be read is None, never an error,
because a bad header must not turn a retryable answer into a crash.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_http_date(value: str | None) -> datetime | None:
    """An aware instant from an HTTP date, or None when there is none or it cannot be read."""
    if not value or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    # RFC 9110 dates are GMT even when the zone is spelled oddly ("-0000" parses naive).
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_retry_after(value: str | None, *, reference: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if unusable.

    An HTTP date counts from `reference` (best the answer's own `Date`, which avoids clock skew).
    A wait in the past is 0; NaN and infinities (which `float()` accepts) are unusable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        if when is None:
            return None
        seconds = (when - reference).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
