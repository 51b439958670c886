"""The HTTP face: inbound provider webhooks, health, readiness and metrics.

`POST /webhooks/{connection_id}` verifies the delivery with the connection's adapter, stores
the receipt (deduped by the provider's delivery id) and answers once it is committed; a worker
ingests it. Receipts of concurrent requests are committed together (worker/receipts.py), from
the event loop itself (PostgreSQL: worker/receipts_async.py; SQLite, when its write lock is
free: worker/receipts_sqlite.py).

    unknown connection              404
    body over server.max_body_bytes 413
    bad or stale signature          401   nothing stored
    body not the documented shape   400   says why
    a delivery id seen before       200   {"status": "duplicate"}
    an event type we do not handle  202   recorded as ignored
    a change notice without content 202   recorded, and a poll of the connection is queued
    accepted                        202
    the store cannot be written     503   nothing acknowledged; the provider retries
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from bookingsync.adapters.base import WebhookReceiver
from bookingsync.models.errors import WebhookError, WebhookTooLarge
from bookingsync.worker import metrics, probes
from bookingsync.worker.api import mount as mount_api
from bookingsync.worker.receipts import Receipt, receipt
from bookingsync.worker.receipts_async import LoopReceipts
from bookingsync.worker.runtime import Runtime

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)


def _public_url(rt: Runtime, scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The URL as the provider called it: behind a proxy, `server.public_url` replaces scheme and host."""
    query = scope.get("query_string", b"").decode("latin-1")
    tail = scope.get("root_path", "") + scope["path"] + (f"?{query}" if query else "")
    if rt.config.server.public_url:
        return rt.config.server.public_url.rstrip("/") + tail
    host = headers.get("host")
    if host is None:
        address, port = scope.get("server") or ("localhost", 80)
        host = f"{address}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}{tail}"


async def _read_body(headers: dict[str, str], receive: Any, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebhookTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("the client went away")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise WebhookTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# Built once: json.dumps with options builds an encoder per call, a tenth of the answer's CPU.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


async def _answer(send: Any, status: int, content: dict[str, Any]) -> None:
    body = _encode(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Webhooks:
    """`POST /webhooks/{connection_id}` as a plain ASGI handler.

    It is the one hot path of the web process, so it sits in front of the framework: no request
    object, dependency solving or middleware stack per delivery (that machinery cost more than
    verifying and storing). Everything else goes to the FastAPI app behind it.
    """

    PREFIX = "/webhooks/"

    def __init__(self, rt: Runtime, app: FastAPI, received: Counter) -> None:
        self.rt, self.app, self._received = rt, app, received
        # PostgreSQL receipts are written from the event loop (worker/receipts_async.py); SQLite's
        # too when the process's write lock is free, else by the runtime's writer thread, which
        # waits for it (worker/receipts_sqlite.py).
        self.submit: Callable[[Receipt], Awaitable[tuple[str, int | None]]]
        if rt.engine.dialect.name == "postgresql":
            self.submit = LoopReceipts(rt.engine, after=rt.hand_over).submit
        elif (on_loop := rt.loop_receipts) is not None:
            self.submit = on_loop.submit
        else:
            self.submit = rt.receipts.submit_async
        # Per request these were about a sixth of the handler's time under cProfile: an isinstance
        # against a runtime-checkable Protocol walks the protocol's members; labels() takes a lock.
        self._receives: dict[type, bool] = {}
        self._counters: dict[tuple[str, str], Any] = {}
        # Configured, enabled connections that receive webhooks, by id (the config does not change
        # while the process runs); an unknown id is looked up every time, never remembered.
        self._receivers: dict[str, WebhookReceiver] = {}

    def count(self, connection_id: str, outcome: str) -> None:
        key = (connection_id, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._received.labels(connection_id, outcome)
        counter.inc()

    def receives_webhooks(self, adapter: object) -> TypeGuard[WebhookReceiver]:
        kind = type(adapter)
        known = self._receives.get(kind)
        if known is None:
            known = self._receives[kind] = isinstance(adapter, WebhookReceiver)
        return known

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(self.PREFIX)
            or "/" in path[len(self.PREFIX) :]
        ):
            await self.app(scope, receive, send)
            return
        try:
            status, content = await self.receive(path[len(self.PREFIX) :], scope, receive)
        except ConnectionAbortedError:
            return
        except Exception:
            log.exception("the webhook endpoint failed")
            status, content = 500, {"error": "internal error; nothing was stored, send it again"}
        await _answer(send, status, content)

    async def receive(
        self, connection_id: str, scope: dict[str, Any], receive: Any
    ) -> tuple[int, dict[str, Any]]:
        rt = self.rt
        adapter = self._receivers.get(connection_id)
        if adapter is None:
            conn = rt.config.connection(connection_id)
            if conn is None or not conn.enabled:
                self.count("unknown", "not_found")
                return 404, {"error": f"no connection named {connection_id!r} is configured"}
            found = rt.adapter(connection_id)
            if not self.receives_webhooks(found):
                return 404, {
                    "error": f"connection {connection_id!r} ({conn.provider}) does not receive webhooks"
                }
            adapter = self._receivers[connection_id] = found
        # The first of a repeated header wins (hence reversed): a later copy cannot override it.
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])
        }
        try:
            body = await _read_body(headers, receive, rt.config.server.max_body_bytes)
            now = rt.clock.now()
            delivery = adapter.parse_webhook(
                headers, body, now, method="POST", url=_public_url(rt, scope, headers)
            )
        except WebhookError as exc:
            self.count(connection_id, str(exc.status))
            return exc.status, {"error": exc.reason}
        item = receipt(connection_id, delivery, body, now, rt.config.scheduler.lease_seconds)
        try:
            outcome, _ = await self.submit(item)
        except Exception:
            log.exception("could not store a delivery from %s", connection_id)
            self.count(connection_id, "unavailable")
            return 503, {"error": "the delivery could not be stored; send it again"}
        self.count(connection_id, outcome)
        return (200 if outcome == "duplicate" else 202), {
            "status": outcome,
            "delivery_id": delivery.delivery_id,
        }


def create_app(rt: Runtime) -> Any:
    """The ASGI app: the webhook endpoint in front of a FastAPI app for the rest."""
    app = FastAPI(title="bookingsync", version="0.1.0", docs_url=None, redoc_url=None)
    received = metrics.WEBHOOKS

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready when the database and the broker answer; 503 names the one that does not."""
        checks = probes.readiness(rt.engine, rt.config.broker.url)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.exposition(rt.engine, rt.clock), media_type=probes.PROMETHEUS_TEXT)

    mount_api(app, rt)  # /v1, /docs and the status page at / (worker/api/)
    return Webhooks(rt, app, received)
