"""The simulators' wall clock and their one reading of naive and ISO 8601 times, shared by every provider.

A state takes `now` as a callable (tests pass a manual clock); `utc_now` is the default. A naive
datetime handed to a simulator (from Python or a control API) is read as UTC, so stored times
always compare.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """`value` with UTC attached if it has no offset; an aware value is returned as it is."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_iso(text: str) -> datetime:
    """An ISO 8601 date-time (a trailing `Z` is UTC); a value without an offset is taken as UTC.

    The control APIs and tests hand times this way; a provider whose wire format is stricter
    (RocketLead insists on an offset) checks that itself.
    """
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
