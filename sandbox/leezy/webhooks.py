"""Leezy webhook deliveries: the envelope, the signature, and a background sender.

Follows Leezy.ai's webhook pages (https://leezy.ai/docs/api/webhooks,
https://staging.leezy.ai/docs/webhooks/overview, https://staging.leezy.ai/docs/webhooks/security):

* Envelope (staging webhooks overview): ``{"id": "evt_…", "type", "created_at",
  "organization_id", "chatbot_id", "data"}``. No ``meeting.*`` example of ``data`` exists in any
  stored page; the simulator sends the same meeting resource the list API returns
  (``{"id", "type": "meeting", "attributes": {…}}``).
* Headers: ``X-Leezy-Signature: sha256=<hex>``, ``X-Leezy-Timestamp`` (unix seconds),
  ``X-Leezy-Event``, ``X-Leezy-Delivery`` (``del_…``), ``Content-Type: application/json``.
* Signature: the production page signs ``f"{timestamp}.{raw_body}"`` with HMAC-SHA256 of the
  subscription secret (`SIGNATURE_PRODUCTION`, the default). The older staging page signs the raw
  body alone (`SIGNATURE_STAGING`); it is selectable so a receiver's handling of it can be tested.
* Retries and delivery timeouts are not documented: the simulator makes one attempt per delivery
  and records it, so tests see exactly what was sent and how the receiver answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bookingsync.sandbox.background import AttemptSender, Outcome

SIGNATURE_PRODUCTION = "production"
SIGNATURE_STAGING = "staging"
SIGNATURE_VARIANTS = (SIGNATURE_PRODUCTION, SIGNATURE_STAGING)

# A receiver that has not answered in this long is recorded as a failed attempt.
DELIVERY_TIMEOUT_SECONDS = 5.0


def sign(secret: str, timestamp: int, body: bytes, variant: str = SIGNATURE_PRODUCTION) -> str:
    """The ``X-Leezy-Signature`` value for `body` sent at `timestamp`."""
    if variant == SIGNATURE_PRODUCTION:
        signed = f"{timestamp}.".encode() + body
    elif variant == SIGNATURE_STAGING:
        signed = body
    else:
        raise ValueError(f"Unknown signature variant {variant!r}; use one of {SIGNATURE_VARIANTS}.")
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def new_event(
    event_type: str,
    *,
    created_at: str,
    organization_id: str,
    chatbot_id: str,
    data: Mapping[str, Any],
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{secrets.token_hex(8)}",
        "type": event_type,
        "created_at": created_at,
        "organization_id": organization_id,
        "chatbot_id": chatbot_id,
        "data": dict(data),
    }


@dataclass(frozen=True)
class SignedDelivery:
    headers: dict[str, str]
    body: bytes


def build_signed_delivery(
    secret: str,
    event: Mapping[str, Any],
    *,
    timestamp: int,
    delivery_id: str | None = None,
    variant: str = SIGNATURE_PRODUCTION,
) -> SignedDelivery:
    """Headers and raw body of one delivery, exactly as the sender POSTs them."""
    body = json.dumps(event, separators=(",", ":")).encode()
    return SignedDelivery(
        headers={
            "Content-Type": "application/json",
            "X-Leezy-Signature": sign(secret, timestamp, body, variant),
            "X-Leezy-Timestamp": str(timestamp),
            "X-Leezy-Event": str(event["type"]),
            "X-Leezy-Delivery": delivery_id or f"del_{secrets.token_hex(8)}",
        },
        body=body,
    )


@dataclass
class DeliveryAttempt(Outcome):
    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    target_url: str
    headers: dict[str, str]
    body: str


class WebhookSender(AttemptSender[tuple[DeliveryAttempt, bytes], DeliveryAttempt]):
    """POSTs deliveries from one daemon thread, so the change that caused them never waits."""

    def __init__(self, on_result: Callable[[DeliveryAttempt], None] | None = None) -> None:
        super().__init__("leezy-webhooks", DELIVERY_TIMEOUT_SECONDS, on_result)

    def send(
        self, subscription_id: str, target_url: str, event: Mapping[str, Any], delivery: SignedDelivery
    ) -> None:
        attempt = DeliveryAttempt(
            delivery_id=delivery.headers["X-Leezy-Delivery"],
            subscription_id=subscription_id,
            event_id=str(event["id"]),
            event_type=str(event["type"]),
            target_url=target_url,
            headers=dict(delivery.headers),
            body=delivery.body.decode(),
        )
        self.submit((attempt, delivery.body))

    def handle(self, client: httpx.Client, item: tuple[DeliveryAttempt, bytes]) -> None:
        attempt, body = item
        self.attempt(client, attempt, attempt.target_url, body, attempt.headers)
