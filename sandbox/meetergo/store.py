"""What every part of the Meetergo simulator's state reads: the fields (all created here, under one
lock), credentials, users, meeting types, settings, the rate limit and faults.

The behaviour is built on it one concern a module, each class a subclass of what it uses, so the
type checker sees every dependency: `wire` and `availability` (on `Store`), `subscriptions` (on
`wire`), `appointments` (on `availability` and `subscriptions`); `state.MeetergoState` is the lot.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from bookingsync.sandbox.background import Deliveries
from bookingsync.sandbox.clock import aware, utc_now
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

from .records import (
    DEFAULT_COMPANY_ID,
    DEFAULT_PLATFORM_KEY,
    DEFAULT_TOKEN,
    DEFAULT_USER_ID,
    LIST_PATH,
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_MINUTE,
    BusyBlock,
    Credential,
    MeetergoAppointment,
    MeetergoMeetingType,
    MeetergoUser,
    MeetergoWebhook,
    ProvisionalBooking,
    default_meeting_types,
    default_users,
    is_platform_key,
)
from .webhooks import (
    SHAPE_FLAT,
    WebhookSender,
)


class Store(Deliveries):
    """The fields and the accounts; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        company_id: str = DEFAULT_COMPANY_ID,
        users: Iterable[MeetergoUser] | None = None,
        meeting_types: Iterable[MeetergoMeetingType] | None = None,
        personal_tokens: Mapping[str, str] | None = None,
        platform_keys: Iterable[str] = (DEFAULT_PLATFORM_KEY,),
    ) -> None:
        self.now = now or utc_now
        self.company_id = company_id
        # Settings (all switchable over the control API).
        self.payload_shape = SHAPE_FLAT
        self.duplicate_deliveries = False
        self.booking_type_style = "reference"
        self.reschedule_cancels_old = True
        self.hide_cancelled = False
        self.calendar_sync_lag_seconds = 0.0
        self.reject_unknown_fields = True
        self.rate_limit_enabled = False
        self.rate_limit_per_minute = RATE_LIMIT_PER_MINUTE
        self.rate_limit_burst = RATE_LIMIT_BURST
        self.retry_after_header = False
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._users = {u.id: u for u in (users if users is not None else default_users())}
        self._meeting_types = {
            m.id: m for m in (meeting_types if meeting_types is not None else default_meeting_types())
        }
        self._credentials: dict[str, Credential] = {}
        for token, user_id in (personal_tokens or {DEFAULT_TOKEN: DEFAULT_USER_ID}).items():
            self.add_personal_token(token, user_id)
        for key in platform_keys:
            self.add_platform_key(key)
        self._appointments: dict[str, MeetergoAppointment] = {}
        self._provisional: dict[str, ProvisionalBooking] = {}
        self._busy: list[BusyBlock] = []
        self._webhooks: dict[str, MeetergoWebhook] = {}
        self._buckets: dict[str, tuple[float, datetime]] = {}
        self._round_robin_counts: dict[str, int] = {}
        self._sender: WebhookSender = WebhookSender()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def add_personal_token(self, token: str, user_id: str = DEFAULT_USER_ID) -> None:
        if not token.startswith("rgo-"):
            raise SandboxError("Personal access tokens start with 'rgo-'.")
        with self._lock:
            self._credentials[token] = Credential(user_id=user_id)

    def add_platform_key(self, key: str | None = None, expires_at: datetime | None = None) -> str:
        """Register a platform key (``ak_live:<uuid>:<secret>``); a new one if `key` is None."""
        key = key or f"ak_live:{uuid.uuid4()}:{secrets.token_hex(16)}"
        if not is_platform_key(key):
            raise SandboxError("Platform API keys look like ak_live:<uuid>:<secret>.")
        with self._lock:
            self._credentials[key] = Credential(
                user_id=None, expires_at=aware(expires_at) if expires_at else None
            )
        return key

    def credential(self, token: str) -> Credential | None:
        with self._lock:
            return self._credentials.get(token)

    def add_user(self, user: MeetergoUser) -> None:
        with self._lock:
            self._users[user.id] = user

    def user(self, user_id: str) -> MeetergoUser | None:
        with self._lock:
            return self._users.get(user_id)

    def users(self) -> list[MeetergoUser]:
        with self._lock:
            return list(self._users.values())

    def add_meeting_type(self, meeting_type: MeetergoMeetingType) -> None:
        with self._lock:
            self._meeting_types[meeting_type.id] = meeting_type

    def meeting_type(self, meeting_type_id: str) -> MeetergoMeetingType | None:
        with self._lock:
            return self._meeting_types.get(meeting_type_id)

    def meeting_types(self) -> list[MeetergoMeetingType]:
        with self._lock:
            return list(self._meeting_types.values())

    def allow_request(self, token: str) -> bool:
        """Take one token from the credential's bucket (burst deep, refilled per minute)."""
        with self._lock:
            if not self.rate_limit_enabled:
                return True
            now = self.now()
            level, at = self._buckets.get(token, (float(self.rate_limit_burst), now))
            refill = max((now - at).total_seconds(), 0.0) * self.rate_limit_per_minute / 60.0
            level = min(float(self.rate_limit_burst), level + refill)
            if level < 1.0:
                self._buckets[token] = (level, now)
                return False
            self._buckets[token] = (level - 1.0, now)
            return True

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_page(self, page: int, action: Callable[[], None]) -> None:
        """Run `action` once the next listing of `page` is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=page, action=action, path=LIST_PATH))

    def _require_meeting_type(self, meeting_type_id: str) -> MeetergoMeetingType:
        mt = self._meeting_types.get(meeting_type_id)
        if mt is None:
            raise SandboxError(
                f"The sandbox has no meeting type {meeting_type_id!r}; known: "
                f"{', '.join(self._meeting_types)}."
            )
        return mt
