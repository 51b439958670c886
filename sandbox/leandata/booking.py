"""LeanData BookIt booking flow: availability, ``POST /v1/meeting``, ``/v1/round-robin-meeting``.

Follows LeanData's guide to booking a meeting (https://docs.leandata.com) and the BookIt OpenAPI
descriptions (https://bookit-api.leandata.com/) of
``/v1/scheduling/route-and-fetch-availability``, ``/v1/scheduling/fetch-availability``,
``/v1/meeting`` and ``/v1/round-robin-meeting``.

The sandbox has one trigger node (`TRIGGER_NODE`), one meeting type (`MEETING_TYPE`) and the
state's hosts. Slots are `SLOT_MINUTES` long, back to back from the first slot boundary at least
`MIN_NOTICE_MINUTES` after now, `SLOT_COUNT` of them; a host is free in a slot unless one of its
non-canceled meetings overlaps. ``state.display_all_pool_availability`` decides the pool:
``true`` offers every host's slots and allows only ``/v1/round-robin-meeting``; ``false``/``null``
offers the first host only and allows only ``/v1/meeting``.

Ambiguities, and how they are resolved:

* Response nesting: route-and-fetch-availability answers ``{"routing": {...}, "scheduling":
  {"meeting", "pageInfo", "availability", "userIdToInfoMap"}}``; fetch-availability answers those
  four at the top level (its "Top-Level Properties" table), plus ``calendarEvent`` for a
  ``meetingId``.
* ``scheduledTime`` keys: the request tables say ``start_time``/``end_time``; one OpenAPI example
  writes ``startTime``/``endTime``. The tables win: the camel-case form is refused as missing.
* Undocumented errors, guessed: an unknown token → 400 ``"Validation Error: Invalid token"``; a
  create on the wrong endpoint for the pool → 400 naming the right one; ``linkId`` → 404 ``"link
  not found"`` (the sandbox has no links); legacy ``params`` → 400 (it cannot decrypt them).
* A spent token: fetch-availability answers the documented "Meeting has already been booked..."
  message; a second create answers "This link only allows one booking and has already been used."
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.refusal import Refused

from .errors import before, error, json_body, scheduled_time
from .state import LeanDataMeeting, LeanDataState

TRIGGER_NODE = "New Webform Prospect"
SLOT_MINUTES = 30
SLOT_COUNT = 16
MIN_NOTICE_MINUTES = 60
MINUTE_MS = 60_000
MEETING_TYPE = {
    "name": "Intro Call",
    "duration": {"unit": "min", "value": SLOT_MINUTES},
    "formFields": [
        {"name": "First Name", "type": "text", "required": True},
        {"name": "Last Name", "type": "text", "required": True},
        {"name": "Email", "type": "text", "required": True},
        {"name": "Additional Guest Emails", "type": "textarea", "required": False},
    ],
    "description": "A first conversation with our team.",
    "redirectURL": "",
    "internalName": "intro_call",
    "pageStyle": {"styleColor": "#2d6cdf", "logo": ""},
}
ALREADY_BOOKED = (
    "Meeting has already been booked. Please use meetingId or eventId (legacy) to refetch availability."
)
LINK_USED = "This link only allows one booking and has already been used."
NOT_AVAILABLE = "The selected time is no longer available."


def _pool(state: LeanDataState) -> list[dict[str, str]]:
    return state.hosts if state.display_all_pool_availability else state.hosts[:1]


def _busy(
    state: LeanDataState, host: dict[str, str], start: int, end: int, ignore: str | None = None
) -> bool:
    return any(
        m.id != ignore
        and m.bookit_status != "canceled"
        and m.start_ms < end
        and start < m.end_ms
        and (m.host_user_id == host["id"] or m.organizer_email == host["Email"])
        for m in state.meetings()
    )


def _slots(
    state: LeanDataState, hosts: list[dict[str, str]], ignore: str | None = None
) -> list[dict[str, Any]]:
    step = SLOT_MINUTES * MINUTE_MS
    earliest = state.now_ms() + MIN_NOTICE_MINUTES * MINUTE_MS
    first = -(-earliest // step) * step  # next slot boundary, rounding up
    slots = []
    for n in range(SLOT_COUNT):
        start = first + n * step
        free = [i for i, h in enumerate(hosts) if not _busy(state, h, start, start + step, ignore)]
        if free:
            slots.append({"start_time": start, "end_time": start + step, "users": free})
    return slots


def _scheduling(state: LeanDataState, context: dict[str, Any], ignore: str | None = None) -> dict[str, Any]:
    hosts = _pool(state)
    prospect = context.get("prospect", {})
    return {
        "meeting": MEETING_TYPE,
        "pageInfo": {
            "displayAllPoolAvailability": state.display_all_pool_availability,
            "userIds": [] if state.display_all_pool_availability else [hosts[0]["id"]],
            "nonSFDCUserIds": [],
            "prefillFields": {
                "First Name": prospect.get("FirstName", ""),
                "Last Name": prospect.get("LastName", ""),
                "Email": prospect.get("Email", ""),
            },
        },
        "availability": {
            "indexToUserIdMap": {str(i): h["id"] for i, h in enumerate(hosts)},
            "timeSlots": _slots(state, hosts, ignore),
        },
        "userIdToInfoMap": {h["id"]: {k: v for k, v in h.items() if k != "id"} for h in hosts},
    }


def _user_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields = body.get("userFields")
    if not isinstance(fields, list):
        raise Refused(error(400, "Validation Error: Missing required parameter: userFields"))
    values = {f.get("name"): f.get("value") for f in fields if isinstance(f, dict)}
    for required in ("First Name", "Last Name", "Email"):
        if not values.get(required):
            raise Refused(error(400, f"Validation Error: Missing required input: {required}"))
    return values


def _token_context(state: LeanDataState, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    modes = [k for k in ("token", "linkId", "params") if body.get(k)]
    if len(modes) != 1:
        raise Refused(
            error(400, "Validation Error: Missing required parameter: exactly one of token, linkId or params")
        )
    if modes[0] == "linkId":
        raise Refused(error(404, "link not found"))
    if modes[0] == "params":
        raise Refused(
            error(400, "Validation Error: The sandbox cannot read legacy params; book with a token.")
        )
    context = state.booking_tokens.get(body["token"])
    if context is None:
        raise Refused(error(400, "Validation Error: Invalid token"))
    if context.get("meeting_id"):
        raise Refused(error(400, LINK_USED))
    return body["token"], context


def _create(state: LeanDataState, body: dict[str, Any], *, round_robin: bool) -> dict[str, Any]:
    with state.lock:
        token, context = _token_context(state, body)
        if bool(state.display_all_pool_availability) != round_robin:
            pool = state.display_all_pool_availability
            right = "/v1/round-robin-meeting" if pool else "/v1/meeting"
            raise Refused(
                error(
                    400,
                    "Validation Error: displayAllPoolAvailability is "
                    f"{str(state.display_all_pool_availability).lower()}; "
                    f"book with POST {right}.",
                )
            )
        start, end, timezone = scheduled_time(body, need_timezone=True)
        values = _user_fields(body)
        if start < state.now_ms() + MIN_NOTICE_MINUTES * MINUTE_MS:
            raise Refused(error(400, "Validation Error: Scheduled time is before the minimum booking notice"))
        hosts = _pool(state)
        if round_robin:
            users = body["scheduledTime"].get("users")
            if not isinstance(users, list) or not users:
                raise Refused(error(400, "Validation Error: Missing required parameter: scheduledTime.users"))
            by_id = {h["id"]: h for h in hosts}
            candidates = [by_id[u] for u in users if u in by_id]
        else:
            candidates = hosts
        offered = {(s["start_time"], s["end_time"]) for s in _slots(state, hosts)}
        free = [h for h in candidates if not _busy(state, h, start, end)]
        if (start, end) not in offered or not free:
            raise Refused(error(400, NOT_AVAILABLE))
        host = free[0]
        guests = values.get("Additional Guest Emails") or []
        meeting_id = state.book(
            MEETING_TYPE["name"],
            start,
            end,
            values["Email"],
            host["Email"],
            timezone=timezone or "UTC",
            host_user_id=host["id"],
            guest_emails=[guests] if isinstance(guests, str) else guests,
        )
        context["meeting_id"] = meeting_id
        answer = {"meetingId": meeting_id, "organizerEmail": host["Email"]}
        if round_robin:
            answer["selectedUserId"] = host["id"]
        return answer


def booking_router(state: LeanDataState) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/scheduling/route-and-fetch-availability")
    async def route_and_fetch(request: Request) -> Response:
        await before(state, request)
        body = await json_body(request)
        for name in ("triggerNode", "uid", "prospect"):
            if not body.get(name):
                return error(400, f"Validation Error: Missing required input: {name}")
        if body["triggerNode"] != TRIGGER_NODE:
            return error(400, "Invalid Node name provided")
        token = secrets.token_urlsafe(48)
        context = {"prospect": dict(body["prospect"]), "uid": body["uid"], "meeting_id": None}
        with state.lock:
            state.booking_tokens[token] = context
            scheduling = _scheduling(state, context)
        return JSONResponse(
            {
                "routing": {
                    "responseType": "calendar",
                    "token": token,
                    "calendarLink": f"https://sandbox.leandata.invalid/l/{token[:8]}",
                },
                "scheduling": scheduling,
            }
        )

    @router.post("/v1/scheduling/fetch-availability")
    async def fetch_availability(request: Request) -> Response:
        await before(state, request)
        body = await json_body(request)
        modes = [k for k in ("linkId", "meetingId", "token") if body.get(k)]
        if len(modes) != 1:
            return error(400, "Validation Error: Missing required parameter: linkId, meetingId or token")
        if modes[0] == "linkId":
            return error(404, "link not found")
        with state.lock:
            if modes[0] == "token":
                context = state.booking_tokens.get(body["token"])
                if context is None:
                    return error(400, "Validation Error: Invalid token")
                if context["meeting_id"]:
                    return error(400, ALREADY_BOOKED)
                return JSONResponse(_scheduling(state, context))
            try:
                meeting: LeanDataMeeting = state.get(body["meetingId"])
            except UnknownMeetingError:
                return error(404, "Meeting not found")
            answer = _scheduling(state, {"prospect": {"Email": meeting.prospect_email}}, ignore=meeting.id)
            return JSONResponse({"calendarEvent": meeting.wire()["calendarEvent"], **answer})

    @router.post("/v1/meeting")
    async def create_meeting(request: Request) -> Response:
        await before(state, request)
        return JSONResponse(_create(state, await json_body(request), round_robin=False))

    @router.post("/v1/round-robin-meeting")
    async def create_round_robin(request: Request) -> Response:
        await before(state, request)
        return JSONResponse(_create(state, await json_body(request), round_robin=True))

    return router
