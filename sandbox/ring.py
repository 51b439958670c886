"""A bounded, thread-safe log: the simulators keep their newest requests and webhook attempts only.

A simulator runs as long as the demo or a soak does; a log that kept everything would grow with
every request. Tests read what a client just did, which the newest entries always hold; the
number that fell off is counted, so a reader can tell a short log from a trimmed one.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

# Far more than any test or demo check reads back; a few MB per simulator at most.
REQUESTS_KEPT = 5000
# Webhook attempts carry their signed body (about 1-3 KB each).
ATTEMPTS_KEPT = 2000


class Ring(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a ring keeps at least one entry, not {capacity}")
        self._lock = threading.Lock()
        self._items: deque[T] = deque(maxlen=capacity)
        self.dropped = 0

    @property
    def capacity(self) -> int:
        return self._items.maxlen or 0

    def append(self, item: T) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(item)

    def items(self) -> list[T]:
        """Oldest first, as they were appended."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.dropped = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
