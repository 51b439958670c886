"""The canonical meeting: one shape for a meeting whichever provider it came from.

Adapters produce a `Meeting` (content only, no identity of ours) inside a `SourceRecord`
(the provider's id for it and a hash of the content). The store gives it an identity.
Times are always timezone-aware UTC; the meeting's own IANA zone is kept beside them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    PENDING = "pending"  # provisional: awaiting double opt-in or host confirmation
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


# A meeting counts as booked only in these; `pending` is provisional by design.
ACTIVE_STATUSES = frozenset({MeetingStatus.SCHEDULED, MeetingStatus.CONFIRMED})


def normalise_email(value: str | None) -> str | None:
    """Lower-case and strip an address; None or blank stays None."""
    if value is None:
        return None
    cleaned = value.strip().lower()
    if not cleaned:
        return None
    local, at, domain = cleaned.rpartition("@")
    if not at or not local or "." not in domain or " " in cleaned:
        raise ValueError(f"{value!r} is not an email address")
    return cleaned


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no meaning here; give it a timezone")
    return value.astimezone(UTC)


class Person(BaseModel):
    model_config = ConfigDict(frozen=True)

    email: str | None = None
    name: str | None = None
    phone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value)

    @field_validator("name", "phone")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None


class Meeting(BaseModel):
    """What a provider says about one meeting, in canonical form."""

    model_config = ConfigDict(frozen=True)

    status: MeetingStatus
    title: str | None = None
    start: AwareDatetime
    end: AwareDatetime
    timezone: str | None = None
    attendee: Person = Field(default_factory=Person)
    hosts: tuple[str, ...] = ()
    conference_url: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA timezone") from exc
        return value.strip()

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> tuple[str, ...]:
        emails = [normalise_email(v) for v in (value or ())]
        return tuple(sorted({e for e in emails if e}))

    @model_validator(mode="after")
    def _ordered(self) -> Meeting:
        if self.end < self.start:
            raise ValueError(
                f"the meeting ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )
        return self

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def content_hash(self) -> str:
        """Stable over re-reads: the same content from a poll or a webhook hashes the same."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SourceRecord(BaseModel):
    """A provider record after normalisation: the provider's id plus canonical content."""

    model_config = ConfigDict(frozen=True)

    external_id: str
    meeting: Meeting
    source_updated_at: AwareDatetime | None = None
    # The key under which a complete read saw it (LeanData: the prospect email), so that a
    # later complete read of the same key can tell a vanished meeting from an unread one.
    scope: str | None = None
    # The provider's id of the booking this one replaces (a reschedule done as new booking + cancel
    # of the old, as meetergo does): the same real-world meeting under a new id.
    supersedes: str | None = None
    # A reference that names this booking across the provider's APIs: the one bookingsync planted
    # when it made the booking (Meetergo `notes`, our id in a RocketLead `name`), or the provider's
    # own second id for it (HubSpot's calendar event id, kept in `hs_unique_id`). Lets a read of a
    # booking we made be recognised as our own echo.
    reference: str | None = None

    @field_validator("external_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("a provider record needs a non-empty id")
        return value.strip()
