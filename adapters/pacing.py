"""How fast requests to one provider account may leave: one pacer per account, shared.

A provider's limit belongs to its account (a token, an API key), not to a thread or a process,
so every `ProviderHttp` of one account asks the same `Pacer` for a slot. A pacer is a GCRA
(generic cell rate algorithm, as in rate-limiting proxies): it keeps one instant, the *next free
slot*. Claiming a slot moves it on by `interval`; a caller whose slot lies further ahead than
it may wait is refused and told how long, so it can come back then instead of sleeping.

    Pacer (protocol)        reserve(max_wait) -> Slot;  defer(seconds)  (a Retry-After)
    ├── LocalPacer          this process: a lock and a monotonic clock
    └── (worker/pacing_redis.py) RedisPacer: every process of the deployment, one Lua script

`shared(key, interval)` hands out the pacer of an account from a per-process registry. The
worker plugs a distributed backend into it at start (`use_backend`); without one (the in-process
broker, RabbitMQ) the pacing is per process. Adapters never know which.

`deferring(max_wait)` is how a poll says "do not sleep for allowance in this thread": inside it,
a request whose slot is further than `max_wait` away raises `PaceDeferred` (the read is then
rescheduled for that time), and a 429 is not retried in the thread either.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from bookingsync.models.errors import BookingSyncError

# Slots are spaced this much wider than the documented rate: a request sent a little after its
# slot (a busy thread, a slow DNS lookup) must not make a fixed one-minute window at the
# provider count one request too many.
SAFETY_MARGIN = 1.02


class PaceDeferred(BookingSyncError):
    """The account's next slot is `seconds` away, more than the caller said it would wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the provider's rate allows the next request in {seconds:.2f}s")
        self.seconds = seconds


@dataclass(frozen=True)
class Slot:
    claimed: bool
    wait: float  # seconds until the slot (claimed), or until one could be claimed (refused)


class Pacer(Protocol):
    interval: float

    def reserve(self, max_wait: float) -> Slot: ...

    def defer(self, seconds: float) -> None: ...


class LocalPacer:
    """The GCRA of one account inside one process; safe to share between threads."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = max(0.0, interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._next: float | None = None

    def reserve(self, max_wait: float) -> Slot:
        with self._lock:
            now = self._clock()
            slot = now if self._next is None else max(self._next, now)
            wait = slot - now
            if wait > max_wait:
                return Slot(claimed=False, wait=wait)
            self._next = slot + self.interval
            return Slot(claimed=True, wait=wait)

    def defer(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._next = until if self._next is None else max(self._next, until)


Backend = Callable[[str, float], Pacer]

_registry: dict[str, Pacer] = {}
_registry_lock = threading.Lock()
_backend: Backend | None = None
_context = threading.local()


def account_key(provider: str, base_url: str, headers: Mapping[str, str]) -> str:
    """One key per provider account: the host and the credential, hashed (never stored in clear)."""
    digest = hashlib.sha256(base_url.rstrip("/").encode())
    for name in sorted(headers, key=str.lower):
        if name.lower() in ("authorization", "x-api-key", "x-meetergo-api-user-id"):
            digest.update(f"\n{name.lower()}:{headers[name]}".encode())
    return f"{provider}:{digest.hexdigest()[:20]}"


def use_backend(backend: Backend | None) -> None:
    """Pace through `backend` from now on (None: per process). Pacers handed out before keep theirs."""
    global _backend
    with _registry_lock:
        _backend = backend
        _registry.clear()


def shared(key: str, interval: float) -> Pacer:
    """The pacer of account `key`, the same object for every caller of this process.

    The first caller's interval wins: two connections configured with different rates for one
    account are paced at the rate of the first one built (the account has one limit).
    """
    with _registry_lock:
        pacer = _registry.get(key)
        if pacer is None:
            interval = interval * SAFETY_MARGIN
            pacer = _backend(key, interval) if _backend is not None else LocalPacer(interval)
            _registry[key] = pacer
        return pacer


@contextlib.contextmanager
def deferring(max_wait: float) -> Iterator[None]:
    """Inside: wait at most `max_wait` in this thread for a slot, and leave 429s to the caller."""
    previous = getattr(_context, "max_wait", None)
    _context.max_wait = max_wait
    try:
        yield
    finally:
        _context.max_wait = previous


def deferring_wait() -> float | None:
    """The thread's `deferring` bound, None outside one."""
    return getattr(_context, "max_wait", None)
