"""RocketLead Connect API simulator: lookups, availability, book and hard-delete, in memory.

Written only from RocketLead's developer documentation
(https://docs.rocketlead.io/developers/connect-api/), the Bookings page above all (its response schema runs to
the end: ``id``, ``name``, ``createdAt``, ``startDateTime``, ``endDateTime`` ... are documented
fields, not guesses). The control API lives in `control`.

Provider surface (``create_app``), every path also answering without its trailing ``/``:

* ``GET /connect/calendar/``, ``/connect/calendar/{id}``; ``GET /connect/resources/``,
  ``/connect/resources/{id}``; ``GET /connect/appointment_types/``,
  ``/connect/appointment_types/{id}``;
  ``GET /connect/tables/``, ``/connect/tables/{id}`` (the docs' quick-start call).
* ``GET /connect/availability/?calendarId&appointmentTypeId&resourceId?&start&end
  &includeUnavailable?&stepLength?`` → ``{"data": [slot, ...], "meta": {...}}``.
* ``POST /connect/calendar_bookings/`` → 201 with the booking object;
  ``DELETE /connect/calendar_bookings/{id}`` → 204, a hard delete.
* Auth ``Authorization: Bearer rocketlead_...``; scope ``read`` for GET/HEAD/OPTIONS, ``write``
  for POST/PATCH/PUT, ``admin`` for DELETE. Errors are ``{"statusCode": n, "message": "..."}``.

Ambiguities, and how they are resolved:

* Scopes are a ladder, as the docs' table reads ("All read + ...", "All write + ..."): a token's
  strongest scope decides. A mismatch → 403 ``"Forbidden: this API token lacks the <scope> scope
  required for <METHOD> requests."``. Every 401 (missing header, not ``Bearer``, a token not
  starting with ``rocketlead_``, unknown, revoked or expired) is ``{"statusCode": 401, "message":
  "Unauthorized"}``. A token's ``last_used_at`` is stamped on each authenticated request.
* Routing comes before auth (as in a NestJS app): an unknown path or an undocumented method
  answers 404 ``"Cannot <METHOD> <path>"`` even without a token. Every GET also answers HEAD
  (read scope, no body); OPTIONS routes nothing, so it is a 404 too. In particular there is no
  ``GET /connect/calendar_bookings/`` (no list endpoint is documented) and no ``PATCH`` of a
  booking; bookings are visible through the control API only.
* Lookup lists are plain JSON arrays (not documented; the objects are "Record<string, unknown>").
  Calendars carry their IANA zone as ``timezone``; lengths and buffers are minutes.
* Times go out as JavaScript ``toISOString()`` would write them: UTC, milliseconds, ``Z``. Times
  coming in (``start``/``end``, ``startDateTime``/``endDateTime``) must be ISO 8601 date-times
  *with* an offset; a naive or date-only value is a 400 (the strict reading: a naive time is
  ambiguous against the calendar's zone).
* ``wall_times`` (a setting, off by default): the other reading of "calendars carry IANA tzdata
  — read this for any local-time math". Slot and booking times go out as local wall times of
  the calendar's zone without an offset (``2027-10-31T02:00:00.000``; the repeated hour of an
  autumn change appears twice, in time order), and a booking may send them back that way: a
  local time in a fold is the reading whose slot its ``resourceSlotId`` names, and without
  one (or for a time in a gap) the booking is a 400.
* Availability: candidate starts lie on a grid of ``stepLength`` minutes (default
  ``state.step_minutes``, 30) counted from local midnight in the calendar's zone on the day of
  ``start``; a slot is ``bookingLength`` long and must fit inside ``[start, end]``. Slots starting
  before now are not returned. Without ``resourceId`` every resource mapped to both the calendar
  and the appointment type is offered, one slot per resource and start; slots are ordered by start,
  then resource name. ``currentBookings`` counts the resource's bookings overlapping the slot
  (both widened by ``bufferAfter``); ``available`` is ``currentBookings < maxParallelBookings``.
  The range may span at most 31 days; ``stepLength`` is an integer 5..1440.
* ``includeUnavailable``: the docs say full slots come back regardless, and tell clients to filter
  ``available: true`` themselves. So by default it is validated (``true``/``false``) and ignored:
  full slots always come back. ``state.include_unavailable_filters = True`` switches to the
  other reading, where ``includeUnavailable=false`` drops full slots.
* ``resourceSlotId`` is an opaque UUID naming one slot instance (resource, start, end); it is
  stable across fetches. A booking that sends one must send the matching times and resource.
* Booking validation, in order: a JSON object; ``calendarId``, ``startDateTime``,
  ``endDateTime``, ``resourceId``, ``appointmentTypeId`` required ("Validation failed: <field> is
  required"; the org is a resource-planner org, so the last two are required); string fields must
  be strings; times must parse; end after start; ``entryId``/``tableEntryId`` (both accepted,
  they must agree) optional. Unknown calendar, resource, appointment type or table entry → 404
  ``"<Thing> not found"``. The resource must be mapped to the calendar and the appointment type;
  the length must equal ``bookingLength`` (``dynamicLength`` is always false here); a sent
  ``resourceSlotId`` must match. Then, under the state's lock (the "transactional recheck"): a
  slot starting before now, or one already at ``maxParallelBookings``, → 400 ``"The selected time
  slot is no longer available"``. Unknown body fields are ignored; the legacy ``scheduleTypeId``
  / ``scheduleTypeSlotId`` are echoed as ``calendarScheduleTypeId`` / ``...SlotId`` and otherwise
  ignored. Off-grid starts are accepted (the grid only shapes what availability offers).
* Create answers 201 (undocumented; a client should accept any 2xx). Optional response fields are
  omitted when empty rather than sent as null; ``name`` is echoed only when sent. A linked lead
  adds ``tableEntryId``, ``tableId``, ``tableEntryData`` (``{fieldKey: {"value": v}}``, a
  guess), ``tableSchemaFields``, ``leadStateName`` and ``leadStateColor``.
* Delete is hard: the booking is gone, a second DELETE (or any unknown id) → 404 ``"Calendar
  booking not found"``; 204 with no body on success, as documented.
* RocketLead documents no rate-limit shape: an injected 429 answers ``{"statusCode": 429,
  "message": "Too Many Requests"}`` (a guess), with ``Retry-After`` only when the fault sets one.
  An injected 500 answers ``{"statusCode": 500, "message": "Internal server error"}``. Faults match
  the path exactly as the client sent it (documented paths end with ``/``).
* The availability response is the one "listing": a ``malformed`` fault appends one broken slot
  (``variant`` ``bad_start_time`` (default): ``startDateTime`` is ``"not-a-date"``;
  ``missing_available``: no ``available`` key), and a ``mutate`` fault (``offset`` 0) runs after
  the slots are computed, before they are sent: the classic fetch-then-someone-books race.
* Slot races (`race_next_booking`): the next booking POST matching the race first has its slot
  filled to capacity by bookings with ``source="form_widget"`` (someone booked through the form),
  so the transactional recheck answers the documented 400. The competing bookings stay, as they
  would. The flow events of the docs (booked / hasStarted / hasEnded / deleted) run inside
  RocketLead and reach no third party: the simulator does not model them.

One module per concern: `records` (the wire records, constants, time formats and errors), `store`
(tokens, catalog and leads in memory), `scheduling` (availability and bookings, built on the
store), `state` (`RocketLeadState`, the two together), `errors` (the error envelope,
authorization, request readers), `api` (the provider surface, `create_app`) and `control` (the
sandbox's own `/_sandbox` routes). Imports run one way: api → control, errors → state →
scheduling → store → records. The names the rest of the tree uses are re-exported here.
"""

from __future__ import annotations

from .api import create_app
from .records import (
    AVAILABILITY_PATH,
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_RESOURCE_IDS,
    DEFAULT_TABLE_ID,
    DEFAULT_TOKEN,
    NOT_AVAILABLE,
    ORGANIZATION_ID,
)
from .state import RocketLeadState

__all__ = [
    "AVAILABILITY_PATH",
    "DEFAULT_APPOINTMENT_TYPE_ID",
    "DEFAULT_CALENDAR_ID",
    "DEFAULT_RESOURCE_IDS",
    "DEFAULT_TABLE_ID",
    "DEFAULT_TOKEN",
    "NOT_AVAILABLE",
    "ORGANIZATION_ID",
    "RocketLeadState",
    "create_app",
]
