"""Control API of the RocketLead simulator, for tests and demos that run it as a separate process.

JSON in and out, no auth, under ``/_sandbox/``; never recorded in the request log. Times are ISO
8601 (``Z`` or an offset; none means UTC). A booking comes back as ``{"id", "source", "booking":
<the Connect API booking object>}``; ``source`` is ``connect_api`` or ``form_widget``.

==========================================  =====================================================
``GET    /_sandbox/bookings``               ``{"bookings": [...]}`` by start time (the Connect
                                            API documents no list endpoint)
``POST   /_sandbox/bookings``               a competing booking made elsewhere, no capacity
                                            check: ``{"start", "end"?, "resource_id"?,
                                            "appointment_type_id"?, "calendar_id"?, "name"?,
                                            "table_entry_id"?, "source"?}`` → 201 booking
``DELETE /_sandbox/bookings/{id}``          204: hard delete
``POST   /_sandbox/slots/fill``             ``{"start", "resource_id"?, "appointment_type_id"?}``
                                            → 201 ``{"bookings": [added, ...]}``: form-widget
                                            bookings until the slot is full
``GET|POST|DELETE /_sandbox/races``         slot races: POST ``{"start"?, "resource_id"?,
                                            "times"?}`` → 201 ``{"races": [...]}``; the next
                                            matching booking POST finds its slot filled via the
                                            form widget and answers 400 "The selected time slot
                                            is no longer available"
``GET|POST|DELETE /_sandbox/faults``        as in `control`; ``mutate`` actions (run after an
                                            availability answer is computed, ``offset`` 0):
                                            ``{"op": "fill", "start", "resource_id"?}``, ``{"op":
                                            "book", "start", "end"?, "resource_id"?}``, ``{"op":
                                            "remove", "id"}``
``GET|DELETE /_sandbox/requests``           the request log, as in `control`
``GET|PUT /_sandbox/settings``              ``{"step_minutes", "booking_length", "buffer_after",
                                            "max_parallel_bookings" (PUT: every resource),
                                            "include_unavailable_filters"}``; PUT changes only
                                            the keys it names
``PATCH  /_sandbox/resources/{id}``         ``{"max_parallel_bookings"}`` → the resource
``GET    /_sandbox/catalog``                ``{"organization_id", "calendars", "resources",
                                            "appointment_types", "tables", "leads"}``
``POST   /_sandbox/leads``                  ``{"email", "first_name"?, "last_name"?, "phone"?,
                                            "lead_state_id"?}`` → 201 the lead (its ``id`` is a
                                            ``tableEntryId``)
``POST   /_sandbox/tokens``                 ``{"scopes": [...], "token"?, "expires_at"?}`` → 201
                                            ``{"token", "scopes"}`` (generated when absent)
``GET    /_sandbox/tokens``                 ``{"tokens": [{"token", "scopes", "expires_at",
                                            "last_used_at", "revoked"}]}``
``DELETE /_sandbox/tokens/{token}``         204: revoked, answers 401 from now on
==========================================  =====================================================

Unknown ids answer 404 ``{"error": <sentence>}``; unusable input 400.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.control import ControlBody, common_router, guarded
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.request_log import CONTROL_PREFIX

from .records import (
    AVAILABILITY_PATH,
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_RESOURCE_IDS,
    LEAD_STATES,
    ORGANIZATION_ID,
    SOURCE_FORM,
    Booking,
    aware,
    format_time,
)
from .state import RocketLeadState


class CompetingBookingBody(ControlBody):
    start: datetime
    end: datetime | None = None
    resource_id: str = DEFAULT_RESOURCE_IDS[0]
    appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID
    calendar_id: str = DEFAULT_CALENDAR_ID
    name: str | None = None
    table_entry_id: str | None = None
    source: str = SOURCE_FORM


class FillBody(ControlBody):
    start: datetime
    resource_id: str = DEFAULT_RESOURCE_IDS[0]
    appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID


class RaceBody(ControlBody):
    start: datetime | None = None
    resource_id: str | None = None
    times: int = 1


class SettingsBody(ControlBody):
    step_minutes: int | None = None
    booking_length: int | None = None
    buffer_after: int | None = None
    max_parallel_bookings: int | None = None
    include_unavailable_filters: bool | None = None
    wall_times: bool | None = None


class ResourceBody(ControlBody):
    max_parallel_bookings: int


class LeadBody(ControlBody):
    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    lead_state_id: str = LEAD_STATES[0]["id"]


class TokenBody(ControlBody):
    scopes: list[str]
    token: str | None = None
    expires_at: datetime | None = None


def _time(action: dict[str, Any], name: str) -> datetime:
    value = action.get(name)
    if not isinstance(value, str):
        raise SandboxError(f"A mutate action needs {name} as an ISO 8601 string.")
    return aware(datetime.fromisoformat(value))


def _mutation(state: RocketLeadState, action: dict[str, Any]) -> tuple[Callable[[], None], str]:
    op = action.get("op")
    resource_id = action.get("resource_id") or DEFAULT_RESOURCE_IDS[0]
    if op == "fill":
        start = _time(action, "start")
        state.resource(resource_id)  # refuse an unknown id now rather than mid-answer

        def fill() -> None:
            state.fill_slot(start, resource_id)

        return fill, f"fill {resource_id} at {format_time(start)}"
    if op == "book":
        start = _time(action, "start")
        end = _time(action, "end") if action.get("end") else None
        state.resource(resource_id)

        def book() -> None:
            state.book(start, end, resource_id=resource_id)

        return book, f"book {resource_id} at {format_time(start)}"
    if op == "remove":
        booking_id = action.get("id")
        if not isinstance(booking_id, str):
            raise SandboxError("A remove action needs the id of the booking.")
        state.get(booking_id)
        return (lambda: state.remove(booking_id)), f"remove {booking_id}"
    raise SandboxError(f"Unknown mutate op {op!r}; use fill, book or remove.")


def control_router(state: RocketLeadState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX)
    router.include_router(
        common_router(
            state.faults,
            state.requests,
            lambda action: _mutation(state, action),
            listing_path=AVAILABILITY_PATH,
        )
    )

    def public(booking: Booking) -> dict[str, Any]:
        with state.lock:
            return {"id": booking.id, "source": booking.source, "booking": state.wire(booking)}

    def settings() -> dict[str, Any]:
        atype = state.appointment_type(DEFAULT_APPOINTMENT_TYPE_ID)
        return {
            "step_minutes": state.step_minutes,
            "booking_length": atype.booking_length,
            "buffer_after": atype.buffer_after,
            "max_parallel_bookings": {r.id: r.max_parallel_bookings for r in state.resources()},
            "include_unavailable_filters": state.include_unavailable_filters,
            "wall_times": state.wall_times,
        }

    def races() -> dict[str, Any]:
        return {"races": [r.public() for r in state.races()]}

    @router.get("/bookings")
    def list_bookings() -> dict[str, Any]:
        return {"bookings": [public(b) for b in state.bookings()]}

    @router.post("/bookings", status_code=201)
    def add_booking(body: CompetingBookingBody) -> Response:
        made: list[Booking] = []
        refused = guarded(
            lambda: made.append(
                state.book(
                    body.start,
                    body.end,
                    resource_id=body.resource_id,
                    appointment_type_id=body.appointment_type_id,
                    calendar_id=body.calendar_id,
                    name=body.name,
                    table_entry_id=body.table_entry_id,
                    source=body.source,
                )
            )
        )
        return refused or JSONResponse(public(made[0]), 201)

    @router.delete("/bookings/{booking_id}")
    def remove_booking(booking_id: str) -> Response:
        return guarded(lambda: state.remove(booking_id)) or Response(status_code=204)

    @router.post("/slots/fill", status_code=201)
    def fill(body: FillBody) -> Response:
        made: list[Booking] = []
        refused = guarded(
            lambda: made.extend(state.fill_slot(body.start, body.resource_id, body.appointment_type_id))
        )
        return refused or JSONResponse({"bookings": [public(b) for b in made]}, 201)

    @router.get("/races")
    def list_races() -> dict[str, Any]:
        return races()

    @router.post("/races", status_code=201)
    def add_race(body: RaceBody) -> Response:
        refused = guarded(lambda: state.race_next_booking(body.start, body.resource_id, body.times))
        return refused or JSONResponse(races(), 201)

    @router.delete("/races", status_code=204)
    def clear_races() -> None:
        state.clear_races()

    @router.get("/settings")
    def get_settings() -> dict[str, Any]:
        return settings()

    @router.put("/settings")
    def put_settings(body: SettingsBody) -> Response:
        def change() -> None:
            state.set_grid(body.step_minutes, body.booking_length, body.buffer_after)
            if body.max_parallel_bookings is not None:
                state.set_capacity(body.max_parallel_bookings)
            if body.include_unavailable_filters is not None:
                state.include_unavailable_filters = body.include_unavailable_filters
            if body.wall_times is not None:
                state.wall_times = body.wall_times

        return guarded(change) or JSONResponse(settings())

    @router.patch("/resources/{resource_id}")
    def patch_resource(resource_id: str, body: ResourceBody) -> Response:
        refused = guarded(lambda: state.set_capacity(body.max_parallel_bookings, resource_id))
        return refused or JSONResponse(state.resource(resource_id).wire())

    @router.get("/catalog")
    def catalog() -> dict[str, Any]:
        return {
            "organization_id": ORGANIZATION_ID,
            "calendars": [c.wire() for c in state.calendars()],
            "resources": [r.wire() for r in state.resources()],
            "appointment_types": [a.wire() for a in state.appointment_types()],
            "tables": state.tables(),
            "leads": [lead.wire() for lead in state.leads()],
        }

    @router.post("/leads", status_code=201)
    def add_lead(body: LeadBody) -> Response:
        made: list[str] = []
        refused = guarded(
            lambda: made.append(
                state.add_lead(body.email, body.first_name, body.last_name, body.phone, body.lead_state_id)
            )
        )
        return refused or JSONResponse(state.lead(made[0]).wire(), 201)

    @router.post("/tokens", status_code=201)
    def add_token(body: TokenBody) -> Response:
        made: list[str] = []

        def add() -> None:
            if body.token is None:
                made.append(state.new_token(body.scopes, body.expires_at))
            else:
                made.append(state.add_token(body.token, body.scopes, body.expires_at))

        return guarded(add) or JSONResponse({"token": made[0], "scopes": sorted(body.scopes)}, 201)

    @router.get("/tokens")
    def list_tokens() -> dict[str, Any]:
        return {
            "tokens": [
                {
                    "token": token,
                    "scopes": sorted(record.scopes),
                    "expires_at": format_time(record.expires_at) if record.expires_at else None,
                    "last_used_at": format_time(record.last_used_at) if record.last_used_at else None,
                    "revoked": record.revoked,
                }
                for token, record in state.token_records()
            ]
        }

    @router.delete("/tokens/{token}")
    def revoke_token(token: str) -> Response:
        refused = guarded(lambda: state.revoke_token(token))
        if refused is not None and refused.status_code == 400:
            return JSONResponse({"error": "The sandbox holds no such token."}, 404)
        return refused or Response(status_code=204)

    return router
