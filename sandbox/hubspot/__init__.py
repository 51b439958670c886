"""The HubSpot simulator, one module per concern: `records` (the wire records, constants and time
formats); the state, built up one concern a class, each on what it uses: `store` (the fields,
tokens, contacts, users and links), `subscriptions` (webhook subscriptions and the events a
change fans out), `meetings` (the CRM's meetings), `scheduler` (slots and booking) and `state`
(`HubSpotState`, the lot); `api` (the provider surface, `create_app`), `errors` (the error
envelope, authorization, parameters), `search` (CRM search), `control` (the sandbox's own
`/_sandbox` routes) and `webhooks` (signed deliveries). Imports run one way: api → control,
search, errors → state → scheduler → meetings → subscriptions → store → records, webhooks.

The names the rest of the tree uses are re-exported here.
"""

from __future__ import annotations

from .api import create_app
from .records import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_LINK_SLUG,
    DEFAULT_SUBSCRIBED_PROPERTIES,
    DEFAULT_TOKEN,
    MEETINGS_PATH,
    parse_time,
)
from .state import HubSpotState

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
