"""Who leads the schedulers: the leader lock first, the timed lease as the fallback.

The lock (worker/leader_lock.py) is let go by the database server or the kernel the moment its
holder is gone, so a successor leads within one check (LEAD_CHECK_SECONDS) instead of waiting out
a lease. The lease row stays, for `status` and the API, and as the fallback for a holder that is
alive but cut off: its lock may outlive it for a while (the server has not noticed the session
is dead), but it stops renewing the lease, and a successor takes the lease once it runs out.

One `tick` every LEAD_CHECK_SECONDS:

1. The lock was just taken: its previous holder is gone, so the lease is taken even if it has not
   run out yet (`force`), and this process leads.
2. Lock held and leading: the lease is renewed every `lease_seconds / 3`. A renewal that finds
   another holder (one that took the lease by rule 3 while this one was cut off) steps down and
   lets go of the lock, so lock and lease end up with one process again.
3. No lock (a live leader has it, or a cut-off one still does): the lease is tried every
   `lease_seconds / 3`; it is only had once it ran out, i.e. once its holder stopped renewing.
4. The lock was lost while leading (its session failed): step down at once.

And whatever happens, a leader whose lease was not renewed for its whole length stops acting
(`leading` turns false by itself), so a process stuck in a hung database call never acts on a
lease someone else may have taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from . import leases
from .leader_lock import LeaderLock, for_engine

log = logging.getLogger(__name__)
LEAD_CHECK_SECONDS = 0.5  # how often a follower tries the lock: the failover time, give or take a tick


class Leadership:
    def __init__(
        self,
        engine: Engine,
        name: str,
        holder: str,
        lease_seconds: float,
        now: Callable[[], datetime],
        lock: LeaderLock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.name, self.holder = engine, name, holder
        self.lease_seconds = lease_seconds
        self.lock = lock if lock is not None else for_engine(engine, name)
        self._now, self._monotonic = now, monotonic
        self._leading = False
        self._valid_until = 0.0
        self._last_lease_try = float("-inf")
        # The database failed (lease or lock) since this process last led: work handed out meanwhile
        # may have failed in the workers and been given up, so a new lead hands leased work out again.
        self.database_failed = False
        # The lead came with a freshly taken lock: the previous leader is gone (or never was), and
        # what it claimed but may not have sent is handed out again.
        self.took_lock = False

    @property
    def leading(self) -> bool:
        return self._leading and self._monotonic() < self._valid_until

    def _lease(self, *, force: bool = False) -> bool | None:
        """True: the lease is ours until a lease length from now; False: someone else's; None: the
        database did not answer (nothing learned)."""
        started = self._monotonic()
        self._last_lease_try = started
        try:
            held = leases.acquire(
                self.engine, self.name, self.holder, self._now(), self.lease_seconds, force=force
            )
        except Exception as exc:  # noqa: BLE001 - a database outage is a state to wait out, not a crash
            log.warning("could not take or renew the %s lease: %s", self.name, exc)
            self.database_failed = True
            return None
        if held:
            self._valid_until = started + self.lease_seconds
        return held

    def tick(self) -> bool:
        """Decide once; True while this process leads. See the module docstring for the rules."""
        had_lock = self.lock.holding
        try:
            has_lock = self.lock.try_acquire()
        except Exception:
            log.exception("the %s lock could not be tried", self.name)
            has_lock = False
        if getattr(self.lock, "failed", False):
            self.lock.failed = False  # type: ignore[attr-defined]
            self.database_failed = True
        lease_due = self._monotonic() - self._last_lease_try >= self.lease_seconds / 3
        if has_lock and not had_lock:
            self._leading = bool(self._lease(force=True))
            self.took_lock = self._leading
            if not self._leading:
                self.lock.release()  # the database is down: keep nobody out meanwhile
        elif had_lock and not has_lock:
            if self._leading:
                log.warning("%s lost the %s lock; stepping down", self.holder, self.name)
            self._leading = False
        elif lease_due or (has_lock and not self.leading):
            held = self._lease()
            if held is not None:
                self._leading = held
            if held is False and has_lock:
                self.lock.release()  # another process holds the lease: it leads, and should get the lock
        if self._leading and not self.leading:
            self._leading = False  # the lease ran out unrenewed: act no more until it is ours again
        return self.leading

    def release(self) -> None:
        """Let go of both, so a successor leads at once (clean shutdown)."""
        if self._leading:
            try:
                leases.release(self.engine, self.name, self.holder)
            except Exception:
                log.exception("could not release the %s lease", self.name)
        self._leading = False
        self.lock.release()
