"""Who leads: the leader lock hands over the moment its holder dies; the lease is the fallback.

On both databases: a successor leads on its next tick once the holder's lock is gone (its
process SIGKILLed, for real), without waiting for the holder's lease to run out; a holder that
is cut off (its lock still held, but not renewing) is replaced once its lease runs out, and
steps down and lets go of the lock when it comes back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from sqlalchemy import Engine

from bookingsync.worker.clock import ManualClock
from bookingsync.worker.leader_lock import for_engine
from bookingsync.worker.leadership import Leadership

LEASE = 15.0
NAME = "scheduler-leader"


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def _leader(engine: Engine, holder: str, clock: ManualClock, ticks: Ticks) -> Leadership:
    return Leadership(engine, NAME, holder, LEASE, clock.now, monotonic=ticks)


def test_successor_leads_at_once_when_the_lock_is_let_go(engine: Engine, clock: ManualClock) -> None:
    ticks = Ticks()
    first, second = _leader(engine, "a", clock, ticks), _leader(engine, "b", clock, ticks)
    try:
        assert first.tick() is True
        assert second.tick() is False
        ticks.value += 1
        clock.advance(1)
        assert second.tick() is False, "a live leader keeps the lead"
        first.lock.release()  # what the server or the kernel does when the holder dies
        ticks.value += 0.5
        clock.advance(0.5)
        assert second.tick() is True, "the lease has 14 s left, but its holder's lock is gone"
        ticks.value += LEASE / 3
        clock.advance(LEASE / 3)
        assert first.tick() is False, "the old holder finds the lease taken and steps down"
        assert not first.lock.holding
        assert second.tick() is True
    finally:
        first.release()
        second.release()


def test_cut_off_holder_is_replaced_when_its_lease_runs_out(engine: Engine, clock: ManualClock) -> None:
    ticks = Ticks()
    stuck, standby = _leader(engine, "stuck", clock, ticks), _leader(engine, "standby", clock, ticks)
    try:
        assert stuck.tick() is True
        # `stuck` stops ticking but its lock is still held (a session the server believes alive).
        for _ in range(3):  # 12 s of a 15 s lease
            ticks.value += 4
            clock.advance(4)
            assert standby.tick() is False
        ticks.value += 4
        clock.advance(4)
        assert stuck.leading is False, "a lease not renewed for its length stops the acting by itself"
        ticks.value += 1  # a follower tries the lease every third of its length
        clock.advance(1)
        assert standby.tick() is True, "the fallback: the lease ran out"
        ticks.value += LEASE / 3
        clock.advance(LEASE / 3)
        assert stuck.tick() is False
        assert not stuck.lock.holding, "the one that lost the lease lets go of the lock"
        ticks.value += 0.5
        assert standby.tick() is True
        assert standby.lock.holding, "the lock follows the lease"
    finally:
        stuck.release()
        standby.release()


HOLDER = """
import sys, time
from bookingsync.worker.db import make_engine
from bookingsync.worker.leader_lock import for_engine
url, schema = sys.argv[1], sys.argv[2]
kwargs = {"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}
lock = for_engine(make_engine(url, **kwargs), "scheduler-leader")
assert lock.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_lock_of_a_sigkilled_process_is_free_within_a_second(engine: Engine) -> None:
    schema = getattr(engine, "bookingsync_schema", "")
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, schema], stdout=subprocess.PIPE, text=True)
    mine = for_engine(engine, NAME)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert mine.try_acquire() is False, "held by the other process"
        holder.kill()
        holder.wait(10)
        killed = time.monotonic()
        while not mine.try_acquire():
            assert time.monotonic() - killed < 1.0, "the lock of a dead process must be free at once"
            time.sleep(0.02)
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
        mine.release()


def test_locks_of_other_schemas_and_files_do_not_contend(engine: Engine, tmp_path) -> None:
    from tests.conftest import drop_postgres, postgres_engine

    from bookingsync.worker.db import make_engine, upgrade

    if engine.dialect.name == "postgresql":
        other = postgres_engine()
    else:
        other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
        upgrade(other)
    mine, theirs, again = for_engine(engine, NAME), for_engine(other, NAME), for_engine(engine, NAME)
    try:
        assert mine.try_acquire() and theirs.try_acquire()
        assert again.try_acquire() is False, "the same database and schema: the same lock"
    finally:
        mine.release()
        theirs.release()
        again.release()
        if engine.dialect.name == "postgresql":
            drop_postgres(other)
        else:
            other.dispose()
