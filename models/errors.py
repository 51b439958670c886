"""The root of every error bookingsync raises on purpose.

    BookingSyncError
    ├── ConfigError                  worker.config: the file, the key, the problem
    ├── NormaliseError               a provider record we cannot turn into a meeting
    ├── WebhookError (.status)       an inbound webhook we refuse
    │   ├── WebhookUnauthorized      401: bad or stale signature, wrong token
    │   ├── WebhookMalformed         400: not the JSON shape the provider documents
    │   └── WebhookTooLarge          413
    ├── ProviderError                an HTTP call to a provider that failed for good
    │   ├── ProviderUnavailable      5xx, timeouts, connection errors after the retries
    │   │   └── AnswerLost           a write reached the provider but its answer did not reach us:
    │   │                            it may have taken effect (find it before writing again)
    │   ├── RateLimited              429 after the retries (.retry_after)
    │   ├── ProviderAuthError        401/403: the credential or its scope
    │   ├── ProviderNotFound         404
    │   └── ProviderRejected         any other 4xx, with the provider's own message
    │       └── SlotUnavailable      the slot was taken between availability and booking
    └── RequestRefused (.status)     a request of the API or CLI that cannot be done as asked
        ├── NotFound                 404: no such meeting, event, delivery, subscription or item
        └── Conflict                 409: the thing is not in a state that allows it

Foreign errors (httpx, SQLAlchemy, pydantic) are translated into these at the boundary
that meets them, so callers only ever catch ours.
"""

from __future__ import annotations


class BookingSyncError(Exception):
    """Base of all errors bookingsync raises deliberately."""


class ConfigError(BookingSyncError):
    """The configuration cannot be used; the message names file, key and fix."""


class NormaliseError(BookingSyncError):
    """A provider record that cannot be turned into a canonical meeting."""


class WebhookError(BookingSyncError):
    status: int = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookUnauthorized(WebhookError):
    status = 401


class WebhookMalformed(WebhookError):
    status = 400


class WebhookTooLarge(WebhookError):
    status = 413


class ProviderError(BookingSyncError):
    """An HTTP exchange with a provider failed for good (after the retry policy)."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        prefix = f"{provider}: " if provider else ""
        suffix = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.provider = provider
        self.message = message
        self.status = status


class ProviderUnavailable(ProviderError):
    pass


class AnswerLost(ProviderUnavailable):
    """A non-idempotent write left us and no usable answer came back (5xx, timeout, connection
    closed, an unreadable 2xx): the provider may have acted. Never re-sent blindly."""


class RateLimited(ProviderError):
    def __init__(
        self, provider: str, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    pass


class ProviderNotFound(ProviderError):
    pass


class ProviderRejected(ProviderError):
    pass


class SlotUnavailable(ProviderRejected):
    pass


class RequestRefused(BookingSyncError):
    """A request of the HTTP API or the CLI that cannot be done as asked; says why."""

    status: int = 400


class NotFound(RequestRefused):
    status = 404


class Conflict(RequestRefused):
    status = 409
