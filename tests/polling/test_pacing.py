"""The shared pacer: a GCRA per provider account, across threads (LocalPacer) and processes (Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from bookingsync.adapters import pacing
from bookingsync.adapters.pacing import LocalPacer
from bookingsync.worker.pacing_redis import RedisPacer

REDIS_URL = os.environ.get("BOOKINGSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_by_the_interval_and_a_far_slot_is_refused_not_claimed():
    clock = Clock()
    pacer = LocalPacer(0.5, clock=clock)
    waits = [pacer.reserve(max_wait=10).wait for _ in range(4)]
    assert waits == [0.0, 0.5, 1.0, 1.5]
    refused = pacer.reserve(max_wait=1.0)
    assert not refused.claimed and refused.wait == 2.0
    clock.now += 2.0  # the refused call claimed nothing: the next slot is still 102.0
    assert pacer.reserve(max_wait=0).wait == 0.0


def test_a_deferral_pushes_every_callers_next_slot_back():
    clock = Clock()
    pacer = LocalPacer(0.1, clock=clock)
    pacer.reserve(max_wait=0)
    pacer.defer(120.0)  # a 429 with Retry-After: 120
    assert pacer.reserve(max_wait=60).wait == pytest.approx(120.0)


def test_threads_of_one_process_share_the_slots():
    pacer = LocalPacer(0.01)
    sent: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            slot = pacer.reserve(max_wait=10)
            time.sleep(slot.wait)
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent.sort()
    assert len(sent) == 60
    # 60 slots 10 ms apart take at least 590 ms whatever the threads do.
    assert sent[-1] - sent[0] >= 0.59 - 0.02


def test_the_registry_hands_every_client_of_an_account_the_same_pacer():
    key = pacing.account_key("leezy", "https://app.leezy.ai", {"Authorization": "Bearer x"})
    assert key == pacing.account_key("leezy", "https://app.leezy.ai/", {"authorization": "Bearer x"})
    assert key != pacing.account_key("leezy", "https://app.leezy.ai", {"Authorization": "Bearer y"})
    assert pacing.shared(key, 0.6) is pacing.shared(key, 0.6)


def _redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); under CI=true it must be running")
        pytest.skip(f"Redis is not reachable ({exc})")
    return client


CHILD = """
import sys, time
import redis
from bookingsync.worker.pacing_redis import RedisPacer
pacer = RedisPacer(redis.Redis.from_url(sys.argv[1]), sys.argv[2], 0.05)
out = []
for _ in range(15):
    slot = pacer.reserve(max_wait=30)
    time.sleep(slot.wait)
    out.append(time.time())
print(" ".join(repr(t) for t in out))
"""


@pytest.mark.redis
def test_processes_share_one_rate_through_redis():
    _redis()
    key = f"test-{uuid.uuid4().hex}"
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, REDIS_URL, key], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    sent = sorted(float(t) for child in children for t in child.communicate(timeout=60)[0].split())
    assert len(sent) == 45
    # 45 slots 50 ms apart span at least 2.2 s; three unshared pacers would have taken 0.7 s.
    assert sent[-1] - sent[0] >= 44 * 0.05 - 0.05


@pytest.mark.redis
def test_redis_pacer_defers_and_falls_back_to_the_process_when_redis_is_gone():
    client = _redis()
    pacer = RedisPacer(client, f"test-{uuid.uuid4().hex}", 0.1)
    assert pacer.reserve(max_wait=1).claimed
    pacer.defer(30)
    refused = pacer.reserve(max_wait=1)
    assert not refused.claimed and 29 < refused.wait <= 30
    dead = RedisPacer(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), "k", 0.1)
    assert dead.reserve(max_wait=1).claimed  # paced locally instead of failing the request
