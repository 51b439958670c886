"""HubSpot webhook deliveries: event batches, the v1 and v3 signatures, and a background sender.

Follows HubSpot's "Validating requests from HubSpot"
(https://developers.hubspot.com/docs/api/webhooks/validating-requests) and the v3 signature
changelog (https://developers.hubspot.com/changelog/introducing-version-3-of-webhook-signatures):

* A delivery is a POST of a JSON **array** of events (the page's example body is an array). Each
  event carries ``eventId``, ``subscriptionId``, ``portalId``, ``appId``, ``occurredAt`` (epoch
  ms), ``subscriptionType``, ``attemptNumber`` (0 on the first attempt, as in the example),
  ``objectId`` (an integer), ``changeSource``; object events add ``objectTypeId`` (``"0-47"`` for
  meetings); ``object.propertyChange`` adds ``propertyName``/``propertyValue`` (a string);
  ``object.creation`` carries ``changeFlag: "NEW"`` (the example's value) and ``object.deletion``
  ``changeFlag: "DELETED"``.
* Headers: ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, method + URI + body +
  timestamp)) with ``X-HubSpot-Request-Timestamp`` (epoch **milliseconds**, like ``occurredAt``).
  "For backwards compatibility, requests from HubSpot also include older versions of the
  signature": CRM object subscriptions are ``v1``, so ``X-HubSpot-Signature-Version: v1`` and
  ``X-HubSpot-Signature`` = hex(SHA-256(client secret + body)) are sent too.
* The URI in the v3 string is the full target URL exactly as the sender calls it (scheme, host,
  port, path, query), with the characters the page lists (``%3A`` ... ``%3B``) decoded, because
  that is what a receiver following the page reconstructs.
* Retries: the pages reachable here document none. ``retry_failed`` (state setting) re-sends a
  failed batch (non-2xx or no answer) that many times with ``attemptNumber`` + 1 and a fresh
  timestamp and signature; ``duplicate_deliveries`` re-sends even successful batches, to test a
  receiver's de-duplication on ``eventId``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bookingsync.sandbox.background import AttemptSender, Outcome

# A receiver that has not answered in this long is recorded as a failed attempt.
DELIVERY_TIMEOUT_SECONDS = 5.0

# The table in HubSpot's validating-requests page: encoded sequences a v3 verifier decodes in the URI.
V3_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def v3_uri(url: str) -> str:
    """`url` with the sequences of the documented table decoded (either hex case)."""
    out, i = [], 0
    while i < len(url):
        chunk = url[i : i + 3].upper()
        if url[i] == "%" and chunk in V3_DECODED:
            out.append(V3_DECODED[chunk])
            i += 3
        else:
            out.append(url[i])
            i += 1
    return "".join(out)


def sign_v3(client_secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> str:
    source = method.upper().encode() + v3_uri(url).encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(client_secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_v1(client_secret: str, body: bytes) -> str:
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def signed_headers(client_secret: str, url: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-Version": "v1",
        "X-HubSpot-Signature": sign_v1(client_secret, body),
        "X-HubSpot-Signature-v3": sign_v3(client_secret, "POST", url, body, timestamp_ms),
        "X-HubSpot-Request-Timestamp": str(timestamp_ms),
    }


def encode_batch(events: Sequence[Mapping[str, Any]]) -> bytes:
    return json.dumps(list(events), separators=(",", ":")).encode()


@dataclass
class DeliveryAttempt(Outcome):
    delivery_id: str  # one per batch; re-sends of the batch keep it
    attempt_number: int
    target_url: str
    event_ids: list[int]
    headers: dict[str, str]
    body: str


@dataclass
class Batch:
    delivery_id: str
    target_url: str
    events: list[dict[str, Any]]
    attempt_number: int = 0
    retries_left: int = 0
    duplicates_left: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def at_attempt(self, number: int) -> list[dict[str, Any]]:
        return [e | {"attemptNumber": number} for e in self.events]


def new_delivery_id() -> str:
    return f"dlv_{secrets.token_hex(8)}"


class WebhookSender(AttemptSender[Batch, DeliveryAttempt]):
    """POSTs batches from one daemon thread, so the change that caused them never waits.

    `sign` turns (url, body) into headers at send time, so every attempt carries a fresh
    timestamp; `retry_delay` is read before each re-send.
    """

    def __init__(
        self, sign: Callable[[str, bytes], dict[str, str]], retry_delay: Callable[[], float] = lambda: 0.0
    ) -> None:
        super().__init__("hubspot-webhooks", DELIVERY_TIMEOUT_SECONDS)
        self._sign = sign
        self._retry_delay = retry_delay

    def send(self, batch: Batch) -> None:
        self.submit(batch)

    def handle(self, client: httpx.Client, batch: Batch) -> None:
        self._deliver(client, batch)

    def _deliver(self, client: httpx.Client, batch: Batch) -> None:
        while True:
            body = encode_batch(batch.at_attempt(batch.attempt_number))
            headers = self._sign(batch.target_url, body)
            attempt = DeliveryAttempt(
                delivery_id=batch.delivery_id,
                attempt_number=batch.attempt_number,
                target_url=batch.target_url,
                event_ids=[int(e["eventId"]) for e in batch.events],
                headers=headers,
                body=body.decode(),
            )
            self.attempt(client, attempt, batch.target_url, body, headers)
            if not attempt.succeeded and batch.retries_left > 0:
                batch.retries_left -= 1
            elif batch.duplicates_left > 0:
                batch.duplicates_left -= 1
            else:
                return
            batch.attempt_number += 1
            if (delay := self._retry_delay()) > 0:
                time.sleep(delay)
