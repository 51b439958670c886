"""While the broker is backed up the relay sends no lapsed lease again (its first message is most
likely still waiting), so a backlog waits in the database, not as ever more copies of the same ids
in the broker; new work still goes out, each row once.

Found by bench/soak.py: with `run` behind (a loaded machine), every lease period the relay sent
the lapsed rows again beside their first, still unread messages; the in-process queue, the RSS
and the work per tick grew without end (events leased 29 times over, deliveries stalled)."""

from __future__ import annotations


import uuid

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine

from bookingsync.worker import broker as brokers
from bookingsync.worker.actors import QUEUE, declare, poll_queue
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.scheduler import MAX_BATCHES_PER_TICK, MAX_WAITING_MESSAGES, Scheduler
from tests.conftest import REDIS_URL
from tests.store.test_store_and_relay import apply, record


def test_no_worker_consuming_the_queue_stays_bounded_while_leases_lapse(
    engine: Engine, clock: ManualClock
) -> None:
    for i in range(40):
        apply(engine, clock, record(clock, f"m{i}"))  # 40 booked events due now
    stub = StubBroker()
    cfg = parse_config(
        {"scheduler": {"batch_size": 1, "lease_seconds": 30}, "events": {"console": False}}, environ={}
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock, actors=declare(stub))
    scheduler = Scheduler(rt)
    scheduler.lead()
    assert scheduler._acting()
    sizes = []
    for _ in range(12):  # nobody consumes: every tick the leases have run out again
        scheduler.relay()
        sizes.append(brokers.waiting_messages(stub, QUEUE))
        clock.advance(seconds=31)
    assert sizes[0] == 40  # one message per claimed batch of 1
    # Without the check: 40 more copies per lease period, 480 after 12. With it: claims stop once
    # the queue holds the limit (a tick started below it may pass it by one tick's batches).
    assert max(sizes) < MAX_WAITING_MESSAGES + MAX_BATCHES_PER_TICK
    assert sizes[-1] == sizes[-2] == sizes[-3]  # flat
    # Work that was never sent still goes out while the queue is long: once each.
    for i in range(5):
        apply(engine, clock, record(clock, f"new{i}"))
    scheduler.relay()
    clock.advance(seconds=31)
    scheduler.relay()
    assert brokers.waiting_messages(stub, QUEUE) == sizes[-1] + 5
    scheduler.stop()
    rt.close()


def test_poll_ticks_wait_while_the_polls_queue_is_backed_up(engine: Engine, clock: ManualClock) -> None:
    """A tick while the poll threads are behind would queue another read beside the waiting ones."""
    stub = StubBroker()
    rt = Runtime(config=parse_config({}, environ={}), engine=engine, clock=clock, actors=declare(stub))
    scheduler = Scheduler(rt)
    scheduler.lead()
    assert scheduler._acting()
    scheduler.poll("leezy-main")
    assert brokers.waiting_messages(stub, poll_queue()) == 1
    for _ in range(MAX_WAITING_MESSAGES):
        rt.actors.poll.send("leezy-main")
    scheduler.poll("leezy-main")
    assert brokers.waiting_messages(stub, poll_queue()) == MAX_WAITING_MESSAGES + 1
    scheduler.stop()
    rt.close()


def test_waiting_messages_reads_the_in_process_queue_and_its_delay_queue() -> None:
    stub = StubBroker()
    actors = declare(stub)
    actors.publish.send(["evt_a"])
    actors.publish.send_with_options(args=(["evt_b"],), delay=60_000)
    assert brokers.waiting_messages(stub, QUEUE) == 2
    assert brokers.waiting_messages(stub, "elsewhere") == 0


@pytest.mark.redis
def test_waiting_messages_reads_the_redis_list_of_the_queue() -> None:
    redis_broker = RedisBroker(url=REDIS_URL)
    queue = f"soak-{uuid.uuid4().hex[:8]}"  # this test's own keys in the shared database
    try:
        redis_broker.declare_queue(queue)
        for _ in range(3):
            redis_broker.enqueue(
                dramatiq.Message(queue_name=queue, actor_name="x", args=(), kwargs={}, options={})
            )
        assert brokers.waiting_messages(redis_broker, queue) == 3
    finally:
        redis_broker.client.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")
        redis_broker.close()


def test_the_pipeline_consumers_look_at_an_idle_queue_sooner_than_the_polls_and_take_a_message_per_thread() -> (
    None
):
    """An idle Redis consumer backs off up to its worker's timeout before it looks again: a burst's
    first messages waited that long, and a worker still backing off left them to the other one
    (issue 6). The pipeline's consumers look again within PIPELINE_IDLE_POLL_MS."""
    stub = StubBroker()
    declare(stub)
    workers = brokers.start_workers(stub, threads=3, poll_threads=1)
    try:
        # As many messages taken as threads to run them (dramatiq takes twice as many): a burst's
        # messages are shared among the workers rather than prefetched by the first to look.
        assert workers.pipeline.consumers[QUEUE].consumer.prefetch == 3
        pipeline = {name: t.consumer.timeout for name, t in workers.pipeline.consumers.items()}
        polls = {name: t.consumer.timeout for name, t in workers.polls.consumers.items()}
        assert set(pipeline) == {QUEUE, f"{QUEUE}.DQ"}
        assert set(pipeline.values()) == {brokers.PIPELINE_IDLE_POLL_MS}
        assert set(polls.values()) == {brokers.POLLS_IDLE_POLL_MS}
        assert brokers.PIPELINE_IDLE_POLL_MS < brokers.POLLS_IDLE_POLL_MS
    finally:
        workers.stop()
