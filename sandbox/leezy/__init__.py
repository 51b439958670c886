"""Leezy simulator: meetings list API, webhook subscriptions and deliveries, in memory.

Written only from Leezy.ai's API documentation: the Meetings API page
(https://staging.leezy.ai/docs/api/meetings), the API overview and the webhook pages
(https://leezy.ai/docs/api/webhooks).

Provider surface (``create_app``):

* ``GET /api/v1/meetings`` (scope ``meetings:read``) with ``limit`` (default 20, 1..100),
  ``offset`` (default 0), ``since``, ``status``, ``chatbot_id``, ``upcoming``; the documented
  ``{"data": [...], "meta": {api_version, total, limit, offset, has_more, count}}`` envelope.
* ``POST /api/v1/webhooks/subscribe``, ``GET /api/v1/webhooks``, ``GET|DELETE
  /api/v1/webhooks/{id}`` (scope ``webhooks:manage``); deliveries in `webhooks`.
* Errors use ``{"error": <code>, "error_description": <sentence>}``: 400 ``invalid_request``,
  401 ``unauthorized``, 403 ``insufficient_scope``, 404 ``not_found``, 429
  ``rate_limit_exceeded`` (the documented body), 500 ``server_error``.

Ambiguities, and how they are resolved:

* Order of the list is not documented. The simulator sorts by ``updated_at`` then ``id``: a
  record updated while a client pages moves to the end of the list and shifts every later record
  one place towards the front, so an offset-paging client skips one unless it re-reads. This is
  the adversarial order on purpose.
* ``since`` means "updated after": strictly greater than. Without an offset it is read as UTC.
* ``upcoming=true`` keeps meetings whose ``start_time`` is after now (a meeting under way is not
  "future"). Only ``true``/``false`` (any case) are accepted.
* ``total`` counts every record matching the filters; ``has_more`` is ``offset + count < total``.
* Timestamps are ISO 8601 in UTC with ``Z``; microseconds are kept when present, so tests can
  build records whose ``updated_at`` differ by less than a second, or tie exactly.
* The 429 body is the documented one. The docs mention no ``Retry-After`` header: it is off by
  default and can be switched on (``retry_after_header``) or set per injected fault.
* Reschedules: the docs name no event. The simulator re-sends ``meeting.scheduled`` carrying the
  new times. ``cancel`` sends ``meeting.cancelled``, ``complete`` sends ``meeting.completed``.
* Subscribe answers 201 (RestHooks convention, the docs give no status); DELETE answers 204.
* A ``malformed`` fault appends one extra record to the page (``variant``: ``bad_start_time``
  (default) makes ``start_time`` ``"not-a-date"``, ``missing_attendee`` drops ``attendee``); it
  counts in ``count`` and ``total`` like any record the provider would send.

Control API (JSON, no auth) for tests and demos running the sandbox out of process: see
`control`.

One module per concern: `records` (the wire records and constants), `state` (meetings and
subscriptions in memory), `api` (the provider surface, `create_app`), `control` (the sandbox's own
`/_sandbox` routes) and `webhooks` (signed deliveries). Imports run one way: api → control →
state → records, webhooks. The names the rest of the tree uses are re-exported here.
"""

from __future__ import annotations

from .api import create_app
from .records import DEFAULT_TOKEN, MEETINGS_PATH
from .state import LeezyState
from .webhooks import SIGNATURE_PRODUCTION, SIGNATURE_STAGING

__all__ = [
    "DEFAULT_TOKEN",
    "MEETINGS_PATH",
    "SIGNATURE_PRODUCTION",
    "SIGNATURE_STAGING",
    "LeezyState",
    "create_app",
]
