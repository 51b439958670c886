"""Reading a provider's record: each field leniently, and one sentence when the whole is unusable.

A provider record is read field by field; a field of the wrong kind (a list where a table was
meant, a blank string, an address that is not one, a zone name no IANA database knows) must not
cost us the record, so each reader answers None (or an empty table) and the normaliser decides
whether that field was required. Every adapter reads its payloads through these, so one record
reads the same whichever provider sent it. When the fields read do not make a valid meeting,
`unusable` is the NormaliseError that quarantines the record with the validation's reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from bookingsync.models.errors import NormaliseError
from bookingsync.models.meeting import normalise_email

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, Any] = {}


def as_table(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one (so `.get` chains never raise)."""
    return value if isinstance(value, dict) else _EMPTY


def as_text(value: Any) -> str | None:
    """A string with its surrounding blanks removed; None for a blank string or a non-string."""
    return value.strip() or None if isinstance(value, str) else None


def as_email(value: Any) -> str | None:
    """A normalised email address, or None for anything that is not one."""
    try:
        return normalise_email(value) if isinstance(value, str) else None
    except ValueError:
        return None


def as_zone(value: Any, provider: str) -> str | None:
    """An IANA zone name, or None: a zone is decorative, and an unknown one must not cost a meeting."""
    name = as_text(value)
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.info("%s: dropping timezone %r, not an IANA zone", provider, name)
        return None
    return name


def unusable(what: str, exc: ValidationError) -> NormaliseError:
    """The error for a record (`what`: "the Leezy meeting m1") that is no valid meeting, with why."""
    reasons = "; ".join(err["msg"] for err in exc.errors())
    return NormaliseError(f"{what} cannot be used: {reasons}")
