"""What each simulator was asked, so tests can assert what a client really sent.

Only provider endpoints are recorded; the control API under ``/_sandbox/`` is not, so a test
reading the log sees the client's traffic alone. The log is a ring (`sandbox/ring.py`): it keeps
the newest `REQUESTS_KEPT` requests, so a simulator that runs for days stays the same size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from fastapi import FastAPI, Request, Response

from bookingsync.sandbox.ring import REQUESTS_KEPT, Ring

# Enough to check auth, content negotiation and client identity without storing bodies.
RECORDED_HEADERS = ("authorization", "x-api-key", "accept", "content-type", "user-agent")

CONTROL_PREFIX = "/_sandbox"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    status: int
    received_at: datetime

    def public(self) -> dict[str, object]:
        data = asdict(self)
        data["query"] = [list(pair) for pair in self.query]
        data["received_at"] = self.received_at.isoformat()
        return data


class RequestLog:
    """The newest `capacity` requests, oldest first; `dropped` counts those that fell off."""

    def __init__(self, capacity: int = REQUESTS_KEPT) -> None:
        self._ring: Ring[RecordedRequest] = Ring(capacity)

    @property
    def dropped(self) -> int:
        return self._ring.dropped

    def record(self, entry: RecordedRequest) -> None:
        self._ring.append(entry)

    def entries(self) -> list[RecordedRequest]:
        return self._ring.items()

    def clear(self) -> None:
        self._ring.clear()


def install_request_log(app: FastAPI, log: RequestLog, now: Callable[[], datetime]) -> None:
    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        received_at = now()
        response = await call_next(request)
        if not request.url.path.startswith(CONTROL_PREFIX):
            log.record(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    query=list(request.query_params.multi_items()),
                    headers={h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers},
                    status=response.status_code,
                    received_at=received_at,
                )
            )
        return response
