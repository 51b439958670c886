"""The scheduler: poll ticks per connection, the relay tick and retention, run by one leader at a time.

Every scheduler process runs the same APScheduler jobs in memory (its job store is never
shared); a database lease decides which one acts. The others renew their claim attempt every
few seconds and take over when the leader's lease runs out. Timers are not APScheduler jobs:
they are event rows, and the relay tick publishes them when due.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from bookingsync.adapters.base import Capability
from bookingsync.worker import broker, leases, metrics, retention
from bookingsync.worker.actors import QUEUE
from bookingsync.worker.relay import Senders, relay_once
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)
LEADER_LEASE = "scheduler-leader"
MAX_BATCHES_PER_TICK = 50
# While this many messages wait in the broker the workers are behind, and a lease that runs out
# most likely belongs to a message still in the queue: the relay then sends ready rows only (each
# row once) and leaves lapsed ones in the database, instead of adding a copy of every lapsed lease
# each lease period (a backlog that grew in the broker, in `run` in memory, without end). Far
# above a healthy queue (the in-flight caps give at most 150 messages).
MAX_WAITING_MESSAGES = 200
FIRST_PRUNE_AFTER_SECONDS = 60.0  # retention's first run after start (then every retention.interval_seconds)


class Scheduler:
    def __init__(self, rt: Runtime) -> None:
        if rt.actors is None:
            raise RuntimeError("declare the actors before starting the scheduler")
        self.rt = rt
        self.actors = rt.actors
        self.leading = threading.Event()
        self._aps = BackgroundScheduler(timezone=UTC)

    def start(self) -> None:
        cfg = self.rt.config.scheduler
        self.lead()  # decide at once, so the first poll ticks below are not wasted on a follower
        now = datetime.now(UTC)
        self._aps.add_job(self.lead, "interval", seconds=max(cfg.leader_lease_seconds / 3, 0.5), id="lead",
                          next_run_time=now, max_instances=1, coalesce=True)
        self._aps.add_job(self.relay, "interval", seconds=cfg.relay_interval_seconds, id="relay",
                          max_instances=1, coalesce=True, misfire_grace_time=None)
        if self.rt.config.retention.enabled:
            # First soon after start, not one interval later: a process restarted more often than
            # the interval (a deploy a day, an hourly interval raised to a day) must still prune.
            every = self.rt.config.retention.interval_seconds
            self._aps.add_job(self.prune, "interval", seconds=every, id="prune", max_instances=1, coalesce=True,
                              misfire_grace_time=None,
                              next_run_time=now + timedelta(seconds=min(every, FIRST_PRUNE_AFTER_SECONDS)))
        for conn in self.rt.config.connections:
            if not conn.enabled:
                continue
            adapter = self.rt.adapter(conn.id)
            if adapter.capabilities & {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}:
                self._aps.add_job(self.poll, "interval", args=(conn.id,), seconds=conn.poll_interval_seconds,
                                  id=f"poll:{conn.id}", next_run_time=now, max_instances=1, coalesce=True,
                                  misfire_grace_time=None)
        self._aps.start()

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=True)
        if self.leading.is_set():
            leases.release(self.rt.engine, LEADER_LEASE, self.rt.holder)
            self.leading.clear()

    def lead(self) -> None:
        try:
            held = leases.acquire(self.rt.engine, LEADER_LEASE, self.rt.holder, self.rt.clock.now(),
                                  self.rt.config.scheduler.leader_lease_seconds)
        except Exception:
            log.exception("could not renew the scheduler lease")
            held = False
        if held and not self.leading.is_set():
            log.info("scheduler %s is now the leader", self.rt.holder)
            self.leading.set()
        elif not held and self.leading.is_set():
            log.warning("scheduler %s lost the lead", self.rt.holder)
            self.leading.clear()
        metrics.leading(self.leading.is_set())

    def relay(self) -> None:
        if not self.leading.is_set():
            return
        cfg = self.rt.config.scheduler
        backed_up = self.backed_up()
        if backed_up is None:
            return
        senders = Senders(publish=self.actors.publish.send, deliver=self.actors.deliver.send,
                          ingest=self.actors.ingest.send)
        try:
            # Keep claiming while batches come back full, so a burst of due timers drains in one tick.
            for _ in range(MAX_BATCHES_PER_TICK):
                claimed = relay_once(self.rt.engine, self.rt.clock.now(), senders, lease_seconds=cfg.lease_seconds,
                                     limit=cfg.batch_size, max_in_flight=cfg.max_in_flight,
                                     reclaim_lapsed=not backed_up)
                metrics.relayed(len(claimed.events), len(claimed.deliveries), len(claimed.receipts))
                if max(len(claimed.events), len(claimed.deliveries), len(claimed.receipts)) < cfg.batch_size:
                    break
        except Exception:
            log.exception("relay tick failed; the next tick retries")

    def prune(self) -> None:
        """Retention (worker/retention.py), by the leader only."""
        if not self.leading.is_set():
            return
        try:
            retention.prune(self.rt.engine, self.rt.config, self.rt.clock.now())
        except Exception:
            log.exception("retention failed; the next run retries")

    def backed_up(self) -> bool | None:
        """Whether MAX_WAITING_MESSAGES or more wait in the broker; None when it does not answer
        (a send would fail the same way)."""
        try:
            waiting = broker.waiting_messages(self.actors.broker, QUEUE)
        except Exception:
            log.exception("could not read the broker's queue length")
            return None
        return waiting is not None and waiting >= MAX_WAITING_MESSAGES

    def poll(self, connection_id: str) -> None:
        # A tick while the workers are behind would queue a second read of the same connection
        # beside the first, every interval: skipped; the next tick after the queue drains reads
        # everything since the saved cursor.
        if self.leading.is_set() and self.backed_up() is False:
            self.actors.poll.send(connection_id)
