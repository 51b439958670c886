"""The simulators' webhook senders share this: one daemon thread working off a queue.

A provider answers the request that changed something at once and delivers its webhooks a
moment later; a `BackgroundPoster` does the same, so a test or the demo never waits on the
receiver. Each simulator subclasses it with its own envelope, signing and retry habits.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import asdict, dataclass
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from bookingsync.sandbox.ring import ATTEMPTS_KEPT, Ring

Item = TypeVar("Item")
# How much of a receiver's answer the attempt log keeps.
RESPONSE_EXCERPT_CHARS = 2000


@dataclass
class PostResult:
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None


@dataclass(kw_only=True)
class Outcome:
    """What every simulator's delivery-attempt record ends with: the receiver's answer or the error.

    Keyword-only, so each provider's attempt lists its own fields first and these after.
    """

    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def settle(self, result: PostResult) -> None:
        self.status_code, self.response_body, self.error = (
            result.status_code,
            result.response_body,
            result.error,
        )

    def public(self) -> dict[str, Any]:
        return asdict(self) | {"succeeded": self.succeeded}


class BackgroundPoster(Generic[Item]):
    def __init__(self, name: str, timeout: float) -> None:
        self._name, self._timeout = name, timeout
        self._queue: queue.Queue[Item | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item was attempted; False if `timeout` ran out first."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=self._timeout + 1)

    def handle(self, client: httpx.Client, item: Item) -> None:
        raise NotImplementedError

    @staticmethod
    def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return PostResult(error=f"{type(exc).__name__}: {exc}")
        return PostResult(
            status_code=response.status_code, response_body=response.text[:RESPONSE_EXCERPT_CHARS]
        )

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (item := self._queue.get()) is not None:
                try:
                    self.handle(client, item)
                finally:
                    self._queue.task_done()
            self._queue.task_done()


Attempt = TypeVar("Attempt", bound=Outcome)


class AttemptSender(BackgroundPoster[Item], Generic[Item, Attempt]):
    """A poster that keeps each delivery attempt it makes (the newest `ATTEMPTS_KEPT`) and hands it
    to `on_result`: what every simulator's `/_sandbox/deliveries` lists."""

    def __init__(self, name: str, timeout: float, on_result: Callable[[Attempt], None] | None = None) -> None:
        super().__init__(name, timeout)
        self._attempts: Ring[Attempt] = Ring(ATTEMPTS_KEPT)
        self._on_result = on_result

    def attempts(self) -> list[Attempt]:
        return self._attempts.items()

    def attempt(
        self, client: httpx.Client, attempt: Attempt, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        """POST `body`, settle `attempt` with the answer, keep it and report it."""
        attempt.settle(self.post(client, url, body, headers))
        self._attempts.append(attempt)
        if self._on_result is not None:
            self._on_result(attempt)
        return attempt


class Deliveries:
    """What a simulator's state offers about its webhook deliveries; mixed into the states that
    send webhooks, each of which owns a `_sender`."""

    _sender: AttemptSender[Any, Any]

    def deliveries(self) -> list[Any]:
        return self._sender.attempts()

    def flush_deliveries(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery was attempted; False if `timeout` ran out first."""
        return self._sender.flush(timeout)

    def close(self) -> None:
        self._sender.close()
