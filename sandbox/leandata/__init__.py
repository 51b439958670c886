"""LeanData BookIt simulator: retrieve, reschedule and cancel meetings, in memory.

Written only from LeanData's published documents: the BookIt API OpenAPI file (the response
tables; https://bookit-api.leandata.com/) and LeanData's guides on managing and booking a meeting,
problem types, rate limits and authentication (https://docs.leandata.com). Booking (availability, create,
round robin) lives in `booking`; the control API in `control`.

Provider surface (``create_app``):

* ``GET /v1/meetings?prospectEmail=&start=&end=&status=`` → a JSON array, no pagination.
* ``GET /v1/meeting/{id}``, ``PATCH /v1/meeting/{id}`` (reschedule), ``DELETE /v1/meeting/{id}``
  (cancel; 200 with an empty body).
* Auth ``X-Api-Key``; missing or wrong → 401 ``{"message":"Unauthorized"}`` with
  ``x-amzn-ErrorType: UnauthorizedException``: the AWS API Gateway answers, not LeanData. Every
  response carries ``x-amzn-RequestId``, the only correlation handle the docs name.
* LeanData failures are ``{"error": <sentence>}``; "Validation Error:" prefixes input problems.

Ambiguities, and how they are resolved:

* Default time range: the OpenAPI description says both "from the time of the API call through
  the future" and "if no time filters are provided, all meetings ... will be returned". The
  simulator follows the first (the stricter one, so a client that forgets its lookback misses
  past meetings here too): without ``start`` only meetings starting at or after now are listed;
  ``end`` alone keeps that lower bound. Both bounds are inclusive and compare the scheduled start.
* ``start``/``end``: all digits → epoch milliseconds, otherwise ISO 8601 (no offset → UTC).
* Canceled meetings are listed (the docs: "returns scheduled and canceled meetings").
* ``prospectEmail`` matches case-insensitively (email addresses are, in practice).
* Response shape: the OpenAPI table's ``{"bookIt": {"status"}, "calendarEvent": {...}}`` by
  default; ``flat_shape`` switches to the manage-a-meeting note's ``{"id", "title", "status",
  "scheduledTime", "organizer_email", "attendees"}``.
* ``attendees[].organizer``/``self`` are "if provided by calendar provider": like Google
  Calendar, the simulator includes them only when true.
* ``bookIt.status``: ``scheduled`` when booked, ``rescheduled`` after a PATCH, ``canceled`` after
  DELETE; ``calendarEvent.status`` is ``confirmed`` or ``canceled``.
* Ids: opaque 52-character strings (base32hex, like Google Calendar event ids).
* Undocumented, guessed: PATCH of a canceled meeting → 400 ``{"error": "Meeting has already been
  canceled."}``; PATCH does not check availability; DELETE of a canceled meeting → 200 again
  ("DELETE is naturally idempotent"); 429 → ``{"message":"Too Many Requests"}`` and 500 →
  ``{"message":"Internal server error"}`` as the gateway sends them, without ``Retry-After``
  (LeanData documents no limit and no rate-limit header) unless a fault asks for one.
* A ``malformed`` fault appends one broken element to the listing: ``bad_start_time`` (default,
  ``start_time`` is ``"not-a-number"``) or ``missing_calendar_event`` (no ``calendarEvent``; in
  the flat shape, no ``scheduledTime``). A ``mutate`` fault fires after a listing is computed
  (``offset`` 0: there are no pages).

One module per concern: `state` (meetings, hosts and tokens in memory), `errors` (the two error
envelopes, the API-key check, body readers), `api` (the manage routes, `create_app`), `booking`
(availability and create) and `control` (the sandbox's own `/_sandbox` routes). Imports run one
way: api → booking, control → errors → state. The names the rest of the tree uses are re-exported
here.
"""

from __future__ import annotations

from .api import create_app
from .state import DEFAULT_API_KEY, LIST_PATH, LeanDataMeeting, LeanDataState, to_epoch_ms

__all__ = ["DEFAULT_API_KEY", "LIST_PATH", "LeanDataMeeting", "LeanDataState", "create_app", "to_epoch_ms"]
