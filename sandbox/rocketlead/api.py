"""The RocketLead Connect provider surface (`create_app`): availability, bookings, catalog and lead
routes, with and without trailing slashes; the sandbox's own routes come from `control`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.refusal import install_refusals, run_page_mutations
from bookingsync.sandbox.request_log import CONTROL_PREFIX, install_request_log

from .control import control_router
from .errors import _lookup, _malformed, _required, _time_param, _wall_pair, before, envelope, invalid
from .records import (
    AVAILABILITY_PATH,
    BOOKINGS_PATH,
    DEFAULT_RESOURCE_IDS,
    MAX_RANGE,
    MAX_STEP_MINUTES,
    MIN_STEP_MINUTES,
    BookingValidationError,
    SlotUnavailableError,
    UnknownRecordError,
    format_time,
)
from .state import RocketLeadState


def create_app(state: RocketLeadState) -> FastAPI:
    app = FastAPI(title="RocketLead Connect sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.router.redirect_slashes = False
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    install_refusals(app)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(CONTROL_PREFIX):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code)
        if exc.status_code in (404, 405):
            return envelope(404, f"Cannot {request.method} {request.url.path}")
        return envelope(exc.status_code, str(exc.detail))

    def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register `path` with and without its trailing slash (Express is not strict)."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            for variant in {path, path.rstrip("/")}:
                app.add_api_route(variant, handler, methods=[method, "HEAD"] if method == "GET" else [method])
            return handler

        return register

    def tables_by_id(table_id: str) -> dict[str, Any]:
        for table in state.tables():
            if table["id"] == table_id:
                return table
        raise UnknownRecordError("Table", table_id)

    lookups: list[tuple[str, Callable[[], list[dict[str, Any]]], Callable[[str], Any]]] = [
        ("/connect/calendar/", lambda: [c.wire() for c in state.calendars()], state.calendar),
        ("/connect/resources/", lambda: [r.wire() for r in state.resources()], state.resource),
        (
            "/connect/appointment_types/",
            lambda: [a.wire() for a in state.appointment_types()],
            state.appointment_type,
        ),
        ("/connect/tables/", state.tables, tables_by_id),
    ]
    for base, listing, single in lookups:

        def add(
            listing: Callable[[], list[dict[str, Any]]] = listing,
            single: Callable[[str], Any] = single,
            base: str = base,
        ) -> None:
            @route("GET", base)
            async def list_all(request: Request) -> Response:
                await before(state, request)
                return JSONResponse(listing())

            @route("GET", base + "{record_id}/")
            async def one(record_id: str, request: Request) -> Response:
                await before(state, request)
                return JSONResponse(_lookup(state, single, record_id))

        add()

    @route("GET", AVAILABILITY_PATH)
    async def availability(request: Request) -> Response:
        fault = await before(state, request, listing=True)
        params = request.query_params
        _required(params, ("calendarId", "appointmentTypeId", "start", "end"))
        start, end = _time_param(params["start"], "start"), _time_param(params["end"], "end")
        if end <= start:
            raise invalid("end must be after start")
        if end - start > MAX_RANGE:
            raise invalid("the range between start and end must not exceed 31 days")
        include = params.get("includeUnavailable", "true").lower()
        if include not in ("true", "false"):
            raise invalid("includeUnavailable must be a boolean")
        step = None
        if (raw := params.get("stepLength")) is not None:
            step = int(raw) if raw.isdigit() else 0
            if not MIN_STEP_MINUTES <= step <= MAX_STEP_MINUTES:
                raise invalid(
                    f"stepLength must be an integer between {MIN_STEP_MINUTES} and {MAX_STEP_MINUTES}"
                )
        try:
            with state.lock:
                slots = state.slots(
                    params["calendarId"],
                    params["appointmentTypeId"],
                    start,
                    end,
                    params.get("resourceId") or None,
                    step,
                )
                atype = state.appointment_type(params["appointmentTypeId"])
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        if include == "false" and state.include_unavailable_filters:
            slots = [s for s in slots if s.available]
        data = [s.wire(state.time_format(params["calendarId"])) for s in slots]
        run_page_mutations(state.faults, request, 0)
        if fault is not None and fault.kind == "malformed":
            data.append(
                _malformed(
                    data[0]
                    if data
                    else {
                        "resourceId": DEFAULT_RESOURCE_IDS[0],
                        "resourceName": "Broken",
                        "resourceColor": "#000000",
                        "appointmentTypeId": atype.id,
                        "startDateTime": format_time(start),
                        "endDateTime": format_time(end),
                        "maxParallelBookings": 1,
                        "currentBookings": 0,
                        "available": True,
                    },
                    fault.variant,
                )
            )
        meta = {
            "appointmentTypeName": atype.name,
            "defaultBookingLength": atype.booking_length,
            "bufferAfter": atype.buffer_after,
            "dynamicLength": atype.dynamic_length,
        }
        return JSONResponse({"data": data, "meta": meta})

    @route("POST", BOOKINGS_PATH)
    async def create_booking(request: Request) -> Response:
        await before(state, request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object")
        _required(body, ("calendarId", "startDateTime", "endDateTime", "resourceId", "appointmentTypeId"))
        for name in (
            "calendarId",
            "resourceId",
            "appointmentTypeId",
            "entryId",
            "tableEntryId",
            "scheduleTypeId",
            "scheduleTypeSlotId",
            "resourceSlotId",
            "name",
        ):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise invalid(f"{name} must be a string")
        if state.wall_times and isinstance(body["calendarId"], str):
            start, end = _wall_pair(state, body)
        else:
            start = _time_param(body["startDateTime"], "startDateTime")
            end = _time_param(body["endDateTime"], "endDateTime")
        if end <= start:
            raise invalid("endDateTime must be after startDateTime")
        entry, table_entry = body.get("entryId") or None, body.get("tableEntryId") or None
        if entry and table_entry and entry != table_entry:
            raise invalid("entryId and tableEntryId name different table entries")
        try:
            booking = state.book_slot(
                calendar_id=body["calendarId"],
                resource_id=body["resourceId"],
                appointment_type_id=body["appointmentTypeId"],
                start=start,
                end=end,
                name=body.get("name"),
                table_entry_id=entry or table_entry,
                resource_slot_id=body.get("resourceSlotId") or None,
                schedule_type_id=body.get("scheduleTypeId") or None,
                schedule_type_slot_id=body.get("scheduleTypeSlotId") or None,
            )
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        except (BookingValidationError, SlotUnavailableError) as exc:
            return envelope(400, str(exc))
        with state.lock:
            return JSONResponse(state.wire(booking), 201)

    @route("DELETE", BOOKINGS_PATH + "{booking_id}/")
    async def delete_booking(booking_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            state.remove(booking_id)
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        return Response(status_code=204)

    return app
