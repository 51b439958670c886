"""The HubSpot simulator, one module per concern: `state` (the in-memory CRM, scheduler and
subscriptions), `api` (the provider surface, `create_app`), `errors` (the error envelope,
authorization, parameters), `search` (CRM search), `control` (the sandbox's own `/_sandbox`
routes) and `webhooks` (signed deliveries). Imports run one way: api → control, search, errors →
state → webhooks.

The names the rest of the tree uses are re-exported here.
"""

from __future__ import annotations

from .api import create_app
from .state import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_LINK_SLUG,
    DEFAULT_SUBSCRIBED_PROPERTIES,
    DEFAULT_TOKEN,
    MEETINGS_PATH,
    HubSpotState,
    parse_time,
)

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_LINK_SLUG",
    "DEFAULT_SUBSCRIBED_PROPERTIES",
    "DEFAULT_TOKEN",
    "MEETINGS_PATH",
    "HubSpotState",
    "create_app",
    "parse_time",
]
