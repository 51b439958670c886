"""Group commit: many callers' writes, one transaction, one fsync.

A caller submits an item and gets a future; one writer thread takes everything waiting (up to
`max_batch` items), writes it with `write(connection, items)` in one transaction and, only once
that transaction has committed, resolves each future with its result. A caller that waits on its
future therefore never acts on (or acknowledges) anything that is not stored, yet a hundred
concurrent callers cost one commit, not a hundred.

If a batch fails, each of its items is written again on its own, so one bad item fails only its
own caller. `after` runs in the writer thread after each committed batch (sending broker
messages, say), outside the transaction and off the callers' threads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)
Item = TypeVar("Item")
DEFAULT_MAX_BATCH = 500


class Closed(RuntimeError):
    """The writer was stopped; the item was not written."""


class GroupCommit(Generic[Item]):
    def __init__(self, engine: Engine, write: Callable[[Connection, Sequence[Item]], Sequence[Any]], *,
                 name: str, max_batch: int = DEFAULT_MAX_BATCH,
                 after: Callable[[Sequence[Item], Sequence[Any]], None] | None = None) -> None:
        self.engine, self.write, self.name, self.max_batch, self.after = engine, write, name, max_batch, after
        self._queue: deque[tuple[Item, Future[Any]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"groupcommit-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            if self._closed:
                future.set_exception(Closed(f"the {self.name} writer is stopped"))
                return future
            self._queue.append((item, future))
            self._cond.notify()
        return future

    def submit_many(self, items: Sequence[Item]) -> list[Future[Any]]:
        return [self.submit(item) for item in items]

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _take(self) -> list[tuple[Item, Future[Any]]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
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
                    batch[0][1].set_exception(exc)
                    continue
                log.warning("%s: a batch of %d failed; writing its items one by one", self.name, len(batch))
                for single in batch:
                    self._write_one(single)
                continue
            self._resolve(batch, results)

    def _write_one(self, single: tuple[Item, Future[Any]]) -> None:
        item, future = single
        try:
            with self.engine.begin() as conn:
                results = self.write(conn, [item])
        except Exception as exc:
            log.exception("%s: writing an item failed", self.name)
            future.set_exception(exc)
            return
        self._resolve([single], results)

    def _resolve(self, batch: list[tuple[Item, Future[Any]]], results: Sequence[Any]) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
        if self.after is not None:
            try:
                self.after([item for item, _ in batch], results)
            except Exception:
                log.exception("%s: the after-commit step failed", self.name)

