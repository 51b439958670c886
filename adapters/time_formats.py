"""How providers spell an instant on the wire, each form once.

Every form is UTC. Which form a provider wants is its adapter's choice (and its module docstring
says why); the spelling itself lives here so two adapters asking for the same form write the same
bytes. Epoch milliseconds are integers counted exactly (no float rounding), floored like
`BookingShape` floors a start to its resolution.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def iso_z(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, microseconds only when there are any (`2026-03-02T09:00:00Z`)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_ms_z(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as JavaScript's `toISOString` writes it."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_seconds_z(value: datetime) -> str:
    """ISO 8601 in UTC to the second with a Z (sub-second parts dropped)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(value: datetime) -> int:
    """Milliseconds since 1970-01-01 UTC, floored."""
    return (value.astimezone(UTC) - _EPOCH) // _MILLISECOND


def from_epoch_ms(value: int) -> datetime:
    """The UTC instant `value` milliseconds after 1970-01-01."""
    return _EPOCH + timedelta(milliseconds=value)
