"""One lane per subscription: its own senders, queue, connection pool and circuit breaker.

A worker's dramatiq threads never wait on a subscriber. `delivery.dispatch` hands a lane the
batch of deliveries a message carried and returns; the lane's sender threads (at most
`delivery.concurrency_per_subscription`, started on demand, gone when idle) POST them through the
lane's own pooled connections and hand each outcome to a group-commit writer that stores many in one
transaction. So an endpoint that hangs for its whole timeout ties up its own lane's threads and
connections, nobody else's: the other subscriptions, publishing, ingest and polls go on.

What a lane does not take waits in the database, not in memory:

* beyond `delivery.queue_per_subscription` queued deliveries, the rest go back to pending for a
  moment (their claim's attempt given back), and the relay hands them out again;
* while the subscription's breaker is open (worker/breaker.py), everything for it goes back to
  pending, due when the breaker half-opens; then one probe decides;
* a delivery whose lease ran out while it waited is not sent (the relay may have handed it to
  another worker): it goes back to pending, unless that other claim already took it.

A delivery the relay hands out again while it still sits in the lane is not queued twice.
Limits are per worker process; N workers send at most N × the cap to one subscription.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta

import httpx

from bookingsync.worker import egress
from bookingsync.worker.breaker import Breaker
from bookingsync.worker.clock import Clock
from bookingsync.worker.config import DeliveryConfig, SubscriptionConfig
from bookingsync.worker.delivery import Leased, Outcome, attempt, deferred

log = logging.getLogger(__name__)
IDLE_SECONDS = 10.0  # a sender thread with nothing to do for this long ends
FULL_RETRY_SECONDS = 1.0  # what does not fit in a full lane is due again after this


class Lane:
    def __init__(
        self,
        subscription: SubscriptionConfig,
        cfg: DeliveryConfig,
        clock: Clock,
        record: Callable[[list[Outcome]], object],
        *,
        allow_private: bool = False,
    ) -> None:
        self.subscription, self.cfg, self.clock, self.record = subscription, cfg, clock, record
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_cooldown_seconds)
        # The same egress guard as every outbound delivery (worker/egress.py), with a pool of its own.
        self.transport = egress.delivery_transport(
            allow_private=allow_private,
            limits=httpx.Limits(
                max_connections=cfg.concurrency_per_subscription,
                max_keepalive_connections=cfg.concurrency_per_subscription,
            ),
        )
        self._order: deque[int] = deque()
        self._queued: dict[int, Leased] = {}
        self._sending: set[int] = set()
        self._threads = 0
        self._idle = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queued)

    def submit(self, items: list[Leased]) -> None:
        now = self.clock.now()
        back: list[Outcome] = []
        with self._cond:
            shut_until = self.breaker.shut_until(now)
            for item in items:
                if item.delivery_id in self._sending:
                    continue  # handed out again while its request is out: that request's outcome settles it
                if item.delivery_id in self._queued:
                    self._queued[item.delivery_id] = item  # the newer claim's lease
                elif shut_until is not None:
                    back.append(deferred(item, shut_until))
                elif self._closed or len(self._queued) >= self.cfg.queue_per_subscription:
                    back.append(deferred(item, now + timedelta(seconds=FULL_RETRY_SECONDS)))
                else:
                    self._queued[item.delivery_id] = item
                    self._order.append(item.delivery_id)
            self._start_senders()
        if back:
            self.record(back)

    def _start_senders(self) -> None:
        wanted = min(
            self.cfg.concurrency_per_subscription, self._threads + max(0, len(self._queued) - self._idle)
        )
        while self._threads < wanted:
            self._threads += 1
            threading.Thread(target=self._run, name=f"lane-{self.subscription.id}", daemon=True).start()
        self._cond.notify(len(self._queued))

    def _next(self) -> Leased | None:
        """The next delivery this thread may send, or None when the thread should end."""
        while True:
            with self._cond:
                while not self._order and not self._closed:
                    self._idle += 1
                    woke = self._cond.wait(IDLE_SECONDS)
                    self._idle -= 1
                    if not woke and not self._order:
                        self._threads -= 1
                        return None
                if self._closed:
                    self._threads -= 1
                    if self._threads == 0:
                        self.transport.close()  # the last sender out closes the pool
                    return None
                item = self._queued.pop(self._order.popleft())
                now = self.clock.now()
                if item.lease_until is not None and item.lease_until <= now:
                    back = [deferred(item, now)]
                else:
                    admission = self.breaker.admit(now)
                    if admission.send:
                        self._sending.add(item.delivery_id)
                        return item
                    # Open (or a probe is out): this one and everything queued behind it wait in the database.
                    back = [deferred(item, admission.retry_at or now)]
                    back += [deferred(self._queued.pop(i), admission.retry_at or now) for i in self._order]
                    self._order.clear()
            self.record(back)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                outcome, answer, _ = attempt(self.transport, self.subscription, item, self.cfg, self.clock)
            except Exception:  # a bug here must not kill the lane; the lease brings the delivery back
                log.exception("delivery %s to %s failed unexpectedly", item.delivery_id, self.subscription.id)
                with self._cond:
                    self._sending.discard(item.delivery_id)
                continue
            code = answer.status_code
            ok = code is not None and code != 429 and code < 500
            with self._cond:
                before = self.breaker.state
                after = self.breaker.record(ok, self.clock.now())
                self._sending.discard(item.delivery_id)
            if after is not before:
                log.warning("subscription %s: circuit breaker %s → %s", self.subscription.id, before, after)
            self.record([outcome])

    def close(self) -> list[Outcome]:
        """Stop taking work; what is still queued goes back to pending, due now."""
        now = self.clock.now()
        with self._cond:
            self._closed = True
            back = [deferred(self._queued.pop(i), now) for i in self._order]
            self._order.clear()
            self._cond.notify_all()
            if self._threads == 0:
                self.transport.close()
        return back


class Lanes:
    """The lanes of one worker process, created as subscriptions first get work."""

    def __init__(
        self,
        cfg: DeliveryConfig,
        clock: Clock,
        record: Callable[[list[Outcome]], object],
        *,
        allow_private: bool = False,
    ) -> None:
        self.cfg, self.clock, self.record, self.allow_private = cfg, clock, record, allow_private
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()

    def lane(self, subscription: SubscriptionConfig) -> Lane:
        with self._lock:
            if subscription.id not in self._lanes:
                self._lanes[subscription.id] = Lane(
                    subscription, self.cfg, self.clock, self.record, allow_private=self.allow_private
                )
            return self._lanes[subscription.id]

    def submit(self, subscription: SubscriptionConfig, items: list[Leased]) -> None:
        self.lane(subscription).submit(items)

    def close(self) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            back = lane.close()
            if back:
                self.record(back)
