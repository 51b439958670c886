"""How far a provider's clock is from ours, measured from its answers instead of assumed.

A cursor built from a provider's `updated_at` stamps is in the provider's time; the margin that
keeps records changed during a read inside the next read is counted back from *our* clock. With
the provider two minutes behind, a 30 s margin protects nothing. So every answer's `Date`
header (RFC 9110: the time the server generated it) is a sample of provider time minus ours,
taken at the moment we received it; the estimate is the median of the last few samples, which
one slow answer or a cached `Date` cannot move. Where no `Date` comes, the newest `updated_at`
a read returned is a lower bound on the provider's clock: one in our future says it runs ahead.

`margin(base)` widens a cursor margin by the provider's lag; a skew beyond `warn_beyond` is a
WARNING (once per crossing) and, through `estimates()`, the gauge
`bookingsync_provider_clock_skew_seconds{connection}`.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections import deque
from datetime import datetime, timedelta

from bookingsync.adapters.http_dates import parse_http_date

log = logging.getLogger(__name__)

SAMPLES = 15  # answers the median is taken over
# A `Date` has whole seconds; a skew under this is noise, and beyond it a person should look.
DEFAULT_WARN_BEYOND = timedelta(seconds=60)

_ESTIMATES: dict[str, SkewEstimate] = {}
_LOCK = threading.Lock()


class SkewEstimate:
    """The provider's clock minus ours (positive: it runs ahead), for one connection."""

    def __init__(self, connection_id: str, *, warn_beyond: timedelta = DEFAULT_WARN_BEYOND) -> None:
        self.connection_id = connection_id
        self.warn_beyond = warn_beyond
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._ahead_at_least: float | None = None
        self._warned = False
        self._lock = threading.Lock()

    def observe_date(self, date_header: str | None, received_at: datetime) -> None:
        """One answer: its `Date` header against our clock when it arrived."""
        server = parse_http_date(date_header)
        if server is None:
            return
        with self._lock:
            # `Date` is truncated to the second: +0.5 s is the middle of the second it names.
            self._samples.append((server - received_at).total_seconds() + 0.5)
        self._check()

    def observe_newest(self, updated_at: datetime | None, now: datetime) -> None:
        """The newest `updated_at` a read returned: one after `now` proves the provider runs ahead."""
        if updated_at is None or updated_at <= now:
            return
        with self._lock:
            ahead = (updated_at - now).total_seconds()
            self._ahead_at_least = max(self._ahead_at_least or 0.0, ahead)
        self._check()

    @property
    def offset(self) -> timedelta:
        """The estimate; zero until anything was observed."""
        with self._lock:
            if self._samples:
                return timedelta(seconds=statistics.median(self._samples))
            return timedelta(seconds=self._ahead_at_least or 0.0)

    def margin(self, base: timedelta) -> timedelta:
        """`base` widened by how far the provider's clock lags ours (a clock ahead needs nothing)."""
        return base + max(timedelta(0), -self.offset)

    def _check(self) -> None:
        offset = self.offset
        beyond = abs(offset) > self.warn_beyond
        if beyond and not self._warned:
            log.warning(
                "%s: the provider's clock is %.1f s %s ours (beyond %.0f s); cursor margins are widened by "
                "its lag, but check the provider's or this host's time (NTP)",
                self.connection_id,
                abs(offset.total_seconds()),
                "ahead of" if offset > timedelta(0) else "behind",
                self.warn_beyond.total_seconds(),
            )
        self._warned = beyond


def for_connection(connection_id: str, **kwargs: timedelta) -> SkewEstimate:
    """The estimate of one connection, shared by its adapter and reported by /metrics."""
    with _LOCK:
        estimate = _ESTIMATES.get(connection_id)
        if estimate is None:
            estimate = _ESTIMATES[connection_id] = SkewEstimate(connection_id, **kwargs)
        return estimate


def estimates() -> dict[str, timedelta]:
    """Every connection's current estimate (for the metrics gauge)."""
    with _LOCK:
        current = list(_ESTIMATES.values())
    return {e.connection_id: e.offset for e in current}
