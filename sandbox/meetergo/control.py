"""Control API of the meetergo simulator, for tests and demos that run it as a separate process.

JSON in and out, no auth, under ``/_sandbox/``; never recorded in the request log. Times are
ISO 8601 (``Z`` or an offset; none means UTC). Appointments come back as the provider's
appointment resource (``GET /v4/appointment/{id}``).

==============================================  =================================================
``GET    /_sandbox/appointments``               ``{"appointments": [...]}``, cancelled included
``POST   /_sandbox/appointments``               booked "in meetergo's UI": ``{"start",
                                                "attendee_email", "attendee_name"?,
                                                "meeting_type_id"?, "duration"? | "end"?,
                                                "host_ids"?, "phone"?, "timezone"?, "channel"?,
                                                "location"?, "title"?, "check_availability"?}``
                                                → 201 ``{"id", "appointment"}``; booking_created
``GET    /_sandbox/appointments/{id}``          ``{"appointment"}``
``POST   /_sandbox/appointments/{id}/reschedule`` ``{"start", "duration"? | "end"?, "new_id"?
                                                (default true: a successor with
                                                ``rescheduledFromId``, the original cancelled),
                                                "check_availability"?}`` → ``{"id",
                                                "appointment"}``; booking_rescheduled
``POST   /_sandbox/appointments/{id}/cancel``   ``{"reason"?, "action_source"? ("host"),
                                                "action_by"?}`` → ``{"appointment"}``;
                                                booking_cancelled (not again if already so)
``GET    /_sandbox/provisional-bookings``       ``{"provisional_bookings": [...]}``
``POST   /_sandbox/provisional-bookings/{id}/confirm`` → ``{"provisional_booking",
                                                "appointment"}``; booking_created
``POST   /_sandbox/provisional-bookings/{id}/decline`` → ``{"provisional_booking"}``
                                                (``declined_by_host``)
``POST   /_sandbox/provisional-bookings/{id}/expire``  → ``{"provisional_booking"}``
``GET    /_sandbox/meeting-types``              ``{"meeting_types": [...]}``
``POST   /_sandbox/meeting-types``              ``{"id", "name", "slug"?, "duration"?,
                                                "host_ids"?, "allowed_durations"?, "queue_id"?,
                                                "double_opt_in"?, "requires_host_confirmation"?,
                                                "channel"?, "timezone"?, "metadata"?}`` → 201
``GET    /_sandbox/users``                      ``{"users": [host + role]}``
``POST   /_sandbox/busy``                       ``{"host_id", "start", "end"}`` → 201: an event
                                                in the host's external calendar
``POST   /_sandbox/tokens``                     ``{"token": "rgo-…", "user_id"?}`` → 201
``POST   /_sandbox/api-keys``                   ``{"key"?, "expires_at"?}`` → 201 ``{"key"}``
``GET    /_sandbox/webhooks``                   ``{"webhooks": [...]}`` (provider shape)
``POST   /_sandbox/webhooks``                   ``{"endpoint", "event_types"?
                                                (booking_* by default), "description"?}`` → 201
                                                the webhook (``{"id", "endpoint", ...}``)
``DELETE /_sandbox/webhooks/{id}``              204
``POST   /_sandbox/webhooks/emit``              ``{"webhook_type", "data"}`` → 201
                                                ``{"deliveries": [...]}``: any event, e.g.
                                                ``new_employee``/``form_submission``
``GET    /_sandbox/deliveries``                 ``?wait=true`` first waits for queued deliveries
                                                → ``{"deliveries": [{"delivery_id", "webhook_id",
                                                "webhook_type", "target_url", "headers", "body",
                                                "redelivery_of", "status_code", "response_body",
                                                "error", "succeeded"}]}``
``POST   /_sandbox/deliveries/{id}/redeliver``  → 201 the new delivery (a duplicate)
``GET|PUT /_sandbox/settings``                  ``{"payload_shape": "flat" | "legacy",
                                                "duplicate_deliveries", "booking_type_style":
                                                "reference" | "guide", "reschedule_cancels_old",
                                                "hide_cancelled", "calendar_sync_lag_seconds",
                                                "reject_unknown_fields", "rate_limit_enabled",
                                                "rate_limit_per_minute", "rate_limit_burst",
                                                "retry_after_header"}``; PUT changes only the
                                                keys it names
``GET|POST|DELETE /_sandbox/faults``            as in `control`; ``mutate`` actions:
                                                ``{"op": "reschedule", "id", "start",
                                                "new_id"?}``, ``{"op": "cancel", "id",
                                                "reason"?}``; ``offset`` is the page number
``GET|DELETE /_sandbox/requests``               the request log, as in `control`
==============================================  =================================================

Unknown ids answer 404 ``{"error": <sentence>}``; refused changes 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.clock import parse_iso
from bookingsync.sandbox.control import common_router, guarded
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.request_log import CONTROL_PREFIX

from .control_bodies import (
    SETTINGS,
    ApiKeyBody,
    BookBody,
    BusyBody,
    CancelBody,
    EmitBody,
    MeetingTypeBody,
    RescheduleBody,
    SettingsBody,
    TokenBody,
    WebhookBody,
)
from .records import BOOKING_TYPE_STYLES, LIST_PATH, MeetergoMeetingType
from .state import MeetergoState
from .webhooks import PAYLOAD_SHAPES


def _mutation(state: MeetergoState, action: dict[str, Any]) -> tuple[Callable[[], None], str]:
    op, appointment_id = action.get("op"), action.get("id")
    if not isinstance(appointment_id, str):
        raise SandboxError("A mutate action needs the id of the appointment to change.")
    state.get(appointment_id)  # refuse an unknown id now rather than mid-listing
    if op == "reschedule":
        start, new_id = parse_iso(action["start"]), bool(action.get("new_id", True))

        def move() -> None:
            state.reschedule(appointment_id, start, new_id=new_id)

        return move, f"reschedule {appointment_id}"
    if op == "cancel":
        reason = action.get("reason")

        def cancel() -> None:
            state.cancel(appointment_id, reason)

        return cancel, f"cancel {appointment_id}"
    raise SandboxError(f"Unknown mutate op {op!r}; use reschedule or cancel.")


def control_router(state: MeetergoState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX)
    router.include_router(
        common_router(
            state.faults, state.requests, lambda action: _mutation(state, action), listing_path=LIST_PATH
        )
    )

    def settings() -> dict[str, Any]:
        return {name: getattr(state, name) for name in SETTINGS}

    def appointment(appointment_id: str) -> dict[str, Any]:
        return state.appointment_resource(state.get(appointment_id))

    def run(
        change: Callable[[], Any], answer: Callable[[Any], dict[str, Any]], status: int = 200
    ) -> Response:
        done: list[Any] = []
        refused = guarded(lambda: done.append(change()))
        return refused or JSONResponse(answer(done[0]), status)

    @router.get("/appointments")
    def list_appointments() -> dict[str, Any]:
        return {"appointments": [state.appointment_resource(a) for a in state.appointments()]}

    @router.post("/appointments", status_code=201)
    def create(body: BookBody) -> Response:
        return run(
            lambda: state.create_appointment(
                body.start,
                body.attendee_email,
                meeting_type_id=body.meeting_type_id,
                attendee_name=body.attendee_name,
                duration=body.duration,
                end=body.end,
                host_ids=body.host_ids,
                phone=body.phone,
                timezone=body.timezone,
                channel=body.channel,
                location=body.location,
                title=body.title,
                check_availability=body.check_availability,
            ),
            lambda appt: {"id": appt.id, "appointment": appointment(appt.id)},
            201,
        )

    @router.get("/appointments/{appointment_id}")
    def get_appointment(appointment_id: str) -> Response:
        return run(lambda: state.get(appointment_id), lambda appt: {"appointment": appointment(appt.id)})

    @router.post("/appointments/{appointment_id}/reschedule")
    def reschedule(appointment_id: str, body: RescheduleBody) -> Response:
        return run(
            lambda: state.reschedule(
                appointment_id,
                body.start,
                duration=body.duration,
                end=body.end,
                new_id=body.new_id,
                check_availability=body.check_availability,
            ),
            lambda appt: {"id": appt.id, "appointment": appointment(appt.id)},
        )

    @router.post("/appointments/{appointment_id}/cancel")
    def cancel(appointment_id: str, body: CancelBody | None = None) -> Response:
        body = body or CancelBody()
        return run(
            lambda: state.cancel(
                appointment_id, body.reason, action_source=body.action_source, action_by=body.action_by
            ),
            lambda appt: {"appointment": appointment(appt.id)},
        )

    @router.get("/provisional-bookings")
    def list_provisional() -> dict[str, Any]:
        return {"provisional_bookings": [state.provisional_resource(p) for p in state.provisional_bookings()]}

    @router.post("/provisional-bookings/{provisional_id}/confirm")
    def confirm(provisional_id: str) -> Response:
        return run(
            lambda: state.confirm_provisional(provisional_id),
            lambda appt: {
                "provisional_booking": state.provisional_resource(state.provisional(provisional_id)),
                "appointment": appointment(appt.id),
            },
        )

    @router.post("/provisional-bookings/{provisional_id}/decline")
    def decline(provisional_id: str) -> Response:
        return run(
            lambda: state.decline_provisional(provisional_id),
            lambda prov: {"provisional_booking": state.provisional_resource(prov)},
        )

    @router.post("/provisional-bookings/{provisional_id}/expire")
    def expire(provisional_id: str) -> Response:
        return run(
            lambda: state.expire_provisional(provisional_id),
            lambda prov: {"provisional_booking": state.provisional_resource(prov)},
        )

    @router.get("/meeting-types")
    def list_meeting_types() -> dict[str, Any]:
        return {"meeting_types": [m.public() for m in state.meeting_types()]}

    @router.post("/meeting-types", status_code=201)
    def add_meeting_type(body: MeetingTypeBody) -> dict[str, Any]:
        mt = MeetergoMeetingType(
            id=body.id,
            slug=body.slug or body.id,
            name=body.name,
            duration=body.duration,
            host_ids=tuple(body.host_ids),
            allowed_durations=tuple(body.allowed_durations),
            queue_id=body.queue_id,
            double_opt_in=body.double_opt_in,
            requires_host_confirmation=body.requires_host_confirmation,
            channel=body.channel,
            timezone=body.timezone,
            metadata=dict(body.metadata),
        )
        state.add_meeting_type(mt)
        return mt.public()

    @router.get("/users")
    def list_users() -> dict[str, Any]:
        return {"users": [u.host() | {"role": u.role, "timezone": u.timezone} for u in state.users()]}

    @router.post("/busy", status_code=201)
    def busy(body: BusyBody) -> dict[str, Any]:
        block = state.block(body.host_id, body.start, body.end)
        return {"host_id": block.host_id, "start": block.start.isoformat(), "end": block.end.isoformat()}

    @router.post("/tokens", status_code=201)
    def add_token(body: TokenBody) -> Response:
        return run(
            lambda: state.add_personal_token(body.token, body.user_id),
            lambda _: {"token": body.token, "user_id": body.user_id},
            201,
        )

    @router.post("/api-keys", status_code=201)
    def add_api_key(body: ApiKeyBody) -> Response:
        return run(lambda: state.add_platform_key(body.key, body.expires_at), lambda key: {"key": key}, 201)

    @router.get("/webhooks")
    def list_webhooks() -> dict[str, Any]:
        return {"webhooks": [h.public() for h in state.webhooks()]}

    @router.post("/webhooks", status_code=201)
    def add_webhook(body: WebhookBody) -> Response:
        return run(
            lambda: state.add_webhook(body.endpoint, body.event_types, body.description),
            lambda hook: hook.public(),
            201,
        )

    @router.post("/webhooks/emit", status_code=201)
    def emit(body: EmitBody) -> Response:
        return run(
            lambda: state.emit(body.webhook_type, body.data),
            lambda attempts: {"deliveries": [a.public() for a in attempts]},
            201,
        )

    @router.delete("/webhooks/{webhook_id}")
    def remove_webhook(webhook_id: str) -> Response:
        if not state.remove_webhook(webhook_id):
            return JSONResponse({"error": f"No webhook {webhook_id!r}."}, 404)
        return Response(status_code=204)

    @router.get("/deliveries")
    def deliveries(request: Request) -> dict[str, Any]:
        if (request.query_params.get("wait") or "").lower() == "true":
            state.flush_deliveries(timeout=10)
        return {"deliveries": [a.public() for a in state.deliveries()]}

    @router.post("/deliveries/{delivery_id}/redeliver", status_code=201)
    def redeliver(delivery_id: str) -> Response:
        return run(lambda: state.redeliver(delivery_id), lambda a: a.public(), 201)

    @router.get("/settings")
    def get_settings() -> dict[str, Any]:
        return settings()

    @router.put("/settings")
    def put_settings(body: SettingsBody) -> Response:
        chosen = {k: v for k, v in body.model_dump(include=body.model_fields_set).items() if v is not None}
        if chosen.get("payload_shape", PAYLOAD_SHAPES[0]) not in PAYLOAD_SHAPES:
            return JSONResponse({"error": f"payload_shape must be one of {PAYLOAD_SHAPES}."}, 400)
        if chosen.get("booking_type_style", "reference") not in BOOKING_TYPE_STYLES:
            return JSONResponse(
                {"error": f"booking_type_style must be one of {tuple(BOOKING_TYPE_STYLES)}."}, 400
            )
        with state.lock:
            for key, value in chosen.items():
                setattr(state, key, value)
        return JSONResponse(settings())

    return router
