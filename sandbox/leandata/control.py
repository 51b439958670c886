"""Control API of the LeanData simulator, for tests and demos that run it as a separate process.

JSON in and out, no auth, under ``/_sandbox/``; never recorded in the request log. Times are
epoch milliseconds or ISO 8601 strings. A meeting comes back as ``{"id", "prospect_email",
"meeting": <wire shape>}`` (the wire shape follows the ``flat_shape`` setting).

==========================================  =====================================================
``GET    /_sandbox/meetings``               ``{"meetings": [...]}``, by start time
``POST   /_sandbox/meetings``               ``{"title", "start", "end", "prospect_email",
                                            "organizer_email"?, "timezone"?, "guest_emails"?,
                                            "status"?}`` → 201 ``{"id", "prospect_email",
                                            "meeting"}``
``POST   /_sandbox/meetings/{id}/reschedule`` ``{"start", "end", "timezone"?}`` → the meeting
``POST   /_sandbox/meetings/{id}/cancel``   ``{}`` → the meeting
``DELETE /_sandbox/meetings/{id}``          204: hard delete, gone from every answer
``GET|POST|DELETE /_sandbox/faults``        as in `control` (``mutate`` actions: ``{"op":
                                            "reschedule", "id", "start", "end"}``, ``{"op":
                                            "cancel", "id"}``, ``{"op": "remove", "id"}``;
                                            ``offset`` 0)
``GET|DELETE /_sandbox/requests``           the request log, as in `control`
``GET|PUT /_sandbox/settings``              ``{"flat_shape": bool,
                                            "display_all_pool_availability": bool | null}``; PUT
                                            changes only the keys it names
``POST   /_sandbox/api-keys``               ``{"api_key"}`` → 201
==========================================  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.control import ControlBody, common_router, guarded
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.request_log import CONTROL_PREFIX

from .state import LIST_PATH, LeanDataMeeting, LeanDataState, parse_time_param

TimeValue = int | str


class BookBody(ControlBody):
    title: str
    start: TimeValue
    end: TimeValue
    prospect_email: str
    organizer_email: str | None = None
    timezone: str = "UTC"
    guest_emails: list[str] = []
    status: str = "scheduled"


class RescheduleBody(ControlBody):
    start: TimeValue
    end: TimeValue
    timezone: str | None = None


class SettingsBody(ControlBody):
    flat_shape: bool | None = None
    display_all_pool_availability: bool | None = None


class ApiKeyBody(ControlBody):
    api_key: str


def _ms(value: TimeValue) -> int:
    return value if isinstance(value, int) else parse_time_param(value)


def _mutation(state: LeanDataState, action: dict[str, Any]) -> tuple[Callable[[], None], str]:
    op, meeting_id = action.get("op"), action.get("id")
    if not isinstance(meeting_id, str):
        raise SandboxError("A mutate action needs the id of the meeting to change.")
    state.get(meeting_id)  # refuse an unknown id now rather than mid-listing
    if op == "reschedule":
        start, end = _ms(action["start"]), _ms(action["end"])
        return (lambda: state.reschedule(meeting_id, start, end)), f"reschedule {meeting_id}"
    if op == "cancel":
        return (lambda: state.cancel(meeting_id)), f"cancel {meeting_id}"
    if op == "remove":
        return (lambda: state.remove(meeting_id)), f"remove {meeting_id}"
    raise SandboxError(f"Unknown mutate op {op!r}; use reschedule, cancel or remove.")


def control_router(state: LeanDataState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX)
    router.include_router(
        common_router(
            state.faults, state.requests, lambda action: _mutation(state, action), listing_path=LIST_PATH
        )
    )

    def public(meeting: LeanDataMeeting) -> dict[str, Any]:
        return {"id": meeting.id, "prospect_email": meeting.prospect_email, "meeting": state.wire(meeting)}

    def settings() -> dict[str, Any]:
        return {
            "flat_shape": state.flat_shape,
            "display_all_pool_availability": state.display_all_pool_availability,
        }

    def changed(meeting_id: str, change: Callable[[], Any]) -> Response:
        return guarded(change) or JSONResponse(public(state.get(meeting_id)))

    @router.get("/meetings")
    def list_meetings() -> dict[str, Any]:
        return {"meetings": [public(m) for m in state.meetings()]}

    @router.post("/meetings", status_code=201)
    def book(body: BookBody) -> Response:
        booked: list[str] = []
        refused = guarded(
            lambda: booked.append(
                state.book(
                    body.title,
                    _ms(body.start),
                    _ms(body.end),
                    body.prospect_email,
                    body.organizer_email,
                    timezone=body.timezone,
                    guest_emails=body.guest_emails,
                    status=body.status,
                )
            )
        )
        return refused or JSONResponse(public(state.get(booked[0])), 201)

    @router.post("/meetings/{meeting_id}/reschedule")
    def reschedule(meeting_id: str, body: RescheduleBody) -> Response:
        return changed(
            meeting_id, lambda: state.reschedule(meeting_id, _ms(body.start), _ms(body.end), body.timezone)
        )

    @router.post("/meetings/{meeting_id}/cancel")
    def cancel(meeting_id: str) -> Response:
        return changed(meeting_id, lambda: state.cancel(meeting_id))

    @router.delete("/meetings/{meeting_id}")
    def remove(meeting_id: str) -> Response:
        return guarded(lambda: state.remove(meeting_id)) or Response(status_code=204)

    @router.get("/settings")
    def get_settings() -> dict[str, Any]:
        return settings()

    @router.put("/settings")
    def put_settings(body: SettingsBody) -> dict[str, Any]:
        chosen = body.model_dump(include=body.model_fields_set)
        if chosen.get("flat_shape", False) is None:
            chosen["flat_shape"] = False
        for key, value in chosen.items():
            setattr(state, key, value)
        return settings()

    @router.post("/api-keys", status_code=201)
    def add_api_key(body: ApiKeyBody) -> dict[str, Any]:
        state.add_api_key(body.api_key)
        return {"api_key": body.api_key}

    return router
