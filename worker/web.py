"""The HTTP face: inbound provider webhooks, health, readiness and metrics.

`POST /webhooks/{connection_id}` verifies the delivery with the connection's adapter, stores
the receipt (deduped by the provider's delivery id) and answers at once; a worker ingests it.

    unknown connection              404
    body over server.max_body_bytes 413
    bad or stale signature          401   nothing stored
    body not the documented shape   400   says why
    a delivery id seen before       200   {"status": "duplicate"}
    an event type we do not handle  202   recorded as ignored
    a change notice without content 202   recorded, and a poll of the connection is queued
    accepted                        202
"""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from bookingsync.adapters.base import Capability, WebhookDelivery
from bookingsync.models.errors import WebhookError, WebhookTooLarge
from bookingsync.models.tables import ReceiptRow
from bookingsync.worker import metrics, probes
from bookingsync.worker.api import mount as mount_api
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)


def _store_receipt(rt: Runtime, connection: str, delivery: WebhookDelivery, body: bytes) -> tuple[str, int | None]:
    """Store the receipt; `accepted` (records to ingest), `notified` (a change without its
    content: poll), `ignored` (an event type we do not handle) or `duplicate`."""
    now = rt.clock.now()
    if delivery.handled and not delivery.records:
        row = ReceiptRow(connection=connection, delivery_id=delivery.delivery_id, event_type=delivery.event_type,
                         handled=True, body=body.decode("utf-8", "replace"), records=[], status="done", due_at=now,
                         received_at=now, processed_at=now)
        try:
            with transaction(rt.engine) as session:
                session.add(row)
            return "notified", None
        except IntegrityError:
            return "duplicate", None
    handled = delivery.handled and bool(delivery.records)
    row = ReceiptRow(connection=connection, delivery_id=delivery.delivery_id, event_type=delivery.event_type,
                     handled=handled, body=body.decode("utf-8", "replace"),
                     records=[{"payload": r.payload, "external_id": r.external_id, "scope": r.scope}
                              for r in delivery.records],
                     status="leased" if handled else "ignored", due_at=now, received_at=now,
                     lease_until=now + timedelta(seconds=rt.config.scheduler.lease_seconds) if handled else None,
                     attempts=1 if handled else 0)
    try:
        with transaction(rt.engine) as session:
            session.add(row)
            session.flush()
            return ("accepted" if handled else "ignored"), row.id
    except IntegrityError:
        return "duplicate", None


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
    received = metrics.WEBHOOKS

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
        outcome, receipt_id = await run_in_threadpool(_store_receipt, rt, connection_id, delivery, body)
        received.labels(connection_id, outcome).inc()
        if outcome == "notified" and rt.actors is not None:
            # The provider said what changed but not how (HubSpot sends ids): read it now rather than
            # at the next tick; the periodic poll remains the durable path if this message is lost.
            try:
                rt.actors.poll.send(connection_id)
            except Exception:
                log.exception("could not enqueue a poll of %s after its webhook", connection_id)
        if outcome == "accepted" and rt.actors is not None and receipt_id is not None:
            try:
                rt.actors.ingest.send(receipt_id)
            except Exception:  # the relay re-sends it when the lease runs out
                log.exception("could not enqueue receipt %s; the relay will pick it up", receipt_id)
        status = 200 if outcome == "duplicate" else 202
        return JSONResponse({"status": outcome, "delivery_id": delivery.delivery_id}, status_code=status)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready when the database and the broker answer; 503 names the one that does not."""
        checks = probes.readiness(rt.engine, rt.config.broker.url)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.exposition(rt.engine, rt.clock), media_type=probes.PROMETHEUS_TEXT)

    mount_api(app, rt)  # /v1, /docs and the status page at / (worker/api/)
    return app
