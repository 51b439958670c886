"""The scheduler: poll ticks per connection, the relay tick and retention, run by one leader at a time.

Every scheduler process runs the same APScheduler jobs in memory (its job store is never
shared); the leader lock and lease (worker/leadership.py) decide which one acts. The others try
the lock every LEAD_CHECK_SECONDS and lead as soon as the leader's process or database session
is gone. Timers are not APScheduler jobs: they are event rows, and the relay tick publishes them
when due.

A new leader on the in-process broker (`memory://`, `bookingsync run`) is a restarted process:
whatever the previous one had leased went down with its broker, so it puts those rows back in
line at once instead of waiting out their leases (`relay.lapse_leases`). So does a leader taking
the lead after the database was unreachable (the workers gave up on the messages they could not
store meanwhile), and, on Redis, a watcher (worker/broker_watch.py) when the broker lost its
messages.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import OperationalError

from bookingsync.adapters.base import Capability
from bookingsync.models.tables import EventRow, ReceiptRow
from bookingsync.worker import broker, leases, metrics, retention
from bookingsync.worker.actors import QUEUE, poll_queue
from bookingsync.worker.broker_watch import BrokerWatch
from bookingsync.worker.freshness import Freshness
from bookingsync.worker.leadership import LEAD_CHECK_SECONDS, Leadership
from bookingsync.worker.relay import Senders, lapse_leases, relay_once, soonest_due
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
# Between relay ticks the relay looks this often (one cheap query) for events and deliveries that
# fell due since its last tick, and sleeps until the soonest one it knows of: a burst of timers due
# at one instant, or a replay of dead letters, goes out then, not up to a tick later (issue 6: the
# 0.5 s tick was a fifth of a 2,000-event burst). Lapsed leases and receipts wait for the tick.
RELAY_PROBE_SECONDS = 0.2


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Scheduler:
    def __init__(self, rt: Runtime) -> None:
        if rt.actors is None:
            raise RuntimeError("declare the actors before starting the scheduler")
        self.rt = rt
        self.actors = rt.actors
        self.leading = threading.Event()
        self.leadership = Leadership(
            rt.engine, LEADER_LEASE, rt.holder, rt.config.scheduler.leader_lease_seconds, rt.clock.now
        )
        self.broker_watch = BrokerWatch(rt.config.broker.url)
        self.freshness = Freshness(rt, send_poll=self.actors.poll.send)
        self._aps = BackgroundScheduler(timezone=UTC)
        self._stopping = threading.Event()
        self._relay_thread: threading.Thread | None = None

    def start(self) -> None:
        self.lead()  # decide at once, so the first poll ticks below are not wasted on a follower
        now = datetime.now(UTC)
        self._aps.add_job(
            self.lead,
            "interval",
            seconds=LEAD_CHECK_SECONDS,
            id="lead",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._relay_thread = threading.Thread(target=self._relay_loop, name="relay", daemon=True)
        self._relay_thread.start()
        if self.rt.config.retention.enabled:
            # First soon after start, not one interval later: a process restarted more often than
            # the interval (a deploy a day, an hourly interval raised to a day) must still prune.
            every = self.rt.config.retention.interval_seconds
            self._aps.add_job(
                self.prune,
                "interval",
                seconds=every,
                id="prune",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now + timedelta(seconds=min(every, FIRST_PRUNE_AFTER_SECONDS)),
            )
        if self.rt.config.drift.enabled and self.rt.config.routes:
            self._aps.add_job(
                self.repair,
                "interval",
                seconds=self.rt.config.drift.interval_seconds,
                id="drift",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        for conn in self.rt.config.connections:
            if not conn.enabled:
                continue
            adapter = self.rt.adapter(conn.id)
            if adapter.capabilities & {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}:
                self._aps.add_job(
                    self.poll,
                    "interval",
                    args=(conn.id,),
                    seconds=conn.poll_interval_seconds,
                    id=f"poll:{conn.id}",
                    next_run_time=now,
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=None,
                )
        self._aps.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._relay_thread is not None:
            self._relay_thread.join()
        if self._aps.running:
            self._aps.shutdown(wait=True)
        self.leadership.release()
        self.leading.clear()
        self.broker_watch.close()
        self.freshness.close()

    def lead(self) -> None:
        held = self.leadership.tick()
        if held and not self.leading.is_set():
            log.info("scheduler %s is now the leader", self.rt.holder)
            if self.rt.config.broker.url == "memory://":
                self._lapse("the previous process's in-process broker went down with it")
                self._release_polls()
            elif self.leadership.database_failed:
                self._lapse(
                    "the database was unreachable: work handed out before may have failed in the workers"
                )
            elif self.leadership.took_lock:
                # A leader killed between committing a claim and sending it leaves rows no message
                # carries. Publishing and ingesting twice are no-ops, so events and receipts go
                # again; deliveries (a second POST) wait for their lease instead.
                self._lapse("a new leader took over", tables=(EventRow, ReceiptRow))
            self.leadership.database_failed = self.leadership.took_lock = False
            self.leading.set()
        elif not held and self.leading.is_set():
            log.warning("scheduler %s lost the lead", self.rt.holder)
            self.leading.clear()
        metrics.leading(self.leading.is_set())

    def _acting(self) -> bool:
        """Leading, and the lease was renewed within its length (a hung renewal stops the acting too)."""
        return self.leading.is_set() and self.leadership.leading

    def _release_polls(self) -> None:
        """On the in-process broker the previous holder of a connection's poll lease was the
        previous process, now dead: its leases would hold the first polls back for a lease length."""
        try:
            leases.release_others(self.rt.engine, "poll:", self.rt.holder)
        except Exception:
            log.exception("could not release the previous process's poll leases; they run out instead")

    def _lapse(self, why: str, tables: tuple[type, ...] | None = None) -> None:
        try:
            lapsed = lapse_leases(self.rt.engine, self.rt.clock.now(), tables=tables)
        except Exception:
            log.exception("could not hand out leased work again (%s); its leases run out instead", why)
            return
        if lapsed:
            log.warning("handing out %d leased row(s) again: %s", lapsed, why)

    def relay(self) -> None:
        if not self._acting():
            return
        if (lost := self.broker_watch.lost_messages()) is not None:
            self._lapse(lost)
        cfg = self.rt.config.scheduler
        backed_up = self.backed_up()
        if backed_up is None:
            return
        senders = Senders(
            publish=self.actors.publish.send, deliver=self.actors.deliver.send, ingest=self.actors.ingest.send
        )
        try:
            # Keep claiming while batches come back full, so a burst of due timers drains in one tick.
            for _ in range(MAX_BATCHES_PER_TICK):
                claimed = relay_once(
                    self.rt.engine,
                    self.rt.clock.now(),
                    senders,
                    lease_seconds=cfg.lease_seconds,
                    limit=cfg.batch_size,
                    max_in_flight=cfg.max_in_flight,
                    freshness=self.freshness,
                    reclaim_lapsed=not backed_up,
                )
                metrics.relayed(len(claimed.events), len(claimed.deliveries), len(claimed.receipts))
                if max(len(claimed.events), len(claimed.deliveries), len(claimed.receipts)) < cfg.batch_size:
                    break
            self.freshness.prefetch(self.rt.clock.now())
        except OperationalError as exc:
            # The database is down or cut off (an outage, a failover): a state to wait out, said in
            # one line per tick rather than a traceback; leadership steps down on its own meanwhile.
            log.warning(
                "relay tick: the database did not answer (%s); the next tick retries", _first_line(exc)
            )
        except broker.BROKER_UNAVAILABLE as exc:
            # The broker went down or restarts: the claimed rows are back in line (relay_once).
            log.warning(
                "relay tick: the broker did not take the batch (%s); the next tick retries", _first_line(exc)
            )
        except Exception:
            log.exception("relay tick failed; the next tick retries")

    def _relay_loop(self) -> None:
        """A relay tick every `relay_interval_seconds`, and one as soon as work falls due between
        ticks (`until_due`)."""
        interval = self.rt.config.scheduler.relay_interval_seconds
        while not self._stopping.is_set():
            since, started = self.rt.clock.now(), time.monotonic()
            self.relay()
            while (wait := self.until_due(since, started + interval - time.monotonic())) > 0:
                if self._stopping.wait(wait):
                    return
            if started + RELAY_PROBE_SECONDS > time.monotonic() and self._stopping.wait(
                started + RELAY_PROBE_SECONDS - time.monotonic()
            ):
                return  # never two ticks within a look's length (see `until_due`)

    def until_due(self, since: datetime, left: float) -> float:
        """Seconds to sleep before the next relay tick: at most `left` (the next regular tick) and
        RELAY_PROBE_SECONDS (the next look); 0 when an event or delivery is due that fell due after
        `since`, the last tick's instant, less a look's length (work committed with a `due_at`
        taken just before that tick, as `deliveries replay` writes it, was not visible to it).

        Rows the last tick left although due (the in-flight caps, a backed-up broker) may so bring
        one more tick, a look's length after the last (`_relay_loop`), and then wait for the
        regular one."""
        if left <= 0:
            return 0.0
        wait = min(left, RELAY_PROBE_SECONDS)
        if not self._acting():
            return wait
        try:
            soonest = soonest_due(self.rt.engine, since - timedelta(seconds=RELAY_PROBE_SECONDS))
        except Exception:  # noqa: BLE001 - the database is down: the tick says so, once per tick
            return wait
        if soonest is None:
            return wait
        return max(0.0, min(wait, (soonest - self.rt.clock.now()).total_seconds()))

    def prune(self) -> None:
        """Retention (worker/retention.py), by the leader only."""
        if not self._acting():
            return
        try:
            retention.prune(self.rt.engine, self.rt.config, self.rt.clock.now())
        except Exception:
            log.exception("retention failed; the next run retries")

    def backed_up(self, queue: str = QUEUE) -> bool | None:
        """Whether MAX_WAITING_MESSAGES or more wait in `queue`; None when the broker does not answer
        (a send would fail the same way)."""
        try:
            waiting = broker.waiting_messages(self.actors.broker, queue)
        except broker.BROKER_UNAVAILABLE as exc:
            log.warning("the broker did not answer (%s); the relay waits for it", _first_line(exc))
            return None
        except Exception:
            log.exception("could not read the broker's queue length")
            return None
        return waiting is not None and waiting >= MAX_WAITING_MESSAGES

    def repair(self) -> None:
        """Issue 16, by the leader only: a batch of each route's backfill, then the drift sweep."""
        if not self._acting():
            return
        from bookingsync.worker import backfill, drift

        try:
            for target, sources in backfill.routes_by_target(self.rt).items():
                backfill.sync_target(
                    self.rt, target, sources, limit=self.rt.config.drift.batch_size, again=False
                )
            drift.sweep(self.rt)
        except Exception:
            log.exception("backfill / drift sweep failed; the next run retries")

    def poll(self, connection_id: str) -> None:
        # A tick while the workers are behind would queue a second read of the same connection
        # beside the first, every interval: skipped; the next tick after the queue drains reads
        # everything since the saved cursor.
        if self._acting() and self.backed_up(poll_queue()) is False:
            self.actors.poll.send(connection_id)
