"""The shared HTTP policy: status -> action, retries, Retry-After, pacing, error translation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from bookingsync.adapters.http import (
    DEFAULT_MAX_WAIT,
    ProviderHttp,
    parse_retry_after,
    response_json,
)
from bookingsync.models.errors import (
    ProviderAuthError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """sleep() advances monotonic(), so pacing and backoff are observable without waiting."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def monotonic(self) -> float:
        return self.t


def scripted(
    *steps: httpx.Response | Exception,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    """A handler answering each request with the next step; the last step repeats."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen) - 1, len(steps) - 1)]
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


def error_text(response: httpx.Response) -> str:
    return response.json()["error"]


def make(handler, clock: FakeClock | None = None, **kwargs) -> ProviderHttp:
    clock = clock or FakeClock()
    kwargs.setdefault("rng", lambda: 1.0)
    return ProviderHttp(
        provider="acme",
        base_url="https://api.acme.test",
        headers={"X-Api-Key": "k"},
        error_message=error_text,
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        wall_clock=lambda: NOW,
        **kwargs,
    )


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


# -- 429 ------------------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_waits_that_long_then_succeeds():
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "slow"}), ok())
    clock = FakeClock()
    response = make(handler, clock).request("GET", "/v1/x")
    assert response.json() == {"ok": True}
    assert clock.sleeps == [3.0]
    assert len(seen) == 2


def test_429_without_retry_after_backs_off_exponentially_with_jitter():
    handler, _ = scripted(*[httpx.Response(429, json={"error": "slow"})] * 3, ok())
    clock = FakeClock()
    make(handler, clock, rng=lambda: 0.0).request("GET", "/v1/x")
    # rng 0 takes the bottom of each [c/2, c] band: c = 0.5, 1, 2.
    assert clock.sleeps == [0.25, 0.5, 1.0]


def test_429_with_http_date_retry_after_is_measured_against_the_servers_date():
    handler, _ = scripted(
        httpx.Response(
            429,
            headers={"Retry-After": "Mon, 02 Mar 2026 09:00:10 GMT", "Date": "Mon, 02 Mar 2026 09:00:00 GMT"},
            json={"error": "slow"},
        ),
        ok(),
    )
    clock = FakeClock()
    make(handler, clock).request("GET", "/v1/x")
    assert clock.sleeps == [10.0]  # not hours: our own wall clock (NOW) is ignored when Date is given


def test_429_with_http_date_and_no_date_header_uses_our_clock():
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "Mon, 02 Mar 2026 12:00:07 GMT"}, json={"error": "slow"}),
        ok(),
    )
    clock = FakeClock()
    make(handler, clock).request("GET", "/v1/x")
    assert clock.sleeps == [7.0]


def test_429_asking_for_longer_than_max_wait_raises_at_once_for_the_caller_to_reschedule():
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "quota spent"})
    )
    clock = FakeClock()
    with pytest.raises(RateLimited) as caught:
        make(handler, clock).request("GET", "/v1/x")
    assert caught.value.retry_after == 3600.0
    assert "quota spent" in str(caught.value)
    assert clock.sleeps == [] and len(seen) == 1
    assert DEFAULT_MAX_WAIT < 3600


def test_429_exhausted_raises_rate_limited_with_the_last_retry_after():
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"}))
    with pytest.raises(RateLimited) as caught:
        make(handler, max_retries=2).request("GET", "/v1/x")
    assert caught.value.retry_after == 2.0
    assert caught.value.status == 429 and caught.value.provider == "acme"
    assert len(seen) == 3


def test_429_on_post_is_retried_because_the_provider_refused_before_acting():
    handler, seen = scripted(httpx.Response(429, json={"error": "slow"}), ok())
    make(handler).request("POST", "/v1/meeting", json={"a": 1})
    assert len(seen) == 2


# -- 5xx, timeouts, connection errors ----------------------------------------------------------


def test_5xx_then_success_returns_the_success():
    handler, seen = scripted(
        httpx.Response(502, text="bad gateway"), httpx.Response(503, json={"error": "x"}), ok()
    )
    clock = FakeClock()
    assert make(handler, clock).request("GET", "/v1/x").status_code == 200
    assert clock.sleeps == [0.5, 1.0]
    assert len(seen) == 3


def test_5xx_exhausted_raises_unavailable_with_the_provider_message():
    handler, seen = scripted(httpx.Response(500, json={"error": "database on fire"}))
    with pytest.raises(ProviderUnavailable) as caught:
        make(handler, max_retries=3).request("GET", "/v1/x")
    assert caught.value.status == 500
    assert "database on fire" in str(caught.value)
    assert len(seen) == 4


def test_backoff_is_capped():
    handler, _ = scripted(httpx.Response(503, json={"error": "x"}))
    clock = FakeClock()
    with pytest.raises(ProviderUnavailable):
        make(handler, clock, max_retries=7).request("GET", "/v1/x")
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_timeout_then_success():
    handler, seen = scripted(httpx.ReadTimeout("read timed out"), ok())
    assert make(handler).request("GET", "/v1/x").status_code == 200
    assert len(seen) == 2


def test_connection_error_then_success():
    handler, seen = scripted(httpx.ConnectError("refused"), ok())
    assert make(handler).request("GET", "/v1/x").status_code == 200
    assert len(seen) == 2


def test_timeouts_exhausted_raise_unavailable_not_an_httpx_error():
    handler, seen = scripted(httpx.ReadTimeout("read timed out"))
    with pytest.raises(ProviderUnavailable) as caught:
        make(handler, max_retries=2).request("GET", "/v1/x")
    assert "timed out" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(seen) == 3


def test_post_is_not_replayed_after_a_5xx_or_a_read_timeout():
    for step in (httpx.Response(503, json={"error": "x"}), httpx.ReadTimeout("lost")):
        handler, seen = scripted(step, ok())
        with pytest.raises(ProviderUnavailable):
            make(handler).request("POST", "/v1/meeting", json={})
        assert len(seen) == 1


def test_post_is_replayed_when_the_connection_never_opened():
    handler, seen = scripted(httpx.ConnectError("refused"), ok())
    assert make(handler).request("POST", "/v1/meeting", json={}).status_code == 200
    assert len(seen) == 2


def test_post_marked_idempotent_is_replayed_after_a_5xx():
    handler, seen = scripted(httpx.Response(503, json={"error": "x"}), ok())
    assert make(handler).request("POST", "/v1/x", json={}, idempotent=True).status_code == 200
    assert len(seen) == 2


def test_a_non_transient_httpx_error_is_translated_without_retry():
    handler, seen = scripted(httpx.UnsupportedProtocol("no such scheme"))
    with pytest.raises(ProviderUnavailable):
        make(handler).request("GET", "/v1/x")
    assert len(seen) == 1


# -- other 4xx: fatal at once -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderNotFound),
        (400, ProviderRejected),
        (409, ProviderRejected),
        (422, ProviderRejected),
    ],
)
def test_4xx_is_fatal_at_once_and_carries_the_provider_message(status, error):
    handler, seen = scripted(httpx.Response(status, json={"error": "Meeting not found here"}))
    clock = FakeClock()
    with pytest.raises(error) as caught:
        make(handler, clock).request("GET", "/v1/x")
    assert caught.value.status == status
    assert caught.value.message == "Meeting not found here"
    assert len(seen) == 1 and clock.sleeps == []


def test_an_error_body_the_parser_cannot_read_still_yields_a_message():
    handler, _ = scripted(httpx.Response(400, text="<html>Bad Request</html>"))
    with pytest.raises(ProviderRejected) as caught:
        make(handler).request("GET", "/v1/x")
    assert caught.value.message == "<html>Bad Request</html>"


def test_a_redirect_is_not_followed():
    handler, seen = scripted(httpx.Response(302, headers={"Location": "https://elsewhere.test/"}))
    with pytest.raises(ProviderRejected) as caught:
        make(handler).request("GET", "/v1/x")
    assert "elsewhere.test" in str(caught.value) and "base_url" in str(caught.value)
    assert len(seen) == 1


# -- the client itself --------------------------------------------------------------------------


def test_requests_carry_headers_base_url_and_an_explicit_timeout():
    handler, seen = scripted(ok())
    make(handler, timeout=12.0).request("GET", "/v1/meetings", params={"prospectEmail": "a@b.co"})
    request = seen[0]
    assert str(request.url) == "https://api.acme.test/v1/meetings?prospectEmail=a%40b.co"
    assert request.headers["X-Api-Key"] == "k"
    assert request.extensions["timeout"] == {"connect": 5.0, "read": 12.0, "write": 12.0, "pool": 12.0}


def test_min_interval_paces_consecutive_requests():
    handler, _ = scripted(ok())
    clock = FakeClock()
    http = make(handler, clock, min_interval=0.2)
    for _ in range(3):
        http.request("GET", "/v1/x")
    assert clock.sleeps == pytest.approx([0.2, 0.2])
    clock.t += 5  # idle longer than the interval: no wait
    http.request("GET", "/v1/x")
    assert len(clock.sleeps) == 2


def test_response_json_translates_a_non_json_body():
    with pytest.raises(ProviderUnavailable):
        response_json("acme", httpx.Response(200, text="<html>maintenance</html>"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
        ("Mon, 02 Mar 2026 12:01:00 GMT", 60.0),
        ("Mon, 02 Mar 2026 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, reference=NOW) == expected
