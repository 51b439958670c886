"""Noticing that the broker lost its messages, so the leader hands leased work out again at once.

The relay leases what it sends; a message the broker loses costs that lease's length before the
work is sent again. Redis loses every queued and in-flight message when it restarts without
persistence, or when its database is flushed; a restart with persistence may lose the last ones
before the snapshot. The leader's watcher looks (at most every WATCH_SECONDS) at two things:

* Redis's `run_id` (INFO server), new with every start of the server;
* a marker key this watcher keeps in the broker's database, gone after a flush or a restart
  without persistence.

Either change means messages may be gone: the caller ends every lease (`relay.lapse_leases`) and
the next relay tick sends the work again. Work that was not lost arrives twice, which every stage
tolerates (they act only on rows still leased; publishing twice is a no-op). A broker that was
merely unreachable for a while keeps its messages: nothing is re-sent for that.

The in-process broker needs no watcher (it dies with its process, and a new leader on it lapses
everything, worker/scheduler.py); RabbitMQ keeps unacknowledged messages and re-delivers them
itself, so it is not watched either.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

log = logging.getLogger(__name__)
WATCH_SECONDS = 1.0
MARKER_KEY = "bookingsync:broker-marker"
TIMEOUT_SECONDS = 1.0  # a watcher check never holds the relay tick longer than this


class BrokerWatch:
    def __init__(self, url: str, *, interval: float = WATCH_SECONDS) -> None:
        self.url = url
        self.enabled = url.startswith(("redis://", "rediss://", "unix://"))
        self.interval = interval
        self._client: Any = None
        self._run_id: str | None = None
        self._last = float("-inf")
        self._token = uuid.uuid4().hex

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
        return self._client

    def lost_messages(self) -> str | None:
        """Why the broker may have lost messages since the last look, or None."""
        if not self.enabled or time.monotonic() - self._last < self.interval:
            return None
        self._last = time.monotonic()
        try:
            client = self._redis()
            run_id = str(client.info("server").get("run_id", ""))
            # SET NX answers True only when the marker was missing.
            marker_was_missing = bool(client.set(MARKER_KEY, self._token, nx=True))
        except Exception as exc:  # noqa: BLE001 - down or restarting: look again next time
            log.debug("broker watch: Redis did not answer (%s)", exc)
            return None
        previous, self._run_id = self._run_id, run_id
        if previous is not None and previous != run_id:
            return "Redis restarted (its run_id changed)"
        if marker_was_missing:
            return "the broker's Redis database lost its data (restarted without persistence, or flushed)"
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
