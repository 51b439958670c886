"""Control API of the Leezy simulator, for tests and demos that run it as a separate process.

JSON in and out, no auth, under ``/_sandbox/``; never recorded in the request log. Times are
ISO 8601 (``Z`` or an offset; none means UTC). Meetings come back as the list API's resource.

==========================================  =====================================================
``GET    /_sandbox/meetings``               ``{"meetings": [resource, ...]}`` in list-API order
``POST   /_sandbox/meetings``               body ``{"title", "start", "end", "timezone",
                                            "attendee_email", "attendee_name"?, "phone"?,
                                            "status"?, "chatbot_id"?, "description"?,
                                            "updated_at"?}`` → 201 ``{"id", "meeting"}``
``POST   /_sandbox/meetings/bulk``          ``{"meetings": [<body of POST /meetings>, ...]}`` →
                                            201 ``{"meetings": [{"id", "meeting"}, ...]}``
``POST   /_sandbox/meetings/{id}/reschedule`` ``{"start", "end", "updated_at"?}`` → ``{"meeting"}``
``POST   /_sandbox/meetings/{id}/cancel``   ``{"reason"?, "updated_at"?}`` → ``{"meeting"}``
``POST   /_sandbox/meetings/{id}/complete`` ``{"updated_at"?}`` → ``{"meeting"}``
``PATCH  /_sandbox/meetings/{id}``          ``{<stored field>: value, ..., "updated_at"?}`` →
                                            ``{"meeting"}`` (fields: `leezy.UPDATABLE_FIELDS`)
``GET    /_sandbox/faults``                 ``{"faults": [...]}`` still queued
``POST   /_sandbox/faults``                 ``{"kind", "path"?, "method"?, "times"?,
                                            "retry_after"?, "seconds"?, "variant"?, "offset"?,
                                            "action"?}`` → 201 ``{"faults": [...]}``; a
                                            ``mutate`` fault's ``action`` is ``{"op": "update" |
                                            "reschedule" | "cancel" | "complete", "id",
                                            "fields"? | "start"?, "end"? | "reason"?}``
``DELETE /_sandbox/faults``                 204, queue emptied
``GET    /_sandbox/requests``               ``{"requests": [{"method", "path", "query",
                                            "headers", "status", "received_at"}]}``
``DELETE /_sandbox/requests``               204, log emptied
``POST   /_sandbox/webhooks``               ``{"target_url", "event_types", "filters"?,
                                            "secret"?}`` → 201 ``{"data": {..., "secret"}}``
``GET    /_sandbox/deliveries``             ``?wait=true`` first waits for queued deliveries →
                                            ``{"deliveries": [{"delivery_id", "subscription_id",
                                            "event_id", "event_type", "target_url", "headers",
                                            "body", "status_code", "response_body", "error",
                                            "succeeded"}]}``
``GET|PUT /_sandbox/settings``              ``{"signature_variant": "production" | "staging",
                                            "next_webhook_secret", "timestamp_offset_seconds",
                                            "clock_offset_seconds" (Leezy's clock, `Date`
                                            and `updated_at`, this far from real time),
                                            "rate_limit_per_minute", "retry_after_header"}``; PUT
                                            changes only the keys it names
``POST   /_sandbox/tokens``                 ``{"token", "scopes": [...]}`` → 201
==========================================  =====================================================

Unknown meeting ids answer 404 ``{"error": <sentence>}``; unusable faults or fields 400.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.clock import parse_iso
from bookingsync.sandbox.control import ControlBody, common_router, guarded, scoped_token_route
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.request_log import CONTROL_PREFIX

from .records import DEFAULT_CHATBOT_ID, MEETINGS_PATH, UPDATABLE_FIELDS
from .state import LeezyState
from .webhooks import SIGNATURE_VARIANTS

TIME_FIELDS = ("start_time", "end_time", "cancelled_at")


class BookBody(ControlBody):
    title: str
    start: datetime
    end: datetime
    timezone: str = "UTC"
    attendee_email: str
    attendee_name: str | None = None
    phone: str | None = None
    status: str = "scheduled"
    chatbot_id: str | None = None
    description: str = ""
    updated_at: datetime | None = None


class BulkBookBody(ControlBody):
    meetings: list[BookBody]


class RescheduleBody(ControlBody):
    start: datetime
    end: datetime
    updated_at: datetime | None = None


class CancelBody(ControlBody):
    reason: str | None = None
    updated_at: datetime | None = None


class StampBody(ControlBody):
    updated_at: datetime | None = None


class WebhookBody(ControlBody):
    target_url: str
    event_types: list[str]
    filters: dict[str, Any] = {}
    secret: str | None = None


class SettingsBody(ControlBody):
    signature_variant: str | None = None
    next_webhook_secret: str | None = None
    timestamp_offset_seconds: int | None = None
    clock_offset_seconds: float | None = None
    rate_limit_per_minute: int | None = None
    retry_after_header: bool | None = None


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: parse_iso(v) if k in TIME_FIELDS and isinstance(v, str) else v for k, v in raw.items()}


def _mutation(state: LeezyState, action: dict[str, Any]) -> tuple[Callable[[], None], str]:
    op, meeting_id = action.get("op"), action.get("id")
    if not isinstance(meeting_id, str):
        raise SandboxError("A mutate action needs the id of the meeting to change.")
    state.get(meeting_id)  # refuse an unknown id now rather than mid-listing
    if op == "update":
        fields = _fields(action.get("fields") or {})
        return (lambda: state.update(meeting_id, **fields)), f"update {meeting_id} {fields}"
    if op == "reschedule":
        start, end = parse_iso(action["start"]), parse_iso(action["end"])
        return (lambda: state.reschedule(meeting_id, start, end)), f"reschedule {meeting_id}"
    if op == "cancel":
        reason = action.get("reason")
        return (lambda: state.cancel(meeting_id, reason)), f"cancel {meeting_id}"
    if op == "complete":
        return (lambda: state.complete(meeting_id)), f"complete {meeting_id}"
    raise SandboxError(f"Unknown mutate op {op!r}; use update, reschedule, cancel or complete.")


def control_router(state: LeezyState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX)
    router.include_router(
        common_router(
            state.faults, state.requests, lambda action: _mutation(state, action), listing_path=MEETINGS_PATH
        )
    )

    def settings() -> dict[str, Any]:
        return {
            "signature_variant": state.signature_variant,
            "next_webhook_secret": state.next_webhook_secret,
            "timestamp_offset_seconds": state.timestamp_offset_seconds,
            "clock_offset_seconds": state.clock_offset_seconds,
            "rate_limit_per_minute": state.rate_limit_per_minute,
            "retry_after_header": state.retry_after_header,
        }

    def meeting_response(meeting_id: str, change: Callable[[], Any]) -> Response:
        refused = guarded(change)
        if refused is not None:
            return refused
        return JSONResponse({"meeting": state.get(meeting_id).resource()})

    @router.get("/meetings")
    def list_meetings() -> dict[str, Any]:
        return {"meetings": [m.resource() for m in state.meetings()]}

    @router.post("/meetings", status_code=201)
    def book(body: BookBody) -> dict[str, Any]:
        meeting_id = state.book(
            body.title,
            body.start,
            body.end,
            body.timezone,
            body.attendee_email,
            attendee_name=body.attendee_name,
            phone=body.phone,
            status=body.status,
            chatbot_id=body.chatbot_id or DEFAULT_CHATBOT_ID,
            updated_at=body.updated_at,
            description=body.description,
        )
        return {"id": meeting_id, "meeting": state.get(meeting_id).resource()}

    @router.post("/meetings/bulk", status_code=201)
    def book_many(body: BulkBookBody) -> dict[str, Any]:
        return {"meetings": [book(item) for item in body.meetings]}

    @router.post("/meetings/{meeting_id}/reschedule")
    def reschedule(meeting_id: str, body: RescheduleBody) -> Response:
        return meeting_response(
            meeting_id, lambda: state.reschedule(meeting_id, body.start, body.end, body.updated_at)
        )

    @router.post("/meetings/{meeting_id}/cancel")
    def cancel(meeting_id: str, body: CancelBody) -> Response:
        return meeting_response(meeting_id, lambda: state.cancel(meeting_id, body.reason, body.updated_at))

    @router.post("/meetings/{meeting_id}/complete")
    def complete(meeting_id: str, body: StampBody) -> Response:
        return meeting_response(meeting_id, lambda: state.complete(meeting_id, body.updated_at))

    @router.patch("/meetings/{meeting_id}")
    def update(meeting_id: str, body: dict[str, Any]) -> Response:
        stamp = body.pop("updated_at", None)
        unknown = set(body) - UPDATABLE_FIELDS
        if unknown:
            return JSONResponse(
                {"error": f"Unknown field(s) {sorted(unknown)}; updatable: {sorted(UPDATABLE_FIELDS)}."}, 400
            )
        return meeting_response(
            meeting_id,
            lambda: state.update(meeting_id, updated_at=parse_iso(stamp) if stamp else None, **_fields(body)),
        )

    @router.post("/webhooks", status_code=201)
    def subscribe(body: WebhookBody) -> dict[str, Any]:
        sub = state.subscribe(body.target_url, body.event_types, body.filters, body.secret)
        return {"data": sub.public(with_secret=True)}

    @router.get("/deliveries")
    def deliveries(wait: bool = False) -> dict[str, Any]:
        if wait:
            state.flush_deliveries()
        return {"deliveries": [d.public() for d in state.deliveries()]}

    @router.get("/settings")
    def get_settings() -> dict[str, Any]:
        return settings()

    @router.put("/settings")
    def put_settings(body: SettingsBody) -> Response:
        chosen = body.model_dump(include=body.model_fields_set)
        if "signature_variant" in chosen and chosen["signature_variant"] not in SIGNATURE_VARIANTS:
            return JSONResponse(
                {"error": f"signature_variant must be one of {', '.join(SIGNATURE_VARIANTS)}."}, 400
            )
        for key in ("timestamp_offset_seconds", "clock_offset_seconds"):
            if chosen.get(key, 0) is None:
                chosen[key] = 0
        if chosen.get("retry_after_header", False) is None:
            chosen["retry_after_header"] = False
        for key, value in chosen.items():
            setattr(state, key, value)
        return JSONResponse(settings())

    scoped_token_route(router, state.add_token)
    return router
