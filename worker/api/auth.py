"""API keys: who may read and who may also act.

Keys come from the config's `[[api_keys]]` (`id`, `key`, `scopes`). The HTTP API takes one as
`Authorization: Bearer <key>`; the status page also takes a session cookie, made when a person
types a key into its sign-in form. The cookie holds the key's id and an HMAC made with the key
(never the key itself), so removing a key from the config ends its sessions too.

    no key, or one not configured   401  (WWW-Authenticate: Bearer)
    a key without the scope         403
    `write` includes `read`.

Keys are compared in constant time. The cookie is HttpOnly and SameSite=Strict, so another site
cannot make a signed-in browser post to the status page; its forms carry a token derived from
the session as well.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bookingsync.models.errors import RequestRefused
from bookingsync.worker.config import ApiKeyConfig, Config

SESSION_COOKIE = "bookingsync_session"
READ, WRITE = "read", "write"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from the config's `[[api_keys]]`, as `Authorization: Bearer <key>`.",
)


class Unauthorized(RequestRefused):
    status = 401


class Forbidden(RequestRefused):
    status = 403


def _mac(key: ApiKeyConfig, purpose: str) -> str:
    return hmac.new(
        key.key.get_secret_value().encode(), f"bookingsync-status-page:{purpose}".encode(), hashlib.sha256
    ).hexdigest()


def allows(key: ApiKeyConfig, scope: str) -> bool:
    return scope in key.scopes or (scope == READ and WRITE in key.scopes)


class Keys:
    """The configured keys, looked up by the secret presented or by a session cookie."""

    def __init__(self, cfg: Config) -> None:
        self._keys = cfg.api_keys

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def by_secret(self, presented: str) -> ApiKeyConfig | None:
        found = None
        for key in self._keys:  # no early exit: the time taken does not say which key came close
            if hmac.compare_digest(key.key.get_secret_value().encode(), presented.encode()):
                found = key
        return found

    def session_value(self, key: ApiKeyConfig) -> str:
        return f"{key.id}.{_mac(key, 'session')}"

    def by_session(self, value: str | None) -> ApiKeyConfig | None:
        key_id, _, mac = (value or "").rpartition(".")  # the MAC is hex; an id may hold dots
        key = next((k for k in self._keys if k.id == key_id), None)
        if key is None or not hmac.compare_digest(_mac(key, "session"), mac):
            return None
        return key

    def form_token(self, key: ApiKeyConfig) -> str:
        return _mac(key, "form")

    def check_form_token(self, key: ApiKeyConfig, token: str) -> bool:
        return hmac.compare_digest(self.form_token(key), token)

    def bearer_key(self, credentials: HTTPAuthorizationCredentials | None) -> ApiKeyConfig:
        if not self._keys:
            raise Unauthorized(
                "no API keys are configured; add an [[api_keys]] entry (id, key, scopes) to the config"
            )
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
        key = self.by_secret(credentials.credentials)
        if key is None:
            raise Unauthorized("that API key is not configured")
        return key


def require(keys: Keys, scope: str) -> Callable[..., ApiKeyConfig]:
    """A FastAPI dependency: the bearer key, which must carry `scope`."""

    def dependency(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKeyConfig:
        key = keys.bearer_key(credentials)
        if not allows(key, scope):
            raise Forbidden(f"API key {key.id!r} has no {scope!r} scope")
        return key

    return dependency


def page_key(keys: Keys, request: Request) -> ApiKeyConfig | None:
    """The status page's signed-in key: the session cookie, else a bearer header (for curl)."""
    key = keys.by_session(request.cookies.get(SESSION_COOKIE))
    if key is None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and presented:
            key = keys.by_secret(presented.strip())
    return key
