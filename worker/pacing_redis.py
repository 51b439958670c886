"""The provider pacers of every process of a deployment, kept in Redis (the broker's, when it is Redis).

One key per provider account holds the GCRA's next free slot (adapters/pacing.py); a Lua script
reads the Redis server's clock, decides and moves the slot in one atomic step, so any number of
threads on any number of hosts share one rate without trusting each other's clocks.

If Redis cannot be reached the pacer falls back to this process's own pacing (logged once per
outage): a request paced per process is better than a poll that fails because the limiter did.
"""

from __future__ import annotations

import logging
import threading

import redis

from bookingsync.adapters.pacing import LocalPacer, Slot

log = logging.getLogger(__name__)

KEY_PREFIX = "bookingsync:pace:"
# A slot key outlives its last use by this much, then Redis drops it (an idle account costs nothing).
IDLE_EXPIRY_MS = 60_000

# KEYS[1] the account; ARGV: interval s, max wait s, defer s (>0: push the slot back, claim nothing).
# Returns "c:<wait>" (claimed), "r:<wait>" (refused) or "d:<wait>" (deferred). Numbers go back
# as strings: Lua numbers would be truncated to integers on the way out.
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local defer = tonumber(ARGV[3])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
if defer > 0 then
  if now + defer > slot then slot = now + defer end
  redis.call('SET', KEYS[1], string.format('%.6f', slot), 'PX', math.ceil((slot - now) * 1000) + %d)
  return 'd:' .. string.format('%.6f', slot - now)
end
local wait = slot - now
if wait > max_wait then return 'r:' .. string.format('%.6f', wait) end
local after = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + %d)
return 'c:' .. string.format('%.6f', wait)
""".replace("%d", str(IDLE_EXPIRY_MS))


class RedisPacer:
    def __init__(self, client: redis.Redis, key: str, interval: float) -> None:
        self.interval = interval
        self._client = client
        self._key = KEY_PREFIX + key
        self._script = client.register_script(SCRIPT)
        self._fallback = LocalPacer(interval)
        self._down = threading.Event()

    def _call(self, max_wait: float, defer: float) -> tuple[str, float] | None:
        try:
            answer = self._script(keys=[self._key], args=[repr(self.interval), repr(max_wait), repr(defer)])
        except redis.RedisError as exc:
            if not self._down.is_set():
                log.warning("pacing through Redis failed (%s); pacing per process until it answers", exc)
                self._down.set()
            return None
        if self._down.is_set():
            log.info("pacing through Redis again")
            self._down.clear()
        kind, _, wait = (answer.decode() if isinstance(answer, bytes) else str(answer)).partition(":")
        return kind, float(wait)

    def reserve(self, max_wait: float) -> Slot:
        answer = self._call(max_wait, 0.0)
        if answer is None:
            return self._fallback.reserve(max_wait)
        kind, wait = answer
        return Slot(claimed=kind == "c", wait=wait)

    def defer(self, seconds: float) -> None:
        self._fallback.defer(seconds)
        if seconds > 0:
            self._call(0.0, seconds)


def redis_backend(url: str):
    """A `pacing.Backend` over the Redis at `url` (one client, its own small connection pool)."""
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def make(key: str, interval: float) -> RedisPacer:
        return RedisPacer(client, key, interval)

    return make
