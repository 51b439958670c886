"""Fault injection shared by the provider simulators.

A test queues `Fault`s; each provider request consumes at most one matching fault before it is
answered, in queue order. Kinds:

* ``"429"``       answer with the provider's rate-limit response (``retry_after`` adds a
                  ``Retry-After`` header where the provider simulator allows it).
* ``"500"``       answer with a server error.
* ``"delay"``     sleep ``seconds`` and then answer normally, to provoke client timeouts.
* ``"malformed"`` the listing carries one extra record whose fields are broken (``variant`` names
                  the breakage; each provider documents its variants). Only listings consume it.
* ``"mutate"``    not consumed before the request: after a listing with ``offset`` has been
                  computed (and before it is sent), ``action()`` runs, so a record changes while a
                  client is paging. Only listings consume it.
* ``"lost_504"``, ``"lost_drop"``, ``"slow_answer"``: not consumed before the request either; the
                  request is handled in full and then its answer is lost or late (`answer_faults`).

``path``/``method`` narrow a fault to one endpoint; left ``None`` a fault matches any provider
endpoint (``malformed`` and ``mutate``: any listing). ``times`` repeats a fault.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bookingsync.sandbox.errors import InvalidFaultError

AFTER_ANSWER_KINDS = frozenset({"lost_504", "lost_drop", "slow_answer"})
FAULT_KINDS = frozenset({"429", "500", "delay", "malformed", "mutate"}) | AFTER_ANSWER_KINDS


@dataclass
class Fault:
    kind: str
    path: str | None = None
    method: str | None = None
    times: int = 1
    retry_after: int | None = None
    seconds: float = 0.0
    variant: str | None = None
    offset: int | None = None
    action: Callable[[], None] | None = field(default=None, repr=False)
    description: str | None = None  # what an HTTP-created mutate does, for listing the queue

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise InvalidFaultError(
                f"Unknown fault kind {self.kind!r}; use one of {', '.join(sorted(FAULT_KINDS))}."
            )
        if self.times < 1:
            raise InvalidFaultError("A fault must apply at least once (times >= 1).")
        if self.kind == "mutate" and (self.offset is None or self.action is None):
            raise InvalidFaultError("A mutate fault needs an offset and an action.")

    def matches(self, method: str, path: str) -> bool:
        return (self.path is None or self.path == path) and (
            self.method is None or self.method.upper() == method.upper()
        )

    def public(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "method": self.method,
            "times": self.times,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "variant": self.variant,
            "offset": self.offset,
            "description": self.description,
        }


class FaultQueue:
    """Thread-safe: the app's event loop consumes while tests and the control API add."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take_before(self, method: str, path: str, *, listing: bool) -> Fault | None:
        """The first fault to apply to this request before answering it, consumed."""
        with self._lock:
            for fault in self._faults:
                if (
                    fault.kind in AFTER_ANSWER_KINDS
                    or fault.kind == "mutate"
                    or (fault.kind == "malformed" and not listing)
                ):
                    continue
                if fault.matches(method, path):
                    self._consume(fault)
                    return fault
        return None

    def take_after_answer(self, method: str, path: str) -> Fault | None:
        """The first answer-loss fault (`answer_faults`) matching this request, consumed."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in AFTER_ANSWER_KINDS and fault.matches(method, path):
                    self._consume(fault)
                    return fault
        return None

    def take_after_page(self, method: str, path: str, offset: int) -> list[Fault]:
        """Mutations due once the listing page at `offset` has been computed, consumed."""
        with self._lock:
            due = [
                f
                for f in self._faults
                if f.kind == "mutate" and f.offset == offset and f.matches(method, path)
            ]
            for fault in due:
                self._consume(fault)
        return due

    def _consume(self, fault: Fault) -> None:
        fault.times -= 1
        if fault.times == 0:
            self._faults.remove(fault)
