"""What every part of the HubSpot simulator's state reads: the fields (all created here, under one
lock), settings, tokens and the rate limit, ids, contacts, host users and their meeting links,
faults and webhook signing.

The behaviour is built on it one concern a module, each class a subclass of what it uses, so the
type checker sees every dependency: `subscriptions` (on `Store`), `meetings` (on
`subscriptions`: a change notifies), `scheduler` (on `meetings`: a booking creates one);
`state.HubSpotState` is the lot.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from bookingsync.sandbox.background import Deliveries
from bookingsync.sandbox.clock import utc_now
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

from .records import (
    ALL_SCOPES,
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_LINK_ID,
    DEFAULT_LINK_SLUG,
    DEFAULT_PORTAL_ID,
    DEFAULT_TOKEN,
    INCREMENTS,
    Contact,
    HostUser,
    HubSpotMeeting,
    MeetingLink,
    Subscription,
    to_millis,
    zone,
)
from .webhooks import (
    WebhookSender,
    signed_headers,
)


class Store(Deliveries):
    """The fields and the accounts; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        tokens: dict[str, Iterable[str]] | None = None,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: int = DEFAULT_APP_ID,
        portal_id: int = DEFAULT_PORTAL_ID,
        webhook_target_url: str | None = None,
    ) -> None:
        self.now = now or utc_now
        self.client_secret = client_secret
        self.app_id = app_id
        self.portal_id = portal_id
        self.webhook_target_url = webhook_target_url
        self.max_concurrent_requests = 10
        self.settings_created_at: datetime | None = None
        # settings (see control.py for the HTTP view)
        self.duplicate_deliveries = 0
        self.retry_failed = 0
        self.retry_delay_seconds = 0.0
        self.timestamp_offset_ms = 0
        self.duration_unit = "milliseconds"
        self.search_requires_all_fields = True
        self.property_changes_on_creation = True
        self.rate_limit_per_ten_seconds: int | None = None
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._tokens = {t: frozenset(s) for t, s in (tokens or {DEFAULT_TOKEN: ALL_SCOPES}).items()}
        self._meetings: dict[str, HubSpotMeeting] = {}
        self._contacts: dict[str, Contact] = {}
        self._users: dict[str, HostUser] = {}
        self._links: dict[str, MeetingLink] = {}
        self._subscriptions: dict[int, Subscription] = {}
        self._calls: dict[str, list[datetime]] = {}
        self._next_id = 48_213_000_001
        self._next_contact = 901
        self._next_event = 1_000_000_001
        self._next_subscription = 400_001
        self._sender: WebhookSender = WebhookSender(self._sign, lambda: self.retry_delay_seconds)
        host = self.add_user("7001", "riley.host@sandbox-hubspot.example", "Riley", "Host")
        self.add_link(DEFAULT_LINK_SLUG, "Intro call", [host.user_id], link_id=DEFAULT_LINK_ID)

    def add_token(self, token: str, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens[token] = frozenset(scopes)

    def scopes_for(self, token: str) -> frozenset[str] | None:
        with self._lock:
            return self._tokens.get(token)

    def allow_request(self, token: str) -> bool:
        """A rolling ten-second window per token, when `rate_limit_per_ten_seconds` is set."""
        with self._lock:
            if self.rate_limit_per_ten_seconds is None:
                return True
            now = self.now()
            recent = [t for t in self._calls.get(token, []) if now - t < timedelta(seconds=10)]
            allowed = len(recent) < self.rate_limit_per_ten_seconds
            if allowed:
                recent.append(now)
            self._calls[token] = recent
            return allowed

    def _new_meeting_id(self) -> str:
        self._next_id += 1 + secrets.randbelow(97)  # increasing, with gaps
        return str(self._next_id)

    def contact_for(self, email: str, firstname: str = "", lastname: str = "") -> Contact:
        """The contact with `email` (case-insensitive), created on first use."""
        with self._lock:
            for contact in self._contacts.values():
                if contact.email.lower() == email.lower():
                    return contact
            self._next_contact += 1 + secrets.randbelow(13)
            contact = Contact(str(self._next_contact), email, firstname, lastname, self.now())
            self._contacts[contact.id] = contact
            return contact

    def contact(self, contact_id: str) -> Contact | None:
        with self._lock:
            return self._contacts.get(contact_id)

    def add_user(self, user_id: str, email: str, first_name: str, last_name: str) -> HostUser:
        with self._lock:
            user = HostUser(user_id, email, first_name, last_name)
            self._users[user_id] = user
            return user

    def add_link(
        self, slug: str, name: str, user_ids: list[str], *, link_id: str | None = None, **settings: Any
    ) -> MeetingLink:
        with self._lock:
            unknown = [u for u in user_ids if u not in self._users]
            if unknown or not user_ids:
                raise SandboxError(f"A link needs known users; unknown: {unknown}.")
            if "timezone" in settings:
                zone(settings["timezone"])
            if settings.get("start_increment", "MEETING_DURATION") not in INCREMENTS:
                raise SandboxError(f"start_increment must be one of {sorted(INCREMENTS)}.")
            link = MeetingLink(
                link_id or str(8_123_456 + 17 * len(self._links)),
                slug,
                name,
                user_ids[0],
                list(user_ids),
                self.now(),
                default_link=not self._links,
                **settings,
            )
            self._links[slug] = link
            return link

    def link(self, slug: str) -> MeetingLink | None:
        with self._lock:
            return self._links.get(slug)

    def links(self) -> list[MeetingLink]:
        with self._lock:
            return list(self._links.values())

    def users_of(self, link: MeetingLink) -> list[HostUser]:
        with self._lock:
            return [self._users[u] for u in link.user_ids]

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def _sign(self, url: str, body: bytes) -> dict[str, str]:
        timestamp = to_millis(self.now()) + self.timestamp_offset_ms
        return signed_headers(self.client_secret, url, body, timestamp)
