"""HubSpot's v3 webhook signature (`X-HubSpot-Signature-v3`), as HubSpot describes it.

HubSpot, "Validating requests from HubSpot":
https://developers.hubspot.com/docs/api/webhooks/validating-requests

    source    = requestMethod + requestUri + requestBody + X-HubSpot-Request-Timestamp   (UTF-8)
    signature = base64(HMAC-SHA256(app client secret, source))

* `requestUri` is the full URL as HubSpot called it (scheme, host, path, query in the order
  received), with exactly the twelve percent-encodings of the documented table decoded
  (`%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ;`). Every other
  escape (`%20`, `%25`, `%2B`, `%3D`, `%26`, …) stays as received. The table is written in upper
  case; RFC 3986 makes hex digits case-insensitive, so `%3a` decodes as `%3A` does. The URL is
  scanned escape by escape, so `%253A` (an encoded `%` followed by `3A`) stays `%253A`.
* The timestamp is in milliseconds. The doc says reject one "older than 5 minutes"; we also
  reject one more than 5 minutes in the future, since a future stamp would stretch the replay
  window by as much as the sender likes.
* The older v1/v2 signatures are not accepted, even when present: they carry no timestamp, so
  a captured delivery could be replayed for ever. No client secret configured refuses everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from bookingsync.adapters.replay_window import check_sent_at
from bookingsync.models.errors import WebhookUnauthorized

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
# HubSpot's validating-requests page: "Reject the request if the timestamp is older than 5 minutes."
SIGNATURE_TOLERANCE = timedelta(minutes=5)
# The table in HubSpot's validating-requests page, keyed by the upper-case hex of the escape.
DECODED_ESCAPES: dict[str, str] = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def signed_uri(url: str) -> str:
    """The URL as HubSpot signs it: only the documented escapes decoded, all else untouched."""
    return _ESCAPE.sub(lambda m: DECODED_ESCAPES.get(m.group(1).upper(), m.group(0)), url)


def signature_v3(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + signed_uri(url).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_v3(
    headers: Mapping[str, str], body: bytes, secret: str | None, now: datetime, *, method: str, url: str
) -> None:
    """Raise WebhookUnauthorized unless the delivery carries a fresh, matching v3 signature."""
    if not secret:
        raise WebhookUnauthorized(
            "no webhook_secret (the HubSpot app's client secret) is configured for this connection, "
            "so no delivery can be trusted"
        )
    lower = {k.lower(): v for k, v in headers.items()}
    signature = (lower.get(SIGNATURE_HEADER.lower()) or "").strip()
    timestamp = (lower.get(TIMESTAMP_HEADER.lower()) or "").strip()
    if not signature or not timestamp:
        raise WebhookUnauthorized(
            f"the delivery lacks the {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header "
            "(only v3 signatures are accepted)"
        )
    if not url:
        raise WebhookUnauthorized(
            "the request URL is unknown, and HubSpot signs it; cannot verify the delivery"
        )
    check_sent_at(TIMESTAMP_HEADER, timestamp, now, tolerance=SIGNATURE_TOLERANCE, per_second=1000)
    expected = signature_v3(secret, method, url, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise WebhookUnauthorized(
            f"{SIGNATURE_HEADER} does not match this connection's client secret "
            "(check webhook_secret and, behind a proxy, server.public_url)"
        )
