"""The Meetergo provider surface (`create_app`): appointments, provisional bookings, meeting types
and webhooks under ``/v4``; booking routes come from `booking`, the sandbox's own from `control`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.refusal import Refused, install_refusals, run_page_mutations
from bookingsync.sandbox.request_log import install_request_log

from .booking import booking_router, parse_offset_time
from .control import control_router
from .errors import (
    _malformed,
    _optional_object,
    _visible,
    before,
    error,
    int_param,
    json_object,
    refusal_response,
)
from .records import DEFAULT_PAGE_SIZE, LIST_PATH, MAX_PAGE_SIZE, MeetergoRefusal, validation_failed
from .state import MeetergoState


def create_app(state: MeetergoState) -> FastAPI:
    app = FastAPI(title="meetergo v4 sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))
    app.include_router(booking_router(state))

    install_refusals(app)

    @app.exception_handler(MeetergoRefusal)
    async def refusal(_request: Request, exc: MeetergoRefusal) -> Response:
        return refusal_response(exc)

    @app.get(LIST_PATH)
    async def list_appointments(request: Request) -> Response:
        user_id, fault = await before(state, request, listing=True)
        page = int_param(request.query_params, "page", 0, 0)
        page_size = int_param(request.query_params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        data, total = state.list_page(user_id, page, page_size)
        run_page_mutations(state.faults, request, page)
        if fault is not None and fault.kind == "malformed":
            data.append(_malformed(state, fault.variant))
            total += 1
        return JSONResponse({"appointments": data, "total": total})

    @app.get("/v4/appointment/today")
    async def today(request: Request) -> Response:
        user_id, _ = await before(state, request)
        now = state.now()
        visible = state.visible_to(user_id)
        found = [
            state.appointment_resource(a)
            for a in state.appointments()
            if visible(a) and not a.is_cancelled and a.start.date() == now.date()
        ]
        return JSONResponse(found)

    @app.get("/v4/appointment/current")
    async def current(request: Request) -> Response:
        user_id, _ = await before(state, request)
        now = state.now()
        visible = state.visible_to(user_id)
        found = [
            state.appointment_resource(a)
            for a in state.appointments()
            if visible(a) and not a.is_cancelled and a.start <= now < a.end
        ]
        return JSONResponse(found)

    @app.get("/v4/appointment/{appointment_id}")
    async def get_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        return JSONResponse(state.appointment_resource(_visible(state, user_id, appointment_id)))

    @app.delete("/v4/appointment/{appointment_id}")
    async def delete_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await _optional_object(request)
        reason = body.get("reason", request.query_params.get("reason"))
        with state.lock:
            _visible(state, user_id, appointment_id)
            state.cancel(
                appointment_id,
                reason if isinstance(reason, str) else None,
                action_source="api",
                action_by=user_id,
            )
        return Response(status_code=204)

    @app.post("/v4/appointment/{appointment_id}/cancel")
    async def cancel_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await _optional_object(request)
        reason = body.get("reason")
        with state.lock:
            _visible(state, user_id, appointment_id)
            appt = state.cancel(
                appointment_id,
                reason if isinstance(reason, str) else None,
                action_source="api",
                action_by=user_id,
            )
        return JSONResponse(state.appointment_resource(appt), 201)

    @app.post("/v4/appointment/{appointment_id}/reschedule")
    async def reschedule_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await json_object(request)
        start = parse_offset_time(body.get("start"), "start")
        duration = body.get("duration")
        if duration is not None and (
            not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0
        ):
            raise Refused(
                error(
                    400,
                    "Validation failed",
                    [{"field": "duration", "message": "duration must be a positive number"}],
                )
            )
        with state.lock:
            _visible(state, user_id, appointment_id)
            appt = state.reschedule(
                appointment_id, start, duration=duration, check_availability=True, acting_user_id=user_id
            )
        return JSONResponse(state.appointment_resource(appt), 201)

    @app.post("/webhooks")
    async def create_webhook(request: Request) -> Response:
        await before(state, request)
        body = await json_object(request)
        endpoint, types = body.get("endpoint"), body.get("eventTypes")
        if not isinstance(endpoint, str):
            raise validation_failed("endpoint", "endpoint must be a URL address")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise validation_failed("eventTypes", "eventTypes must be an array of strings")
        description = body.get("description")
        hook = state.add_webhook(endpoint, types, description if isinstance(description, str) else None)
        return JSONResponse(hook.public(), 201)

    @app.get("/webhooks")
    async def list_webhooks(request: Request) -> Response:
        await before(state, request)
        return JSONResponse([h.public() for h in state.webhooks()])

    @app.patch("/webhooks/{webhook_id}")
    async def update_webhook(webhook_id: str, request: Request) -> Response:
        await before(state, request)
        body = await json_object(request)
        types = body.get("eventTypes")
        if types is not None and not isinstance(types, list):
            raise validation_failed("eventTypes", "eventTypes must be an array of strings")
        hook = state.update_webhook(
            webhook_id, endpoint=body.get("endpoint"), event_types=types, description=body.get("description")
        )
        return JSONResponse(hook.public())

    @app.delete("/webhooks/{webhook_id}")
    async def delete_webhook(webhook_id: str, request: Request) -> Response:
        await before(state, request)
        if not state.remove_webhook(webhook_id):
            return error(404, "Webhook not found")
        return Response(status_code=204)

    return app
