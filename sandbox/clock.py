"""The simulators' wall clock and their one reading of naive times, shared by every provider.

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
