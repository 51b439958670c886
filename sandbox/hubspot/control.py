"""Control API of the HubSpot simulator, for tests and demos that run it as a separate process.

JSON in and out, no auth, under ``/_sandbox/``; never recorded in the request log. Times are
ISO 8601 (``Z`` or an offset; none means UTC) or epoch milliseconds. Meetings come back in the
CRM shape with every property and the contact associations. Changes made here act "in HubSpot's
UI": they fire webhooks with ``changeSource: "CRM_UI"``.

===============================================  ================================================
``GET    /_sandbox/meetings``                    ``{"meetings": [resource, ...]}`` (archived too)
``POST   /_sandbox/meetings``                    ``{"title", "start", "end", "outcome"?,
                                                 "external_url"?, "attendee_email"?,
                                                 "attendee_firstname"?, "attendee_lastname"?,
                                                 "owner_id"?, "location"?, "body"?,
                                                 "properties"?, "created_at"?}`` → 201
                                                 ``{"id", "meeting"}``
``PATCH  /_sandbox/meetings/{id}``               ``{"properties": {...}}`` → ``{"meeting"}``
``POST   /_sandbox/meetings/{id}/reschedule``    ``{"start", "end"}`` (outcome RESCHEDULED)
``POST   /_sandbox/meetings/{id}/cancel``        outcome CANCELED
``POST   /_sandbox/meetings/{id}/archive``       archived (``object.deletion``); also
                                                 ``DELETE /_sandbox/meetings/{id}``
``GET    /_sandbox/links``                       ``{"links": [metadata + settings]}``
``POST   /_sandbox/links``                       ``{"slug", "name", "user_ids"?, "link_type"?,
                                                 "timezone"?, "durations_ms"?, "weekly_hours"?
                                                 ({"0": [[540, 1020]], ...}, weekday 0 = Monday,
                                                 minutes), "start_increment"?, "buffer_ms"?,
                                                 "weeks_to_advertise"?, "location"?}`` → 201
``POST   /_sandbox/users``                       ``{"user_id", "email", "first_name",
                                                 "last_name"}`` → 201
``POST   /_sandbox/busy``                        ``{"start", "end", "user_id"?}`` → 201
``GET|PUT /_sandbox/webhooks``                   ``{"target_url", "client_secret", "app_id",
                                                 "portal_id"}``; PUT changes the keys it names
``GET    /_sandbox/subscriptions``               ``{"subscriptions": [...]}`` (API shape)
``POST   /_sandbox/subscriptions``               ``{"eventType", "propertyName"?, "active"?}``,
                                                 or ``{"meetings": true, "properties"?: [...]}``
                                                 for creation + deletion + propertyChange each
``DELETE /_sandbox/subscriptions``               204, all removed
``GET    /_sandbox/deliveries``                  ``?wait=true`` first waits for queued ones →
                                                 ``{"deliveries": [{"delivery_id",
                                                 "attempt_number", "target_url", "event_ids",
                                                 "headers", "body", "status_code",
                                                 "response_body", "error", "succeeded"}]}``
``POST   /_sandbox/deliveries/{id}/resend``      the batch again, ``attemptNumber`` + 1 → 202
``GET|PUT /_sandbox/settings``                   ``{"duplicate_deliveries", "retry_failed",
                                                 "retry_delay_seconds", "timestamp_offset_ms",
                                                 "duration_unit": "milliseconds"|"minutes",
                                                 "search_requires_all_fields",
                                                 "property_changes_on_creation",
                                                 "rate_limit_per_ten_seconds"}``
``POST   /_sandbox/tokens``                      ``{"token", "scopes": [...]}`` → 201
``GET|POST|DELETE /_sandbox/faults``             see `control`; a ``mutate`` action is ``{"op":
                                                 "update"|"reschedule"|"cancel"|"archive",
                                                 "id", "properties"? | "start"?, "end"?}``
``GET|DELETE /_sandbox/requests``                the request log
===============================================  ================================================

Unknown meeting ids answer 404 ``{"error": <sentence>}``; unusable input 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.control import ControlBody, common_router, guarded, scoped_token_route
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.request_log import CONTROL_PREFIX

from .records import DEFAULT_SUBSCRIBED_PROPERTIES, MEETINGS_PATH, HubSpotApiError, MeetingLink, parse_time
from .state import HubSpotState

Stamp = str | int


class MeetingBody(ControlBody):
    title: str
    start: Stamp
    end: Stamp
    outcome: str = "SCHEDULED"
    external_url: str | None = None
    attendee_email: str | None = None
    attendee_firstname: str = ""
    attendee_lastname: str = ""
    owner_id: str | None = None
    location: str | None = None
    body: str | None = None
    properties: dict[str, str] = {}
    created_at: Stamp | None = None


class PropertiesBody(ControlBody):
    properties: dict[str, Any]


class RescheduleBody(ControlBody):
    start: Stamp
    end: Stamp


class LinkBody(ControlBody):
    slug: str
    name: str
    user_ids: list[str] | None = None
    link_type: str = "PERSONAL_LINK"
    timezone: str | None = None
    durations_ms: list[int] | None = None
    weekly_hours: dict[int, list[tuple[int, int]]] | None = None
    start_increment: str | None = None
    buffer_ms: int | None = None
    weeks_to_advertise: int | None = None
    location: str | None = None


class UserBody(ControlBody):
    user_id: str
    email: str
    first_name: str
    last_name: str


class BusyBody(ControlBody):
    start: Stamp
    end: Stamp
    user_id: str | None = None


class WebhookBody(ControlBody):
    target_url: str | None = None
    client_secret: str | None = None
    app_id: int | None = None
    portal_id: int | None = None


class SubscriptionBody(ControlBody):
    eventType: str | None = None  # noqa: N815 - the API's spelling
    propertyName: str | None = None  # noqa: N815
    active: bool = True
    meetings: bool = False
    properties: list[str] | None = None


class SettingsBody(ControlBody):
    duplicate_deliveries: int | None = None
    retry_failed: int | None = None
    retry_delay_seconds: float | None = None
    timestamp_offset_ms: int | None = None
    duration_unit: str | None = None
    search_requires_all_fields: bool | None = None
    property_changes_on_creation: bool | None = None
    rate_limit_per_ten_seconds: int | None = None


SETTINGS = tuple(SettingsBody.model_fields)
NULLABLE_SETTINGS = ("rate_limit_per_ten_seconds",)


def when(value: Stamp) -> Any:
    return parse_time(str(value))


def _mutation(state: HubSpotState, action: dict[str, Any]) -> tuple[Callable[[], None], str]:
    op, meeting_id = action.get("op"), action.get("id")
    if not isinstance(meeting_id, str):
        raise SandboxError("A mutate action needs the id of the meeting to change.")
    state.get(meeting_id)
    if op == "update":
        props = dict(action.get("properties") or {})
        return (lambda: state.update_meeting(meeting_id, props) and None), f"update {meeting_id} {props}"
    if op == "reschedule":
        start, end = when(action["start"]), when(action["end"])
        return (lambda: state.reschedule(meeting_id, start, end) and None), f"reschedule {meeting_id}"
    if op == "cancel":
        return (lambda: state.cancel(meeting_id) and None), f"cancel {meeting_id}"
    if op == "archive":
        return (lambda: state.archive(meeting_id)), f"archive {meeting_id}"
    raise SandboxError(f"Unknown mutate op {op!r}; use update, reschedule, cancel or archive.")


def _link_public(link: MeetingLink) -> dict[str, Any]:
    return link.metadata() | {
        "timezone": link.timezone,
        "durations_ms": link.durations_ms,
        "weekly_hours": {str(k): v for k, v in link.weekly_hours.items()},
        "start_increment": link.start_increment,
        "buffer_ms": link.buffer_ms,
        "weeks_to_advertise": link.weeks_to_advertise,
        "location": link.location,
    }


def control_router(state: HubSpotState) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX)
    router.include_router(
        common_router(
            state.faults, state.requests, lambda action: _mutation(state, action), listing_path=MEETINGS_PATH
        )
    )

    def full(meeting_id: str) -> dict[str, Any]:
        meeting = state.get(meeting_id)
        return meeting.resource(meeting.all_properties(), ["contacts"])

    def meeting_response(meeting_id: str, change: Callable[[], Any]) -> Response:
        def run() -> None:
            try:
                change()
            except HubSpotApiError as exc:
                raise SandboxError(exc.message) from exc

        refused = guarded(run)
        return refused or JSONResponse({"meeting": full(meeting_id)})

    def settings() -> dict[str, Any]:
        return {key: getattr(state, key) for key in SETTINGS}

    def webhook_config() -> dict[str, Any]:
        return {
            "target_url": state.webhook_target_url,
            "client_secret": state.client_secret,
            "app_id": state.app_id,
            "portal_id": state.portal_id,
        }

    @router.get("/meetings")
    def list_meetings() -> dict[str, Any]:
        return {"meetings": [full(m.id) for m in state.meetings()]}

    @router.post("/meetings", status_code=201)
    def create(body: MeetingBody) -> Response:
        created: list[str] = []

        def run() -> None:
            try:
                created.append(
                    state.create_meeting(
                        body.title,
                        when(body.start),
                        when(body.end),
                        outcome=body.outcome,
                        external_url=body.external_url,
                        attendee_email=body.attendee_email,
                        attendee_firstname=body.attendee_firstname,
                        attendee_lastname=body.attendee_lastname,
                        owner_id=body.owner_id,
                        location=body.location,
                        body=body.body,
                        extra=body.properties,
                        created_at=when(body.created_at) if body.created_at is not None else None,
                    )
                )
            except HubSpotApiError as exc:
                raise SandboxError(exc.message) from exc

        refused = guarded(run)
        return refused or JSONResponse({"id": created[0], "meeting": full(created[0])}, 201)

    @router.patch("/meetings/{meeting_id}")
    def update(meeting_id: str, body: PropertiesBody) -> Response:
        return meeting_response(meeting_id, lambda: state.update_meeting(meeting_id, body.properties))

    @router.post("/meetings/{meeting_id}/reschedule")
    def reschedule(meeting_id: str, body: RescheduleBody) -> Response:
        return meeting_response(
            meeting_id, lambda: state.reschedule(meeting_id, when(body.start), when(body.end))
        )

    @router.post("/meetings/{meeting_id}/cancel")
    def cancel(meeting_id: str) -> Response:
        return meeting_response(meeting_id, lambda: state.cancel(meeting_id))

    @router.post("/meetings/{meeting_id}/archive")
    def archive(meeting_id: str) -> Response:
        return meeting_response(meeting_id, lambda: state.archive(meeting_id))

    @router.delete("/meetings/{meeting_id}")
    def delete(meeting_id: str) -> Response:
        return meeting_response(meeting_id, lambda: state.archive(meeting_id))

    @router.get("/links")
    def list_links() -> dict[str, Any]:
        return {"links": [_link_public(link) for link in state.links()]}

    @router.post("/links", status_code=201)
    def add_link(body: LinkBody) -> Response:
        made: list[MeetingLink] = []
        chosen = {
            k: v
            for k, v in body.model_dump().items()
            if v is not None and k not in ("slug", "name", "user_ids")
        }
        users = body.user_ids or [state.links()[0].organizer_user_id]
        refused = guarded(lambda: made.append(state.add_link(body.slug, body.name, users, **chosen)))
        return refused or JSONResponse({"link": _link_public(made[0])}, 201)

    @router.post("/users", status_code=201)
    def add_user(body: UserBody) -> dict[str, Any]:
        return {"user": state.add_user(body.user_id, body.email, body.first_name, body.last_name).public()}

    @router.post("/busy", status_code=201)
    def add_busy(body: BusyBody) -> Response:
        refused = guarded(lambda: state.add_busy(when(body.start), when(body.end), body.user_id))
        return refused or JSONResponse({"ok": True}, 201)

    @router.get("/webhooks")
    def get_webhooks() -> dict[str, Any]:
        return webhook_config()

    @router.put("/webhooks")
    def put_webhooks(body: WebhookBody) -> dict[str, Any]:
        for key, value in body.model_dump(include=body.model_fields_set).items():
            setattr(state, "webhook_target_url" if key == "target_url" else key, value)
        return webhook_config()

    @router.get("/subscriptions")
    def list_subscriptions() -> dict[str, Any]:
        return {"subscriptions": [s.public() for s in state.subscriptions()]}

    @router.post("/subscriptions", status_code=201)
    def subscribe(body: SubscriptionBody) -> Response:
        made: list[Any] = []

        def run() -> None:
            if body.meetings:
                made.extend(
                    state.subscribe_meetings(
                        body.properties if body.properties is not None else DEFAULT_SUBSCRIBED_PROPERTIES
                    )
                )
            elif body.eventType:
                made.append(state.subscribe(body.eventType, body.propertyName, active=body.active))
            else:
                raise SandboxError("Give eventType, or meetings: true.")

        refused = guarded(run)
        return refused or JSONResponse({"subscriptions": [s.public() for s in made]}, 201)

    @router.delete("/subscriptions", status_code=204)
    def clear_subscriptions() -> None:
        for sub in state.subscriptions():
            state.unsubscribe(sub.id)

    @router.get("/deliveries")
    def deliveries(wait: bool = False) -> dict[str, Any]:
        if wait:
            state.flush_deliveries()
        return {"deliveries": [d.public() for d in state.deliveries()]}

    @router.post("/deliveries/{delivery_id}/resend", status_code=202)
    def resend(delivery_id: str) -> Response:
        refused = guarded(lambda: state.resend(delivery_id))
        return refused or JSONResponse({"queued": delivery_id}, 202)

    @router.get("/settings")
    def get_settings() -> dict[str, Any]:
        return settings()

    @router.put("/settings")
    def put_settings(body: SettingsBody) -> Response:
        chosen = body.model_dump(include=body.model_fields_set)
        if chosen.get("duration_unit", "minutes") not in ("milliseconds", "minutes"):
            return JSONResponse({"error": "duration_unit must be milliseconds or minutes."}, 400)
        for key, value in chosen.items():
            if value is None and key not in NULLABLE_SETTINGS:
                return JSONResponse({"error": f"{key} cannot be null."}, 400)
            setattr(state, key, value)
        return JSONResponse(settings())

    scoped_token_route(router, state.add_token)
    return router
