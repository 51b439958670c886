"""What a running process holds: its config, database engine, clock, broker and adapters.

Actors run in worker threads with nothing but ids in their messages; they find everything
else here. A process sets its runtime once at start (`install`).
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from sqlalchemy import Engine

from bookingsync.adapters.base import Adapter
from bookingsync.adapters.registry import build_adapter
from bookingsync.worker import egress
from bookingsync.worker.clock import Clock, SystemClock
from bookingsync.worker.config import Config
from bookingsync.worker.leases import holder_id

if TYPE_CHECKING:
    from bookingsync.worker.actors import Actors
    from bookingsync.worker.groupcommit import GroupCommit
    from bookingsync.worker.lanes import Lanes
    from bookingsync.worker.receipts import HandOver
    from bookingsync.worker.receipts_sqlite import LoopSQLiteReceipts


# Outcomes arrive one per POST and nobody waits on their commit: gathering them for this long
# writes a burst's in a few dozen transactions instead of one or two each (issue 6).
OUTCOME_LINGER_SECONDS = 0.05
DELIVERING_ROLES = ("run", "worker")  # the roles whose dramatiq workers deliver through lanes


@dataclass
class Runtime:
    config: Config
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)
    role: str = "process"
    console: Console = field(default_factory=lambda: Console(stderr=False, highlight=False))
    actors: Actors | None = None
    adapter_overrides: dict[str, Any] = field(default_factory=dict)  # tests: transports, sleep
    holder: str = ""
    _adapters: dict[str, Adapter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: httpx.BaseTransport | None = None
    _lanes: Lanes | None = None
    _outcomes: GroupCommit[Any] | None = None
    _receipts: GroupCommit[Any] | None = None
    _hand_over: HandOver | None = None
    _loop_receipts: LoopSQLiteReceipts | None = None

    def __post_init__(self) -> None:
        self.holder = self.holder or holder_id(self.role)
        # Ingest's identity rules and conflict policy read these per page, without a config in reach.
        from bookingsync.worker import conflicts, identity

        identity.configure(self.config)
        conflicts.configure(self.config, self.adapter)

    @property
    def grace(self) -> timedelta:
        """The late window (README, Events): timers fire, marked, until this long after a meeting's end."""
        events = self.config.events
        return timedelta(seconds=max(events.late_window_seconds, events.grace_seconds))

    def adapter(self, connection_id: str) -> Adapter:
        with self._lock:
            if connection_id not in self._adapters:
                conn = self.config.connection(connection_id)
                if conn is None:
                    raise KeyError(connection_id)
                hooks = dict(self.adapter_overrides)
                if not self.config.allow_private_targets:
                    # Provider calls connect only to public addresses, checked at connect time.
                    hooks.setdefault("transport", egress.guarded_transport())
                self._adapters[connection_id] = build_adapter(conn.provider, conn.id, conn.settings, **hooks)
            return self._adapters[connection_id]

    @property
    def http(self) -> httpx.BaseTransport:
        """The transport for outbound deliveries made outside a lane (`delivery.deliver`)."""
        with self._lock:
            if self._http is None:
                self._http = egress.delivery_transport(allow_private=self.config.allow_private_targets)
            return self._http

    @property
    def lanes(self) -> Lanes:
        """The per-subscription delivery lanes of this process (worker/lanes.py), whose outcomes
        a group-commit writer stores in bulk."""
        from bookingsync.worker.delivery import write_outcomes
        from bookingsync.worker.groupcommit import GroupCommit
        from bookingsync.worker.lanes import Lanes

        with self._lock:
            if self._lanes is None:
                writer: GroupCommit[Any] = GroupCommit(
                    self.engine,
                    write_outcomes,
                    name="delivery outcomes",
                    linger_seconds=OUTCOME_LINGER_SECONDS,
                )
                self._outcomes = writer
                self._lanes = Lanes(
                    self.config.delivery,
                    self.clock,
                    writer.submit_many,
                    allow_private=self.config.allow_private_targets,
                )
            return self._lanes

    @property
    def hand_over(self) -> HandOver:
        """What sends the ingest messages for committed receipts, whichever writer stored them."""
        from bookingsync.worker.receipts import HandOver

        with self._lock:
            if self._hand_over is None:
                self._hand_over = HandOver(lambda: self.actors)
            return self._hand_over

    @property
    def receipts(self) -> GroupCommit[Any]:
        """SQLite's writer of inbound webhook receipts, in groups, one at a time (worker/receipts.py).
        PostgreSQL's are written from web's event loop instead (worker/receipts_async.py)."""
        from bookingsync.worker.groupcommit import GroupCommit
        from bookingsync.worker.receipts import write_receipts

        hand_over = self.hand_over
        with self._lock:
            if self._receipts is None:
                self._receipts = GroupCommit(
                    self.engine, write_receipts, name="webhook receipts", writers=1, after=hand_over
                )
            return self._receipts

    @property
    def loop_receipts(self) -> LoopSQLiteReceipts | None:
        """SQLite's receipts written by web's event loop when the write lock is free, the thread
        writer (`receipts`) taking the batches that would wait (worker/receipts_sqlite.py); None
        where the loop cannot write (PostgreSQL has its own, an in-memory SQLite has one connection)."""
        from bookingsync.worker.receipts_sqlite import LoopSQLiteReceipts, writable_from_loop

        if not writable_from_loop(self.engine):
            return None
        thread_writer, hand_over = self.receipts, self.hand_over
        with self._lock:
            if self._loop_receipts is None:
                self._loop_receipts = LoopSQLiteReceipts(
                    self.engine, thread_writer.submit_async, after=hand_over
                )
            return self._loop_receipts

    def close(self) -> None:
        if self._loop_receipts is not None:
            self._loop_receipts.close()
        if self._receipts is not None:
            self._receipts.close()
        if self._hand_over is not None:  # after the writer, whose last batches it sends
            self._hand_over.close()
        if self._lanes is not None:
            self._lanes.close()
        if self._outcomes is not None:
            self._outcomes.close()
        for adapter in self._adapters.values():
            adapter.close()
        if self._http is not None:
            self._http.close()


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    _current = runtime
    if runtime.role in DELIVERING_ROLES:
        # Each lane's connection pool makes a TLS context (20-60 ms of CPU): at start, not in the
        # middle of a burst's first deliveries (issue 6).
        for subscription in runtime.config.subscriptions:
            runtime.lanes.lane(subscription)
    freeze_start_up()
    return runtime


def freeze_start_up() -> None:
    """Take what the process has made so far out of the cyclic collector's reach: imported modules,
    config, engine, app (100,000+ objects) live as long as the process does, and a full collection
    no longer walks them. One such pass stalled a burst's relay claim for 200-600 ms (issue 6).
    Called when the runtime is installed and again once a role has started everything."""
    gc.freeze()


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no runtime installed in this process; start it through the bookingsync CLI")
    return _current
