"""Meetergo webhook subscriptions and their deliveries (sent by `webhooks`): add, update, remove,
emit and redeliver. Built on `wire` (what a delivery carries); the fields are `store`'s."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from bookingsync.sandbox.errors import SandboxError

from .records import MAX_WEBHOOKS, MeetergoAppointment, MeetergoRefusal, MeetergoWebhook, validation_failed
from .webhooks import (
    EVENT_TYPES,
    DeliveryAttempt,
    build_payload,
    new_attempt,
)
from .wire import WireShapes


class Subscriptions(WireShapes):
    def add_webhook(
        self, endpoint: str, event_types: Iterable[str], description: str | None = None
    ) -> MeetergoWebhook:
        types = list(event_types)
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise validation_failed(
                "eventTypes", f"Unknown event type(s): {', '.join(unknown)}; use {', '.join(EVENT_TYPES)}"
            )
        if not types:
            raise validation_failed("eventTypes", "eventTypes should not be empty")
        if not endpoint.startswith(("http://", "https://")):
            raise validation_failed("endpoint", "endpoint must be a URL address")
        with self._lock:
            if len(self._webhooks) >= MAX_WEBHOOKS:
                raise MeetergoRefusal(406, "Limit reached")
            hook = MeetergoWebhook(
                id=str(uuid.uuid4()),
                endpoint=endpoint,
                description=description,
                event_types=types,
                company_id=self.company_id,
                created_at=self.now(),
            )
            self._webhooks[hook.id] = hook
            return hook

    def update_webhook(
        self,
        webhook_id: str,
        *,
        endpoint: str | None = None,
        event_types: Iterable[str] | None = None,
        description: str | None = None,
    ) -> MeetergoWebhook:
        with self._lock:
            hook = self._webhooks.get(webhook_id)
            if hook is None:
                raise MeetergoRefusal(404, "Webhook not found")
            if event_types is not None:
                types = list(event_types)
                unknown = [t for t in types if t not in EVENT_TYPES]
                if unknown or not types:
                    raise validation_failed(
                        "eventTypes", f"eventTypes must be a non-empty list of {', '.join(EVENT_TYPES)}"
                    )
                hook.event_types = types
            if endpoint is not None:
                if not endpoint.startswith(("http://", "https://")):
                    raise validation_failed("endpoint", "endpoint must be a URL address")
                hook.endpoint = endpoint
            if description is not None:
                hook.description = description
            return hook

    def remove_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            return self._webhooks.pop(webhook_id, None) is not None

    def webhooks(self) -> list[MeetergoWebhook]:
        with self._lock:
            return list(self._webhooks.values())

    def emit(self, webhook_type: str, data: Mapping[str, Any]) -> list[DeliveryAttempt]:
        """Send `data` as a `webhook_type` event to every subscribed endpoint (any event type,
        e.g. ``new_employee`` or ``form_submission``)."""
        if webhook_type not in EVENT_TYPES:
            raise SandboxError(f"Unknown webhook type {webhook_type!r}; use one of {', '.join(EVENT_TYPES)}.")
        with self._lock:
            payload = build_payload(webhook_type, data, self.payload_shape)
            attempts = []
            for hook in self._webhooks.values():
                if webhook_type not in hook.event_types:
                    continue
                for _ in range(2 if self.duplicate_deliveries else 1):
                    attempt = new_attempt(hook.id, hook.endpoint, webhook_type, payload)
                    self._sender.send(attempt)
                    attempts.append(attempt)
            return attempts

    def redeliver(self, delivery_id: str) -> DeliveryAttempt:
        """Send a recorded delivery's body again, as meetergo may (a duplicate)."""
        for old in self._sender.attempts():
            if old.delivery_id == delivery_id:
                attempt = new_attempt(
                    old.webhook_id,
                    old.target_url,
                    old.webhook_type,
                    old.payload(),
                    redelivery_of=old.delivery_id,
                )
                self._sender.send(attempt)
                return attempt
        raise SandboxError(f"No recorded delivery {delivery_id!r}; list /_sandbox/deliveries.")

    def _emit(self, webhook_type: str, appt: MeetergoAppointment) -> None:
        self.emit(webhook_type, self.webhook_data(appt, webhook_type))
