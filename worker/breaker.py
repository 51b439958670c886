"""A circuit breaker per subscription: stop sending to an endpoint that keeps failing.

    closed ──(`failures` failures in a row)──▶ open ──(cooldown passes)──▶ half-open
       ▲                                         ▲                             │
       └───────────── the probe succeeds ────────┴──── the probe fails ────────┘

Closed, every attempt goes. Open, none does: work waits (in the database, as a pending
delivery due when the breaker half-opens) instead of tying up connections on a dead endpoint.
Half-open, exactly one attempt, the probe, goes; its success closes the breaker, its failure
opens it again for twice the previous cooldown (capped). A failure is an attempt a retry could
fix (no answer, 429, 5xx); a 4xx refusal means the endpoint is up, so it counts as success here.

Pure: the caller passes the time and holds a lock around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MAX_COOLDOWN_DOUBLINGS = 6  # 30 s doubles to at most 32 min
PROBE_WAIT_SECONDS = 1.0  # how long others wait while a probe is out


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Admission:
    send: bool
    retry_at: datetime | None = None  # when refused: when to try again
    probe: bool = False


class Breaker:
    def __init__(self, failures: int, cooldown_seconds: float) -> None:
        self.failures = failures
        self.cooldown = timedelta(seconds=cooldown_seconds)
        self.state = State.CLOSED
        self.in_a_row = 0
        self.trips = 0  # consecutive openings without a success between them
        self.open_until: datetime | None = None
        self.probing = False

    def shut_until(self, now: datetime) -> datetime | None:
        """While open and cooling down: when it half-opens. Looks only; `admit` decides."""
        if self.state is State.OPEN and self.open_until is not None and now < self.open_until:
            return self.open_until
        return None

    def admit(self, now: datetime) -> Admission:
        if self.state is State.CLOSED:
            return Admission(send=True)
        assert self.open_until is not None
        if now < self.open_until:
            return Admission(send=False, retry_at=self.open_until)
        if self.probing:
            return Admission(send=False, retry_at=now + timedelta(seconds=PROBE_WAIT_SECONDS))
        self.state = State.HALF_OPEN
        self.probing = True
        return Admission(send=True, probe=True)

    def record(self, ok: bool, now: datetime) -> State:
        """The outcome of an admitted attempt; returns the state after it."""
        if ok:
            self.state, self.in_a_row, self.trips, self.open_until, self.probing = (
                State.CLOSED,
                0,
                0,
                None,
                False,
            )
            return self.state
        self.in_a_row += 1
        if self.state is State.HALF_OPEN or (self.state is State.CLOSED and self.in_a_row >= self.failures):
            self.trips += 1
            self.state = State.OPEN
            self.open_until = now + self.cooldown * 2 ** min(self.trips - 1, MAX_COOLDOWN_DOUBLINGS)
            self.probing = False
        return self.state
