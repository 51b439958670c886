"""HubSpot webhook subscriptions and the events a meeting change fans out to them (sent by
`webhooks`). Built on `store`, whose fields it reads."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from bookingsync.sandbox.errors import SandboxError

from .records import (
    DEFAULT_SUBSCRIBED_PROPERTIES,
    EVENT_TYPES,
    MEETINGS_OBJECT_TYPE_ID,
    SOURCE_UI,
    HubSpotMeeting,
    Subscription,
    to_millis,
)
from .store import Store
from .webhooks import (
    Batch,
    new_delivery_id,
)


class Subscriptions(Store):
    def subscribe(
        self,
        event_type: str,
        property_name: str | None = None,
        *,
        active: bool = True,
        object_type_id: str = MEETINGS_OBJECT_TYPE_ID,
    ) -> Subscription:
        if event_type not in EVENT_TYPES:
            raise SandboxError(f"The simulator sends only {', '.join(EVENT_TYPES)}.")
        if event_type == "object.propertyChange" and not property_name:
            raise SandboxError("An object.propertyChange subscription needs a propertyName.")
        with self._lock:
            self._next_subscription += 1 + secrets.randbelow(5)
            sub = Subscription(
                self._next_subscription,
                event_type,
                self.now(),
                property_name if event_type == "object.propertyChange" else None,
                object_type_id,
                active,
            )
            self._subscriptions[sub.id] = sub
            return sub

    def subscribe_meetings(
        self, properties: Iterable[str] = DEFAULT_SUBSCRIBED_PROPERTIES
    ) -> list[Subscription]:
        """Creation, deletion and a propertyChange subscription per property."""
        subs = [self.subscribe("object.creation"), self.subscribe("object.deletion")]
        return subs + [self.subscribe("object.propertyChange", p) for p in properties]

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return sorted(self._subscriptions.values(), key=lambda s: s.id)

    def subscription(self, subscription_id: int) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def set_subscription_active(self, subscription_id: int, active: bool) -> Subscription | None:
        with self._lock:
            sub = self._subscriptions.get(subscription_id)
            if sub is not None:
                sub.active, sub.updated_at = active, self.now()
            return sub

    def unsubscribe(self, subscription_id: int) -> bool:
        with self._lock:
            return self._subscriptions.pop(subscription_id, None) is not None

    def resend(self, delivery_id: str) -> None:
        """Send a recorded batch again with attemptNumber one above its last attempt."""
        attempts = [a for a in self.deliveries() if a.delivery_id == delivery_id]
        if not attempts:
            raise SandboxError(f"No delivery {delivery_id!r} was recorded.")
        last = max(attempts, key=lambda a: a.attempt_number)
        self._sender.send(
            Batch(delivery_id, last.target_url, json.loads(last.body), attempt_number=last.attempt_number + 1)
        )

    def _notify_creation(self, meeting: HubSpotMeeting, source: str) -> None:
        events: list[dict[str, Any]] = [{"subscriptionType": "object.creation", "changeFlag": "NEW"}]
        if self.property_changes_on_creation:
            events += self._property_events(meeting.all_properties())
        self._notify(meeting, events, source)

    def _notify_changes(self, meeting: HubSpotMeeting, changed: dict[str, str], source: str) -> None:
        self._notify(meeting, self._property_events(changed), source)

    @staticmethod
    def _property_events(values: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"subscriptionType": "object.propertyChange", "propertyName": k, "propertyValue": v}
            for k, v in values.items()
        ]

    def _notify(self, meeting: HubSpotMeeting, events: list[dict[str, Any]], source: str) -> None:
        """Match `events` to active subscriptions and queue one batch."""
        if not self.webhook_target_url:
            return
        stamp = to_millis(meeting.updated_at)
        batch = []
        for template in events:
            for sub in self.subscriptions():
                if (
                    not sub.active
                    or sub.event_type != template["subscriptionType"]
                    or sub.object_type_id != MEETINGS_OBJECT_TYPE_ID
                ):
                    continue
                if sub.property_name and sub.property_name != template.get("propertyName"):
                    continue
                self._next_event += 1 + secrets.randbelow(7)
                event = {
                    "eventId": self._next_event,
                    "subscriptionId": sub.id,
                    "portalId": self.portal_id,
                    "appId": self.app_id,
                    "occurredAt": stamp,
                    "subscriptionType": template["subscriptionType"],
                    "attemptNumber": 0,
                    "objectId": int(meeting.id),
                    "objectTypeId": MEETINGS_OBJECT_TYPE_ID,
                    "changeSource": source,
                    "isSensitive": False,
                }
                if source == SOURCE_UI:
                    event["sourceId"] = "userId:7001"
                event |= {k: v for k, v in template.items() if k != "subscriptionType"}
                batch.append(event)
        if batch:
            self._sender.send(
                Batch(
                    new_delivery_id(),
                    self.webhook_target_url,
                    batch,
                    retries_left=self.retry_failed,
                    duplicates_left=self.duplicate_deliveries,
                )
            )
