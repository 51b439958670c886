"""One HTTP policy for every provider: timeouts, retries, pacing and error translation.

Adapters never touch httpx errors or status codes themselves; they call `ProviderHttp.request`
and get a 2xx response back or one of our `ProviderError`s (models/errors.py).

    outcome                        action                                   when retries run out
    -----------------------------  ---------------------------------------  --------------------
    2xx                            return the response                      -
    3xx                            raise at once (we never follow redirects ProviderRejected
                                   to a host the config did not name)
    401, 403                       raise at once                            ProviderAuthError
    404                            raise at once                            ProviderNotFound
    other 4xx                      raise at once                            ProviderRejected
    429 + Retry-After <= max_wait  wait Retry-After (seconds or HTTP date)  RateLimited
    429 + Retry-After >  max_wait  raise at once so the caller reschedules  RateLimited
    429 without Retry-After        exponential backoff with jitter          RateLimited
    429 inside pacing.deferring    raise at once (a poll: the connection's  RateLimited
                                   back-off schedules the next read)
    5xx                            backoff, retry                           ProviderUnavailable
    timeout, connection error      backoff, retry                           ProviderUnavailable

Pacing: requests wait for a slot of the account's shared `Pacer` (adapters/pacing.py), so every
thread and, with a distributed backend, every process stays within the provider's rate together.
A 429 pushes the account's next slot back by its Retry-After (or the backoff), for every caller.
Inside `pacing.deferring(max_wait)` a slot further away raises `PaceDeferred` instead of sleeping.

Every error carries the provider's own message as parsed by the adapter's `error_message`.

Non-idempotent methods (POST, PATCH): a 5xx or a timeout after the request left us may mean the
provider acted, and several providers here (LeanData BookIt) have no idempotency key, so those
are raised at once instead of replayed, as `AnswerLost` (a ProviderUnavailable that tells the
worker to find the booking before writing again). A connection that never opened (connect error or connect
/pool timeout) and a 429 (refused before acting) are retried for every method. A caller that
knows a write is safe to replay passes `idempotent=True`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from bookingsync.adapters import pacing
from bookingsync.adapters.http_dates import parse_http_date, parse_retry_after
from bookingsync.models.errors import (
    AnswerLost,
    ProviderAuthError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)

log = logging.getLogger(__name__)

# Backoff before retry n (0-based) is drawn from [c/2, c] with c = min(MAX, BASE * 2**n):
# 0.5, 1, 2, 4 s for the default 4 retries — about 7 s worst case, short enough for a poll tick,
# and the jitter keeps many workers from retrying a recovering provider in lock-step.
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_MAX = 8.0
# The longest single wait we spend inside a worker thread; a provider asking for more gets a
# RateLimited so the scheduler can come back later instead of a thread blocked for an hour.
DEFAULT_MAX_WAIT = 30.0
DEFAULT_TIMEOUT = 15.0
# A host that does not accept a connection within this is down; no need to wait the full timeout.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 4
# Provider error bodies are quoted in messages people read; a whole HTML error page is not useful.
MAX_MESSAGE_CHARS = 300

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# The request never reached the provider, so replaying it is safe whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ProviderHttp:
    """A small synchronous client that applies the policy above to one provider."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        error_message: Callable[[httpx.Response], str],
        timeout: float = DEFAULT_TIMEOUT,
        # Called with every answer's `Date` header and our clock when it came: the provider's
        # clock skew is measured from it (adapters/skew.py, `SkewEstimate.observe_date`).
        observe_date: Callable[[str | None, datetime], None] | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        min_interval: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_wait: float = DEFAULT_MAX_WAIT,
        pacer: pacing.Pacer | None = None,
    ) -> None:
        self.provider = provider
        self._error_message = error_message
        self._max_retries = max(0, max_retries)
        self._sleep = sleep
        self._rng = rng
        self._wall_clock = wall_clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_wait = max_wait
        self._slept = 0.0
        if pacer is None and min_interval > 0:
            if sleep is time.sleep and monotonic is time.monotonic:
                pacer = pacing.shared(pacing.account_key(provider, base_url, headers), min_interval)
            elif monotonic is time.monotonic:
                # An injected sleep simulates time (tests record pacing instead of waiting): the
                # pacer's clock moves by what was "slept", and it is this client's own.
                pacer = pacing.LocalPacer(min_interval, clock=lambda: time.monotonic() + self._slept)
            else:
                pacer = pacing.LocalPacer(min_interval, clock=monotonic)
        self._pacer = pacer
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT)),
            transport=transport,
            follow_redirects=False,
        )
        self._observe_date = observe_date

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        method = method.upper()
        replayable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempt = 0
        while True:
            self._pace()
            try:
                response = self._client.request(method, path, params=params, json=json)
            except _RETRYABLE_TRANSPORT as exc:
                if not (replayable or isinstance(exc, _NOT_SENT)):
                    raise AnswerLost(self.provider, _describe(exc, method, path)) from exc
                if attempt >= self._max_retries:
                    raise ProviderUnavailable(self.provider, _describe(exc, method, path)) from exc
                self._wait(self._backoff(attempt), f"{_describe(exc, method, path)}")
                attempt += 1
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                # Not a passing fault (unsupported scheme, bad URL, undecodable body): no retry.
                raise ProviderUnavailable(self.provider, _describe(exc, method, path)) from exc

            if self._observe_date is not None:
                self._observe_date(response.headers.get("Date"), self._wall_clock())
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status == 429:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), reference=self._reference_time(response)
                )
                pause = retry_after if retry_after is not None else self._backoff(attempt)
                if self._pacer is not None:
                    self._pacer.defer(pause)  # the account is refused, not just this thread
                if pacing.deferring_wait() is not None:
                    raise RateLimited(self.provider, self._message(response), retry_after=retry_after)
                if retry_after is not None and retry_after > self._max_wait:
                    raise RateLimited(self.provider, self._message(response), retry_after=retry_after)
                if attempt >= self._max_retries:
                    raise RateLimited(self.provider, self._message(response), retry_after=retry_after)
                self._wait(pause, "HTTP 429")
                attempt += 1
                continue
            if status >= 500:
                if not replayable:
                    raise AnswerLost(self.provider, self._message(response), status=status)
                if attempt >= self._max_retries:
                    raise ProviderUnavailable(self.provider, self._message(response), status=status)
                self._wait(self._backoff(attempt), f"HTTP {status}")
                attempt += 1
                continue
            raise self._fatal(response)

    # -- policy pieces -------------------------------------------------------------------------

    def _fatal(self, response: httpx.Response) -> Exception:
        status = response.status_code
        if status in (401, 403):
            return ProviderAuthError(self.provider, self._message(response), status=status)
        if status == 404:
            return ProviderNotFound(self.provider, self._message(response), status=status)
        if 300 <= status < 400:
            where = response.headers.get("Location", "elsewhere")
            return ProviderRejected(
                self.provider,
                f"answered with a redirect to {where}; check the connection's base_url",
                status=status,
            )
        return ProviderRejected(self.provider, self._message(response), status=status)

    def _message(self, response: httpx.Response) -> str:
        # A body that does not match the documented error envelope must not hide the status.
        try:
            message = self._error_message(response)
        except Exception:  # noqa: BLE001 - the parser is the adapter's; any failure means "no message"
            message = ""
        if not message or not str(message).strip():
            message = response.text.strip() or response.reason_phrase or "no error message"
        message = str(message).strip()
        return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * (2**attempt))
        return ceiling / 2 + self._rng() * ceiling / 2

    def _wait(self, seconds: float, why: str) -> None:
        log.info("%s: %s; retrying in %.2fs", self.provider, why, seconds)
        self._nap(seconds)

    def _nap(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)
            self._slept += seconds

    def _pace(self) -> None:
        if self._pacer is None:
            return
        bound = pacing.deferring_wait()
        slot = self._pacer.reserve(self._max_wait if bound is None else bound)
        if not slot.claimed:
            if bound is not None:
                raise pacing.PaceDeferred(slot.wait)
            raise RateLimited(
                self.provider,
                f"our pacing of this account allows the next request in {slot.wait:.0f}s",
                status=None,
                retry_after=slot.wait,
            )
        self._nap(slot.wait)

    def _reference_time(self, response: httpx.Response) -> datetime:
        # An HTTP-date Retry-After is relative to the server's clock; its Date header avoids skew.
        return parse_http_date(response.headers.get("Date")) or self._wall_clock()


def _describe(exc: Exception, method: str, path: str) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = str(exc) or type(exc).__name__
    return f"{method} {path} {kind}: {detail}"


def response_json(provider: str, response: httpx.Response) -> Any:
    """The decoded body of a 2xx answer; a body that is not JSON is the provider's fault."""
    try:
        return response.json()
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
        snippet = response.text[:80].strip()
        raise ProviderUnavailable(
            provider,
            f"answered HTTP {response.status_code} with a body that is not JSON ({snippet!r})",
            status=response.status_code,
        ) from exc
