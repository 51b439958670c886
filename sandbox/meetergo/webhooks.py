"""meetergo webhook deliveries: the payload shapes and a background sender.

Follows meetergo's "Webhooks overview" and "Webhook events" pages
(https://developer.meetergo.com/developer-docs/webhooks/overview):

* Shape `SHAPE_FLAT` (the default, the current docs): "All webhook payloads include a
  webhookType field identifying the event, with the rest of the event-specific data at the top
  level": ``{"webhookType": "booking_created", "id": ..., "start": ..., ...}``.
* Shape `SHAPE_LEGACY` (an older revision of the same page): ``{"event": "booking_created",
  "data": {...}}``, where ``data`` is the flat payload without ``webhookType``.
* No signature and no signing secret are documented, so none is sent: a receiver has to
  authenticate a delivery by something it chose itself (a secret token in the target URL's
  query). Headers are ``Content-Type: application/json`` and a ``User-Agent`` (guessed).
* Retries are not documented; "Webhooks may be delivered more than once" is. The sender makes
  one attempt per delivery and records it; duplicates are produced on purpose by the state
  (``duplicate_deliveries``) or by redelivering a recorded attempt.
* The documented request timeout is 30 seconds (`DELIVERY_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bookingsync.sandbox.background import AttemptSender, Outcome

SHAPE_FLAT = "flat"
SHAPE_LEGACY = "legacy"
PAYLOAD_SHAPES = (SHAPE_FLAT, SHAPE_LEGACY)

BOOKING_CREATED = "booking_created"
BOOKING_CANCELLED = "booking_cancelled"
BOOKING_RESCHEDULED = "booking_rescheduled"
NEW_EMPLOYEE = "new_employee"
FORM_SUBMISSION = "form_submission"
EVENT_TYPES = (BOOKING_CREATED, BOOKING_CANCELLED, BOOKING_RESCHEDULED, NEW_EMPLOYEE, FORM_SUBMISSION)

USER_AGENT = "meetergo-webhooks (sandbox)"
DELIVERY_TIMEOUT_SECONDS = 30.0  # "Request timeout: 30 seconds"


def build_payload(webhook_type: str, data: Mapping[str, Any], shape: str = SHAPE_FLAT) -> dict[str, Any]:
    """The JSON body of one delivery of `webhook_type` carrying `data` (flat fields)."""
    if shape == SHAPE_FLAT:
        return {"webhookType": webhook_type, **{k: v for k, v in data.items() if k != "webhookType"}}
    if shape == SHAPE_LEGACY:
        return {"event": webhook_type, "data": {k: v for k, v in data.items() if k != "webhookType"}}
    raise ValueError(f"Unknown payload shape {shape!r}; use one of {PAYLOAD_SHAPES}.")


@dataclass
class DeliveryAttempt(Outcome):
    delivery_id: str
    webhook_id: str
    webhook_type: str
    target_url: str
    headers: dict[str, str]
    body: str
    redelivery_of: str | None = None

    def payload(self) -> Any:
        return json.loads(self.body)


def new_attempt(
    webhook_id: str,
    target_url: str,
    webhook_type: str,
    payload: Mapping[str, Any],
    *,
    redelivery_of: str | None = None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=f"dlv_{secrets.token_hex(8)}",
        webhook_id=webhook_id,
        webhook_type=webhook_type,
        target_url=target_url,
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        body=json.dumps(payload, separators=(",", ":")),
        redelivery_of=redelivery_of,
    )


class WebhookSender(AttemptSender[DeliveryAttempt, DeliveryAttempt]):
    """POSTs deliveries from one daemon thread, so the change that caused them never waits."""

    def __init__(self, on_result: Callable[[DeliveryAttempt], None] | None = None) -> None:
        super().__init__("meetergo-webhooks", DELIVERY_TIMEOUT_SECONDS, on_result)

    def send(self, attempt: DeliveryAttempt) -> None:
        self.submit(attempt)

    def handle(self, client: httpx.Client, attempt: DeliveryAttempt) -> None:
        self.attempt(client, attempt, attempt.target_url, attempt.body.encode(), attempt.headers)
