"""meetergo v4 simulator: bookings, appointments, provisional bookings and webhooks, in memory.

Written only from meetergo's developer documentation (https://developer.meetergo.com/) and the
API reference page of ``POST /v4/booking``
(https://developer.meetergo.com/api-reference/bookings/create-booking). Booking and availability live in
`booking`, the control API in `control`, deliveries in `webhooks`.

Provider surface (``create_app``), base ``/v4`` except the webhook management routes:

* ``GET /v4/booking-availability``, ``POST /v4/booking``, ``GET
  /v4/provisional-booking/paginated`` (`booking`).
* ``GET /v4/appointment/paginated?page=&pageSize=`` → ``{"appointments": [...], "total"}``;
  ``GET /v4/appointment/today``, ``GET /v4/appointment/current``, ``GET /v4/appointment/{id}``.
* Cancel: ``DELETE /v4/appointment/{id}`` (the docs; 204) and ``POST
  /v4/appointment/{id}/cancel`` (what meetergo's MCP server calls; 201 with the appointment).
  Reschedule: ``POST /v4/booking`` with ``rescheduledFromId`` (the docs' pattern) and ``POST
  /v4/appointment/{id}/reschedule`` (the MCP server's; 201 with the appointment).
* ``POST|GET /webhooks``, ``PATCH|DELETE /webhooks/{id}`` at the host root, as the "Managing
  webhooks" page writes them; at most `MAX_WEBHOOKS` (6) → 406 "Limit reached".
* Auth: ``Authorization: Bearer rgo-…`` (personal token, acts as its owner, never reads
  ``x-meetergo-api-user-id``) or ``Bearer ak_live:<uuid>:<secret>`` (platform key; every
  endpoint then needs ``x-meetergo-api-user-id``, else 400 "Missing required header
  'x-meetergo-api-user-id' for API key authentication"). 401s: "Missing authorization header",
  "Invalid API key", "API key has expired".
* Errors use the documented envelope ``{"statusCode", "message", "error", "errors"?}``;
  validation failures are 400 ``"Validation failed"`` with ``errors: [{"field", "message"}]``.

Ambiguities, and how they are resolved (every "guess" is not in the stored docs):

* Rate limit: a token bucket per credential, `RATE_LIMIT_BURST` (200) deep, refilled at
  `RATE_LIMIT_PER_MINUTE` (100) a minute, **off by default** (``rate_limit_enabled``). The 429
  body is the documented one; no ``Retry-After`` is documented, so none is sent unless
  ``retry_after_header`` is on or an injected fault names one. Unhandled 500s answer NestJS's
  ``{"statusCode": 500, "message": "Internal server error"}`` (guess).
* Platform key with an ``x-meetergo-api-user-id`` naming no user of the company → 403
  ``"User does not belong to this company"`` (guess). The header is required on every endpoint
  ("most endpoints" in the docs; the sandbox cannot tell which are the exceptions).
* Visibility (guess): an ``admin`` user (the default user is one) sees every appointment of the
  company; a ``member`` sees the appointments it hosts. Others answer 404.
* Appointment list order (guess): by start, then id, ascending. A reschedule therefore moves a
  record across pages, and a page-number client can miss one unless it re-reads: adversarial
  on purpose. ``page`` counts from 0 (like the n8n node), ``pageSize`` defaults to 10 and may be
  1..100; other query parameters are ignored. ``total`` counts every listed appointment.
* Cancelled appointments stay listed with ``cancel`` set (the documented field only makes sense
  that way); ``hide_cancelled`` drops them instead, to test the other reading.
* Appointment fields: ``id``, ``secret``, ``ics``, ``meetingInfo``, ``hostingInfo{mainHost,
  meetingLink, googleEventId, calendarSyncProviders}``, ``cancel{actionSource, actionAt,
  actionBy, reason}``, ``crmOptions`` and ``total`` are documented. Guessed: ``ics`` holds the
  iCalendar text; ``meetingInfo`` = ``{start, end, duration, title, description, channel,
  location, meetingLink, timezone, attendees[]}``; ``hostingInfo`` also carries ``hostIds`` and
  ``coHosts``; the top level also ``meetingTypeId``, ``companyId``, ``rescheduledAt``,
  ``rescheduledFromId``, ``createdAt``, ``updatedAt``. ``crmOptions`` is ``{}``.
* Times: appointment and webhook ``start``/``end`` carry the meeting type's zone offset (the
  documented example shows ``+01:00``); ``createdAt``/``updatedAt``/``actionAt`` are UTC with
  ``Z``; availability slots are UTC ``Z`` ("All API times are in UTC by default").
* Cancelling an already cancelled appointment changes nothing and sends no webhook (204/201
  again), so the docs' "book the new one, then cancel the old one" pattern never fails.
* ``cancel.actionSource`` is ``"api"`` for the API, ``"host"``/``"attendee"`` from the control
  API; ``actionBy`` the acting user's id or the attendee's email (guesses).
* Reschedule webhooks: ``booking_rescheduled`` carries the new appointment plus
  ``originalStart``/``originalEnd`` (names guessed from "includes both the original start
  time") and ``rescheduledFromId`` (the old id, equal to ``id`` for an in-place move). A
  reschedule through ``rescheduledFromId`` cancels the old appointment (``cancel.reason``
  "Rescheduled", ``actionSource`` "reschedule") without a ``booking_cancelled``, and the
  successor sends ``booking_rescheduled`` only (no ``booking_created``); with
  ``reschedule_cancels_old`` off the old one stays until the client cancels it.
  ``/reschedule`` moves the appointment in place (same id).
* ``booking_cancelled`` = the ``booking_created`` fields with ``isCancelled: true`` plus
  ``cancel`` ("plus cancellation details").
* ``/v4/appointment/today`` (start on today's UTC date) and ``/current`` (under way now) answer
  bare arrays of appointments, cancelled ones left out (guesses; the docs only name them).
* The appointment ``secret`` ("cancel or reschedule without authentication") is returned and
  sent in webhooks, but no unauthenticated route takes it: the docs do not say which one does.
* Webhook subscriptions come from the control API or ``POST /webhooks``; the endpoint URL is
  kept verbatim, query and all, so a receiver can carry its own secret token in it (the only
  way to authenticate deliveries, which are unsigned). See `webhooks`.
* Python API: `MeetergoState.reschedule` moves in place unless ``new_id=True``; the control
  route defaults to ``new_id: true`` (the docs' successor pattern, as meetergo's UI would).
* A ``malformed`` fault adds one broken appointment to a listing page (``variant``
  ``bad_start`` (default): ``meetingInfo.start`` is ``"not-a-date"``; ``missing_meeting_info``:
  no ``meetingInfo``); it counts in ``total``. A ``mutate`` fault's ``offset`` is the page number.

One module per concern: `records` (the wire records, constants and time formats); the state,
built up one concern a class, each on what it uses: `store` (the fields, credentials, users,
meeting types, settings), `wire` (how an appointment is written), `availability` (busy times,
slots, host choice), `subscriptions` (webhooks, sent by `webhooks`), `appointments` (book,
reschedule, cancel, provisional bookings, listing) and `state` (`MeetergoState`, the lot);
`errors` (the error envelope, authorization, request readers), `api` (the provider surface,
`create_app`), `booking` (the booking routes) and `control` (the sandbox's own `/_sandbox`
routes, bodies in `control_bodies`). Imports run one way: api → booking, control → errors →
state → appointments → availability, subscriptions → wire → store → records, webhooks. The
names the rest of the tree uses are re-exported here.
"""

from __future__ import annotations

from .api import create_app
from .records import (
    DEFAULT_PLATFORM_KEY,
    DEFAULT_PLATFORM_USER_ID,
    DEFAULT_TOKEN,
    DEFAULT_USER_ID,
    DOUBLE_OPT_IN_MEETING_TYPE_ID,
    HOST_CONFIRMATION_MEETING_TYPE_ID,
    LIST_PATH,
    MEETING_TYPE_ID,
    ROUND_ROBIN_MEETING_TYPE_ID,
    ROUND_ROBIN_QUEUE_ID,
    SECOND_USER_ID,
    MeetergoMeetingType,
)
from .state import MeetergoState

__all__ = [
    "DEFAULT_PLATFORM_KEY",
    "DEFAULT_PLATFORM_USER_ID",
    "DEFAULT_TOKEN",
    "DEFAULT_USER_ID",
    "DOUBLE_OPT_IN_MEETING_TYPE_ID",
    "HOST_CONFIRMATION_MEETING_TYPE_ID",
    "LIST_PATH",
    "MEETING_TYPE_ID",
    "ROUND_ROBIN_MEETING_TYPE_ID",
    "ROUND_ROBIN_QUEUE_ID",
    "SECOND_USER_ID",
    "MeetergoMeetingType",
    "MeetergoState",
    "create_app",
]
