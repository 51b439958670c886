"""The HTTP face: inbound provider webhooks, health, readiness and metrics.

`POST /webhooks/{connection_id}` verifies the delivery with the connection's adapter, stores
the receipt (deduped by the provider's delivery id) and answers once it is committed; a worker
ingests it. Receipts of concurrent requests are committed together (worker/receipts.py).

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

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import func
from sqlmodel import col, select

from bookingsync.adapters.base import Capability
from bookingsync.models.errors import WebhookError, WebhookTooLarge
from bookingsync.models.tables import DeliveryRow, EventRow, ReceiptRow
from bookingsync.worker.db import ping, transaction
from bookingsync.worker.receipts import receipt
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)


def _public_url(rt: Runtime, request: Request) -> str:
    """The URL as the provider called it: behind a proxy, `server.public_url` replaces scheme and host."""
    url = str(request.url)
    if rt.config.server.public_url:
        base = rt.config.server.public_url.rstrip("/")
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return url


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebhookTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(title="bookingsync", version="0.1.0", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    received = Counter("bookingsync_webhooks_total", "Inbound webhook deliveries by outcome",
                       ["connection", "outcome"], registry=registry)
    backlog = Gauge("bookingsync_outbox_backlog", "Work rows waiting, by table and status", ["table", "status"],
                    registry=registry)

    @app.post("/webhooks/{connection_id}")
    async def receive(connection_id: str, request: Request) -> JSONResponse:
        conn = rt.config.connection(connection_id)
        if conn is None or not conn.enabled:
            received.labels("unknown", "not_found").inc()
            return JSONResponse({"error": f"no connection named {connection_id!r} is configured"}, status_code=404)
        adapter = rt.adapter(connection_id)
        if Capability.RECEIVE_WEBHOOKS not in adapter.capabilities:
            return JSONResponse({"error": f"connection {connection_id!r} ({conn.provider}) does not receive webhooks"},
                                status_code=404)
        try:
            body = await _read_body(request, rt.config.server.max_body_bytes)
            delivery = adapter.parse_webhook(dict(request.headers), body, rt.clock.now(), method=request.method,
                                             url=_public_url(rt, request))
        except WebhookError as exc:
            received.labels(connection_id, str(exc.status)).inc()
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        item = receipt(connection_id, delivery, body, rt.clock.now(), rt.config.scheduler.lease_seconds)
        try:
            outcome, _ = await asyncio.wrap_future(rt.receipts.submit(item))
        except Exception:
            log.exception("could not store a delivery from %s", connection_id)
            received.labels(connection_id, "unavailable").inc()
            return JSONResponse({"error": "the delivery could not be stored; send it again"}, status_code=503)
        received.labels(connection_id, outcome).inc()
        status = 200 if outcome == "duplicate" else 202
        return JSONResponse({"status": outcome, "delivery_id": delivery.delivery_id}, status_code=status)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if ping(rt.engine):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "database unreachable"}, status_code=503)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        with transaction(rt.engine) as session:
            for table, model in (("events", EventRow), ("deliveries", DeliveryRow), ("receipts", ReceiptRow)):
                rows: Any = session.exec(select(model.status, func.count()).group_by(col(model.status)))
                for status, count in rows:
                    backlog.labels(table, status).set(count)
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    return app
