"""HubSpot simulator: the provider surface (`create_app`) over the state, in memory.

Written only from HubSpot's developer documentation: the CRM Meetings, Scheduler Meetings and
Webhooks 2026-03 OpenAPI references (https://developers.hubspot.com/docs/api-reference),
"Validating requests from HubSpot" (https://developers.hubspot.com/docs/api/webhooks/validating-requests)
and the error handling and usage pages. Every
response body conforms to the schema those OpenAPI files give for it (the error envelope is the
``Error`` schema of the ``default`` response). Deliveries live in `webhooks`, the control API in
`control`, the state in `state`, the search in `search`.

Over 400 lines for a reason: the routes below are one FastAPI app over one state, each a few
lines of parameter reading and error mapping; this docstring is the surface's reference.

Provider surface (``create_app``), ``Authorization: Bearer <token>``:

* ``GET /crm/objects/2026-03/meetings`` (``limit`` default 10, 1..100; ``after``; ``properties``;
  ``associations``; ``archived``) → ``{"results": [...], "paging": {"next": {"after", "link"}}}``,
  ``paging`` only when there is a next page. ``GET|PATCH|DELETE .../meetings/{meetingId}``,
  ``POST .../meetings`` (create), ``POST .../meetings/search``.
* ``GET /crm/objects/2026-03/contacts/{contactId}``: an extension (see attendees, below).
* ``GET /scheduler/2026-03/meetings/meeting-links``, ``GET .../meeting-links/book/{slug}``,
  ``GET .../meeting-links/book/availability-page/{slug}``, ``POST .../meeting-links/book``.
* ``GET|POST /webhooks/2026-03/{appId}/subscriptions``, ``GET|PATCH|DELETE
  .../subscriptions/{subscriptionId}``, ``GET|PUT|DELETE /webhooks/2026-03/{appId}/settings``.

Errors: ``{"status": "error", "message", "correlationId" (uuid), "category", "subCategory"?,
"errors"?: [{"message", "in"?, "code"?}], "context"?}``: 400 ``VALIDATION_ERROR``, 401
``INVALID_AUTHENTICATION``, 403 ``MISSING_SCOPES``, 404 ``OBJECT_NOT_FOUND``, 429 ``RATE_LIMITS``,
500 ``INTERNAL_ERROR``. ``status`` is not in the schema but the schema allows extra properties.

Ambiguities, and how they are resolved:

* **429**: no file documents the body. The simulator answers HubSpot's rate-limit shape made to
  satisfy the ``Error`` schema: ``{"status": "error", "message": "You have reached your
  ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "correlationId", "policyName":
  "TEN_SECONDLY_ROLLING", "category": "RATE_LIMITS"}`` with the headers
  ``X-HubSpot-RateLimit-Interval-Milliseconds: 10000``, ``X-HubSpot-RateLimit-Max``,
  ``X-HubSpot-RateLimit-Remaining: 0`` and the changelog's ``X-HubSpot-RateLimit-Daily`` /
  ``-Daily-Remaining``. No ``Retry-After`` (undocumented) unless a fault sets ``retry_after``.
  ``rate_limit_per_ten_seconds`` (off by default) enforces "100 calls per 10 seconds" for real.
* **Property values** are strings (the schema). Date-time properties are ISO 8601 UTC with
  milliseconds (``2030-05-06T12:00:00.000Z``); writes accept ISO 8601 or epoch milliseconds.
  Without ``properties`` only ``hs_createdate``, ``hs_lastmodifieddate`` and ``hs_object_id``
  come back; those three always come back. A requested property the meeting has no value for is
  left out (the spec: "will be ignored"), never ``null`` (the schema allows only strings).
* **Paging** lists meetings by ascending numeric id; ``after`` is the id to resume at (opaque to
  clients). Ids are numeric strings with gaps, increasing with creation. ``archived=true`` lists
  archived meetings only. Search pages by offset (``after`` is an offset string), limit 1..200.
* **Search** needs every field the schema marks required (``after``, ``filterGroups``,
  ``limit``, ``properties``, ``sorts``) unless ``search_requires_all_fields`` is off; ``after``
  may be ``""`` for the first page. ``sorts`` items are strings per the schema (``"prop"`` or
  ``"-prop"`` for descending); HubSpot's object form ``{"propertyName", "direction"}`` is
  accepted too. Date filter values are epoch ms or ISO 8601; all operators of the enum work.
  Default order is by id.
* **PATCH** of an unknown property → 400 ``PROPERTY_DOESNT_EXIST``; of ``hs_createdate``,
  ``hs_lastmodifieddate``, ``hs_object_id`` → 400 ``READ_ONLY_VALUE``; an outcome outside
  ``SCHEDULED COMPLETED RESCHEDULED NO_SHOW CANCELED`` → 400 ``INVALID_OPTION``. An empty string
  clears a property. ``DELETE`` archives (204); deleting an archived meeting answers 204 again,
  an id never seen 404.
* **Attendees**: a meeting's attendee is a *contact association* (``associations=contacts`` →
  ``{"contacts": {"results": [{"id", "type": "meeting_event_to_contact"}]}}``), as HubSpot's
  booking creates it. Contacts are not in the provided specs, so ``GET
  /crm/objects/2026-03/contacts/{id}`` (properties ``email``, ``firstname``, ``lastname``, the
  generic CRM object shape) is served as a documented extension.
* **Booking**: every field the schema marks required (including ``formFields``,
  ``legalConsentResponses``, ``likelyAvailableUserIds``; empty arrays are fine) must be present,
  else 400 listing them in ``errors``. ``duration`` is **milliseconds** (the seed page and the
  link's ``durations``) though the OpenAPI description says minutes; ``duration_unit`` switches
  to ``minutes``. It must be one of the link's durations. The response echoes ``duration`` in
  the unit sent. A start that is not an offered slot (taken, off-grid, past, outside the
  advertised weeks) → 400 ``VALIDATION_ERROR`` / subCategory
  ``MeetingsBookingError.TIME_SLOT_UNAVAILABLE``; unknown slug → 404. The booking response has
  no CRM id, so the CRM meeting it creates stores ``calendarEventId`` in ``hs_unique_id``
  ("A unique identifier for the meeting event" in the scheduler spec), ``hs_engagement_source``
  ``MEETINGS_PUBLIC`` and ``hs_engagement_source_id`` the link id, and is associated with the
  booker's contact (``contactId``, created on first booking per email).
* **Availability**: the link's grid is weekly hours in the link's timezone (default Mon–Fri
  09:00–17:00 ``America/New_York``), starts every ``startTimeIncrementMinutes`` (default
  ``MEETING_DURATION``), minus busy times (configured per user, and every live meeting booked on
  the link, with ``meetingBufferTime`` either side) and minus the past; ``weeksToAdvertise``
  (default 2) bounds it. ``monthOffset`` picks the calendar month (in the requested timezone)
  of now plus that many months; ``hasMore`` says slots exist after it.
  ``linkAvailabilityByDuration`` is keyed by the duration in ms as a string.
  ``customParams.availability`` maps weekday names (``MONDAY``…) to a ``{start, end}`` closed
  range in minutes after midnight (the day's first range). Busy times count against a meeting
  through ``hubspot_owner_id`` (a host's user id), so a meeting created in the UI for a host
  blocks their slots too.
* **Webhooks**: see `webhooks`. Changes made through the control API carry
  ``changeSource: "CRM_UI"``, through the CRM API ``"API"``, through a booking ``"MEETINGS"``.
  A creation also sends ``object.propertyChange`` for each subscribed property that got a value
  (switch off with ``property_changes_on_creation``). Cancel = outcome ``CANCELED`` (a property
  change), archive = ``object.deletion``. One change → one batch (a JSON array).
* A ``malformed`` fault adds one meeting to a CRM listing page whose ``hs_meeting_start_time``
  is ``"not-a-date"``; a ``mutate`` fault's ``offset`` is the index in the full ordered list of
  the page's first record.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.refusal import Refused, install_refusals, run_page_mutations
from bookingsync.sandbox.request_log import install_request_log

from .control import control_router
from .errors import (
    _api_error,
    _before,
    _bool_param,
    _error,
    _int_param,
    _json_object,
    _malformed,
    _multi,
    _tz_param,
    _validation,
)
from .records import (
    BOOK_PATH,
    CONTACTS_PATH,
    DEFAULT_LIMIT,
    LINKS_PATH,
    MAX_LIMIT,
    MEETINGS_OBJECT_TYPE_ID,
    MEETINGS_PATH,
    PUBLIC_BASE_URL,
    SCOPE_BOOK,
    SCOPE_CRM_READ,
    SCOPE_CRM_WRITE,
    SCOPE_DEV_READ,
    SCOPE_DEV_WRITE,
    SCOPE_LINKS_READ,
    SOURCE_API,
    WEBHOOKS_PATH,
    WEEKDAYS,
    HubSpotApiError,
    MeetingLink,
    Subscription,
    format_time,
    parse_time,
    to_millis,
    zone,
)
from .search import (
    _search,
)
from .state import HubSpotState

BOOKING_REQUIRED = {
    "duration": int,
    "email": str,
    "firstName": str,
    "formFields": list,
    "lastName": str,
    "legalConsentResponses": list,
    "likelyAvailableUserIds": list,
    "slug": str,
    "startTime": str,
}


def _booking_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    for key, kind in BOOKING_REQUIRED.items():
        if key not in body or body[key] is None:
            problems.append({"message": f"{key} is required.", "in": key, "code": "REQUIRED"})
        elif not isinstance(body[key], kind) or (kind is int and isinstance(body[key], bool)):
            problems.append(
                {"message": f"{key} must be of type {kind.__name__}.", "in": key, "code": "INVALID_TYPE"}
            )
    for key in ("locale", "timezone"):
        if key in body and not isinstance(body[key], str):
            problems.append({"message": f"{key} must be a string.", "in": key})
    for item in body.get("formFields") if isinstance(body.get("formFields"), list) else []:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("value"), str)
        ):
            problems.append({"message": "Each form field needs a string name and value.", "in": "formFields"})
    for item in (
        body.get("legalConsentResponses") if isinstance(body.get("legalConsentResponses"), list) else []
    ):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("communicationTypeId"), str)
            and isinstance(item.get("consented"), bool)
        ):
            problems.append(
                {
                    "message": "Each legal consent response needs communicationTypeId and consented.",
                    "in": "legalConsentResponses",
                }
            )
    email = body.get("email")
    if isinstance(email, str) and (
        "@" not in email or email.startswith("@") or "." not in email.rsplit("@", 1)[-1]
    ):
        problems.append(
            {"message": f"{email!r} is not a valid email address.", "in": "email", "code": "INVALID_EMAIL"}
        )
    if isinstance(body.get("timezone"), str):
        try:
            zone(body["timezone"])
        except SandboxError:
            problems.append({"message": "Unknown timezone.", "in": "timezone"})
    return problems


def _booking_info(state: HubSpotState, link: MeetingLink, tz: str, month_offset: int = 0) -> dict[str, Any]:
    availability = _availability(state, link, tz, month_offset)
    weekly = {
        WEEKDAYS[d]: {"start": ranges[0][0], "end": ranges[0][1]}
        for d, ranges in sorted(link.weekly_hours.items())
        if ranges
    }
    custom: dict[str, Any] = {
        "availability": weekly,
        "durations": list(link.durations_ms),
        "formFields": [
            {
                "name": n,
                "label": label,
                "type": "string",
                "fieldType": "text",
                "isCustom": False,
                "isRequired": True,
                "options": [],
            }
            for n, label in (("firstName", "First name"), ("lastName", "Last name"), ("email", "Email"))
        ],
        "legalConsentEnabled": False,
        "meetingBufferTime": link.buffer_ms,
        "ownerPrioritized": False,
        "startTimeIncrementMinutes": link.start_increment,
        "weeksToAdvertise": link.weeks_to_advertise,
        "location": link.location,
        "locale": "en-us",
        "language": "en",
        "guestSettings": {"canAddGuests": False, "maxGuestCount": 0},
    }
    return {
        "linkId": link.id,
        "linkType": link.link_type,
        "isOffline": False,
        "customParams": custom,
        **availability,
    }


def _availability(state: HubSpotState, link: MeetingLink, tz: str, month_offset: int) -> dict[str, Any]:
    local_now = state.now().astimezone(zone(tz))
    months = local_now.year * 12 + local_now.month - 1 + month_offset
    first = datetime.combine(date(months // 12, months % 12 + 1, 1), time(), zone(tz))
    months += 1
    after = datetime.combine(date(months // 12, months % 12 + 1, 1), time(), zone(tz))
    horizon = state.now() + timedelta(weeks=link.weeks_to_advertise)
    by_duration, more = {}, False
    for duration in link.durations_ms:
        slots = state.slots(link, duration, first.astimezone(UTC), after.astimezone(UTC))
        by_duration[str(duration)] = {
            "meetingDurationMillis": duration,
            "availabilities": [
                {"startMillisUtc": to_millis(s), "endMillisUtc": to_millis(e)} for s, e in slots
            ],
        }
        more = more or bool(state.slots(link, duration, after.astimezone(UTC), horizon))
    busy = state.busy_times(link)
    users = {u.user_id: u for u in state.users_of(link)}
    return {
        "allUsersBusyTimes": [
            {
                "meetingsUser": users[u].public(),
                "isOffline": False,
                "busyTimes": [
                    {"start": to_millis(s), "end": to_millis(e)}
                    for s, e in sorted(busy[u])
                    if e > state.now()
                ],
            }
            for u in link.user_ids
        ],
        "linkAvailability": {"hasMore": more, "linkAvailabilityByDuration": by_duration},
    }


def create_app(state: HubSpotState) -> FastAPI:
    app = FastAPI(title="HubSpot sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    install_refusals(app)

    @app.exception_handler(HubSpotApiError)
    async def api_error(_request: Request, exc: HubSpotApiError) -> Response:
        return _api_error(exc)

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/_sandbox"):
            return JSONResponse({"error": "Not found."}, 404)
        return _error(404, "OBJECT_NOT_FOUND", f"No route for {request.url.path}.")

    @app.exception_handler(405)
    async def not_allowed(request: Request, _exc: Exception) -> Response:
        return _error(405, "VALIDATION_ERROR", f"{request.method} is not allowed here.")

    def not_found_error(kind: str, object_id: str) -> JSONResponse:
        return _error(
            404,
            "OBJECT_NOT_FOUND",
            "resource not found",
            context={"id": [object_id]},
            errors=[{"message": f"No {kind} with id {object_id} exists.", "in": "id"}],
        )

    # -- CRM --------------------------------------------------------------------------------

    @app.get(MEETINGS_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await _before(state, request, SCOPE_CRM_READ, listing=True)
        params = request.query_params
        limit = _int_param(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        archived = _bool_param(params.get("archived"), "archived")
        after = params.get("after")
        if after is not None and not after.isdigit():
            raise _validation(
                f"Invalid paging cursor {after!r}.", [{"message": "Invalid after.", "in": "after"}]
            )
        properties, associations = _multi(request, "properties"), _multi(request, "associations")
        every = state.meetings(archived=archived)
        position = next(
            (i for i, m in enumerate(every) if after is None or int(m.id) >= int(after)), len(every)
        )
        page = every[position : position + limit]
        following = every[position + limit : position + limit + 1]
        results = [m.resource(properties, associations) for m in page]
        run_page_mutations(state.faults, request, position)
        if fault is not None and fault.kind == "malformed":
            results.append(_malformed(state))
        body: dict[str, Any] = {"results": results}
        if following:
            cursor = following[0].id
            query = [(k, v) for k, v in params.multi_items() if k != "after"]
            query.append(("after", cursor))
            link = f"{PUBLIC_BASE_URL}{MEETINGS_PATH}?{urlencode(query)}"
            body["paging"] = {"next": {"after": cursor, "link": link}}
        return JSONResponse(body)

    @app.post(MEETINGS_PATH, status_code=201)
    async def create_meeting(request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise _validation(
                "properties is required.", [{"message": "properties is required.", "in": "properties"}]
            )
        values = {k: v for k, v in state.normalise(props).items() if v != ""}
        if "hs_timestamp" not in values and "hs_meeting_start_time" in values:
            values["hs_timestamp"] = values["hs_meeting_start_time"]  # the 2024 changelog
        if "hs_timestamp" not in values:
            raise _validation(
                "hs_timestamp is required (or hs_meeting_start_time).",
                [{"message": "hs_timestamp is required.", "in": "hs_timestamp", "code": "REQUIRED"}],
            )
        meeting = state.insert_meeting(values, source=SOURCE_API)
        return JSONResponse(meeting.resource(meeting.properties), 201)

    @app.post(f"{MEETINGS_PATH}/search")
    async def search(request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        return JSONResponse(_search(state, await _json_object(request)))

    @app.get(MEETINGS_PATH + "/{meeting_id}")
    async def read_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        archived = _bool_param(request.query_params.get("archived"), "archived")
        id_property = request.query_params.get("idProperty")
        try:
            if id_property and id_property != "hs_object_id":
                matches = [
                    m
                    for m in state.meetings(archived=archived)
                    if m.properties.get(id_property) == meeting_id
                ]
                if not matches:
                    raise UnknownMeetingError(meeting_id)
                meeting = matches[0]
            else:
                meeting = state.get(meeting_id)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        if meeting.archived != archived:
            return not_found_error("meeting", meeting_id)
        return JSONResponse(meeting.resource(_multi(request, "properties"), _multi(request, "associations")))

    @app.patch(MEETINGS_PATH + "/{meeting_id}")
    async def update_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise _validation(
                "properties is required.", [{"message": "properties is required.", "in": "properties"}]
            )
        try:
            meeting = state.update_meeting(meeting_id, props, source=SOURCE_API)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        return JSONResponse(meeting.resource(meeting.properties))

    @app.delete(MEETINGS_PATH + "/{meeting_id}")
    async def archive_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        try:
            state.archive(meeting_id, source=SOURCE_API)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        return Response(status_code=204)

    @app.get(CONTACTS_PATH + "/{contact_id}")
    async def read_contact(contact_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        contact = state.contact(contact_id)
        if contact is None:
            return not_found_error("contact", contact_id)
        return JSONResponse(contact.resource())

    # -- scheduler --------------------------------------------------------------------------

    @app.get(LINKS_PATH)
    async def list_links(request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        params = request.query_params
        limit = _int_param(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_param(params.get("after"), "after", 0, 0, 10**9)
        kind = params.get("type")
        if kind is not None and kind not in ("GROUP_CALENDAR", "PERSONAL_LINK", "ROUND_ROBIN_CALENDAR"):
            raise _validation(f"Invalid type {kind!r}.", [{"message": "Invalid type.", "in": "type"}])
        found = [
            link
            for link in state.links()
            if (kind is None or link.link_type == kind)
            and (params.get("name") is None or params["name"].lower() in link.name.lower())
            and (params.get("organizerUserId") is None or link.organizer_user_id == params["organizerUserId"])
        ]
        body: dict[str, Any] = {
            "total": len(found),
            "results": [link.metadata() for link in found[offset : offset + limit]],
        }
        if offset + limit < len(found):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return JSONResponse(body)

    @app.get(BOOK_PATH + "/availability-page/{slug}")
    async def availability(slug: str, request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        tz = _tz_param(request)
        month_offset = _int_param(request.query_params.get("monthOffset"), "monthOffset", 0, -24, 24)
        link = state.link(slug)
        if link is None:
            return not_found_error("meeting link", slug)
        return JSONResponse(_availability(state, link, tz, month_offset))

    @app.get(BOOK_PATH + "/{slug}")
    async def booking_info(slug: str, request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        tz = _tz_param(request)
        link = state.link(slug)
        if link is None:
            return not_found_error("meeting link", slug)
        return JSONResponse(_booking_info(state, link, tz))

    @app.post(BOOK_PATH)
    async def book(request: Request) -> Response:
        await _before(state, request, SCOPE_BOOK, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        problems = _booking_problems(body)
        start = None
        if not problems:
            try:
                start = parse_time(body["startTime"])
            except ValueError:
                problems.append(
                    {
                        "message": "startTime must be an ISO 8601 date-time.",
                        "in": "startTime",
                        "code": "INVALID_DATE",
                    }
                )
        if problems or start is None:
            raise _validation("Invalid input: " + "; ".join(p["message"] for p in problems), problems)
        duration = body["duration"]
        duration_ms = duration * 60_000 if state.duration_unit == "minutes" else duration
        _meeting, answer = state.book(
            body["slug"],
            start,
            duration_ms,
            body["email"],
            body["firstName"],
            body["lastName"],
            timezone=body.get("timezone"),
            locale=body.get("locale"),
            form_fields=body["formFields"],
            legal_consent=body["legalConsentResponses"],
        )
        return JSONResponse(answer | {"duration": duration})

    # -- webhooks management ----------------------------------------------------------------

    def check_app(app_id: str) -> None:
        if app_id != str(state.app_id):
            raise Refused(_error(404, "OBJECT_NOT_FOUND", f"No app with id {app_id}."))

    def subscription_or_404(subscription_id: str) -> Subscription:
        sub = state.subscription(int(subscription_id)) if subscription_id.isdigit() else None
        if sub is None:
            raise Refused(_error(404, "OBJECT_NOT_FOUND", f"No subscription with id {subscription_id}."))
        return sub

    @app.get(WEBHOOKS_PATH + "/{app_id}/subscriptions")
    async def list_subscriptions(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        return JSONResponse({"results": [s.public() for s in state.subscriptions()]})

    @app.post(WEBHOOKS_PATH + "/{app_id}/subscriptions", status_code=201)
    async def create_subscription(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        body = await _json_object(request)
        if not isinstance(body.get("eventType"), str) or not isinstance(body.get("active"), bool):
            raise _validation("eventType and active are required.")
        if body.get("objectTypeId", MEETINGS_OBJECT_TYPE_ID) != MEETINGS_OBJECT_TYPE_ID:
            raise _validation("The sandbox holds meetings (objectTypeId 0-47) only.")
        try:
            sub = state.subscribe(body["eventType"], body.get("propertyName"), active=body["active"])
        except SandboxError as exc:
            raise _validation(str(exc)) from None
        return JSONResponse(
            sub.public(),
            201,
            headers={"Location": f"{PUBLIC_BASE_URL}{WEBHOOKS_PATH}/{app_id}/subscriptions/{sub.id}"},
        )

    @app.get(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def read_subscription(app_id: str, subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        return JSONResponse(subscription_or_404(subscription_id).public())

    @app.patch(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def patch_subscription(app_id: str, subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        sub = subscription_or_404(subscription_id)
        body = await _json_object(request)
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise _validation("active must be a boolean.")
            state.set_subscription_active(sub.id, body["active"])
        return JSONResponse(sub.public())

    @app.delete(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def delete_subscription(app_id: str, subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        state.unsubscribe(subscription_or_404(subscription_id).id)
        return Response(status_code=204)

    def settings_body() -> dict[str, Any]:
        created = state.settings_created_at or state.now()
        return {
            "targetUrl": state.webhook_target_url or "",
            "createdAt": format_time(created),
            "throttling": {"maxConcurrentRequests": state.max_concurrent_requests},
        }

    @app.get(WEBHOOKS_PATH + "/{app_id}/settings")
    async def get_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        if not state.webhook_target_url:
            return _error(404, "OBJECT_NOT_FOUND", "No webhook settings for this app.")
        return JSONResponse(settings_body())

    @app.put(WEBHOOKS_PATH + "/{app_id}/settings")
    async def put_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        body = await _json_object(request)
        throttling = body.get("throttling")
        if (
            not isinstance(body.get("targetUrl"), str)
            or not body["targetUrl"].startswith(("http://", "https://"))
            or not isinstance(throttling, dict)
            or not isinstance(throttling.get("maxConcurrentRequests"), int)
        ):
            raise _validation("targetUrl (an http(s) URL) and throttling.maxConcurrentRequests are required.")
        state.webhook_target_url = body["targetUrl"]
        state.max_concurrent_requests = throttling["maxConcurrentRequests"]
        state.settings_created_at = state.settings_created_at or state.now()
        return JSONResponse(settings_body() | {"updatedAt": format_time(state.now())})

    @app.delete(WEBHOOKS_PATH + "/{app_id}/settings")
    async def clear_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        state.webhook_target_url = None
        return Response(status_code=204)

    return app
