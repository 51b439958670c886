"""The LeanData provider surface (`create_app`): list, read, reschedule and cancel meetings; the
booking routes come from `booking`, the sandbox's own routes from `control`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.refusal import install_refusals, run_page_mutations
from bookingsync.sandbox.request_log import CONTROL_PREFIX, install_request_log

from .booking import booking_router
from .control import control_router
from .errors import _malformed, before, error, json_body, scheduled_time
from .state import LIST_PATH, LIST_STATUSES, LeanDataState, parse_time_param


def create_app(state: LeanDataState) -> FastAPI:
    app = FastAPI(title="LeanData BookIt sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))
    app.include_router(booking_router(state))

    @app.middleware("http")
    async def gateway_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(CONTROL_PREFIX):
            response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    install_refusals(app)

    @app.get(LIST_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await before(state, request, listing=True)
        params = request.query_params
        email = params.get("prospectEmail")
        if not email:
            return error(400, "Validation Error: Missing required parameter: prospectEmail")
        bounds: dict[str, int | None] = {}
        for name in ("start", "end"):
            raw = params.get(name)
            try:
                bounds[name] = None if raw is None else parse_time_param(raw)
            except ValueError:
                return error(
                    400,
                    f"Validation Error: Invalid {name}: expected an ISO 8601 string or Unix milliseconds.",
                )
        status = params.get("status")
        if status is not None and status not in LIST_STATUSES:
            return error(
                400, f"Validation Error: Invalid status: allowed values are {', '.join(LIST_STATUSES)}."
            )
        found = state.list_for(email, bounds["start"], bounds["end"], status)
        body = [state.wire(m) for m in found]
        run_page_mutations(state.faults, request, 0)
        if fault is not None and fault.kind == "malformed":
            body.append(_malformed(state, fault.variant))
        return JSONResponse(body)

    @app.get("/v1/meeting/{meeting_id}")
    async def get_meeting(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            return JSONResponse(state.wire(state.get(meeting_id)))
        except UnknownMeetingError:
            return error(404, "Meeting not found")

    @app.patch("/v1/meeting/{meeting_id}")
    async def reschedule(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        body = await json_body(request)
        start, end, timezone = scheduled_time(body, need_timezone=False)
        with state.lock:
            try:
                meeting = state.get(meeting_id)
            except UnknownMeetingError:
                return error(404, "Meeting not found")
            if meeting.bookit_status == "canceled":
                return error(400, "Meeting has already been canceled.")
            meeting = state.reschedule(meeting_id, start, end, timezone)
        return JSONResponse({"meetingId": meeting.id, "organizerEmail": meeting.organizer_email})

    @app.delete("/v1/meeting/{meeting_id}")
    async def cancel(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            state.cancel(meeting_id)
        except UnknownMeetingError:
            return error(404, "Meeting not found")
        return Response(status_code=200)

    return app
