"""Group commit: many callers' writes, one transaction, one fsync.

A caller submits an item and gets a future; a writer thread takes everything waiting (up to
`max_batch` items), writes it with `write(connection, items)` in one transaction and, only once
that transaction has committed, resolves each future with its result. A caller that waits on its
future therefore never acts on (or acknowledges) anything that is not stored, yet a hundred
concurrent callers cost one commit, not a hundred.

If a batch fails, each of its items is written again on its own, so one bad item fails only its
own caller. `after` runs in the writer thread after each committed batch has been answered
(sending broker messages, say), outside the transaction and off the callers' threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)
Item = TypeVar("Item")
DEFAULT_MAX_BATCH = 500


class Closed(RuntimeError):
    """The writer was stopped; the item was not written."""


class GroupCommit(Generic[Item]):
    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, Sequence[Item]], Sequence[Any]],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        after: Callable[[Sequence[Item], Sequence[Any]], None] | None = None,
        writers: int = 1,
        linger_seconds: float = 0.0,
    ) -> None:
        self.engine, self.write, self.name, self.max_batch, self.after = engine, write, name, max_batch, after
        # How long a writer waits for more items once one arrived, for a stream that nobody waits
        # on (delivery outcomes): one transaction per item costs far more CPU than the wait costs anyone.
        self.linger_seconds = linger_seconds
        self._queue: deque[tuple[Item, Waiter]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._idle = 0  # writers waiting for work
        # More than one writer lets a batch fill and insert while another waits for its commit's
        # fsync; only for a database that takes concurrent writers (not SQLite).
        self._threads = [
            threading.Thread(target=self._run, name=f"groupcommit-{name}-{i}", daemon=True)
            for i in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: Item) -> Future[Any]:
        future: Future[Any] = Future()
        self._enqueue(item, future)
        return future

    def submit_async(self, item: Item) -> asyncio.Future[Any]:
        """For a caller on an event loop: the batch is settled on that loop with one wake-up."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._enqueue(item, _LoopWaiter(loop, future))
        return future

    def _enqueue(self, item: Item, waiter: Waiter) -> None:
        with self._cond:
            if not self._closed:
                self._queue.append((item, waiter))
                if self._idle:  # a busy writer takes it with the rest when its batch is done
                    self._cond.notify()
                return
        _settle([(waiter, None, Closed(f"the {self.name} writer is stopped"))])

    def submit_many(self, items: Sequence[Item]) -> list[Future[Any]]:
        return [self.submit(item) for item in items]

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _take(self) -> list[tuple[Item, Waiter]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
            if self.linger_seconds:
                deadline = time.monotonic() + self.linger_seconds
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            items = [item for item, _ in batch]
            try:
                with self.engine.begin() as conn:
                    results = self.write(conn, items)
            except Exception as exc:
                if len(batch) == 1:
                    log.exception("%s: writing an item failed", self.name)
                    _settle([(batch[0][1], None, exc)])
                    continue
                log.warning("%s: a batch of %d failed; writing its items one by one", self.name, len(batch))
                for single in batch:
                    self._write_one(single)
                continue
            self._resolve(batch, results)

    def _write_one(self, single: tuple[Item, Waiter]) -> None:
        item, waiter = single
        try:
            with self.engine.begin() as conn:
                results = self.write(conn, [item])
        except Exception as exc:
            log.exception("%s: writing an item failed", self.name)
            _settle([(waiter, None, exc)])
            return
        self._resolve([single], results)

    def _resolve(self, batch: list[tuple[Item, Waiter]], results: Sequence[Any]) -> None:
        # Callers first: what they wait for is committed. `after` (a broker round trip, say) then
        # overlaps with their answers and with the next batch filling. Run before them, it held
        # every caller of the batch: the web process's event loop sat idle 60 % of the time.
        _settle([(waiter, result, None) for (_, waiter), result in zip(batch, results, strict=True)])
        if self.after is not None:
            try:
                self.after([item for item, _ in batch], results)
            except Exception:
                log.exception("%s: the after-commit step failed", self.name)


@dataclass(frozen=True)
class _LoopWaiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Waiter = Future[Any] | _LoopWaiter


def _settle(outcomes: list[tuple[Waiter, Any, BaseException | None]]) -> None:
    """Resolve waiters: thread futures at once, loop futures with one call per loop."""
    per_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
    ] = {}
    for waiter, result, error in outcomes:
        if isinstance(waiter, _LoopWaiter):
            per_loop.setdefault(waiter.loop, []).append((waiter.future, result, error))
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
    for loop, items in per_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle_on_loop(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():  # cancelled: the client went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
