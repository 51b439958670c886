"""The key that lets ingest recognise a record read again unchanged before normalising it (pure).

A link stores in `raw_hash` the key of the raw record whose reading it holds: written by the
bulk ingest with the link (worker/ingest_plan.py `PagePlan.fingerprint_links`), cleared by any
other write that changes what a read is compared with (models/tables.py `_forget_raw_hash`). A
polled record whose key equals its link's is one the full path would only touch.

The key covers what normalising sees: the payload, the raw external id and scope, the provider,
and the package's version (a normaliser changed by an upgrade reads every record once more
rather than trusting what an older one made of it).

The payload is written as JSON by orjson, keys sorted: a third of the cost of the standard
library's C encoder, on a path (a quiet calendar polled again) where keying the page was a quarter
of the work. What orjson will not write gets no key and always takes the full path: keys that are
not strings, sets and objects it has no JSON for, integers beyond 64 bits, strings with lone
surrogates, nesting deeper than 254 (datetimes, UUIDs, enums and tuples it writes; a parsed payload
holds none). One value is written rather than refused: NaN and the infinities, which JSON has
no words for (RFC 8259) and which a provider can only send by breaking it, are written as `null`.
So a record whose only change is between such a number and null reads as unchanged; the defensive
alternative, a walk over every payload in Python to look for them, costs more than the encoding.
A change of how keys are written changes every key once: each link then reads its record in full
one more time, as after an upgrade.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from typing import Any

import orjson


@cache
def _version() -> str:
    try:
        return metadata.version("bookingsync")
    except (
        metadata.PackageNotFoundError
    ):  # a source tree without its metadata: never trust a hash across runs
        return "unknown"


def raw_key(provider: str, payload: Any, external_id: str | None, scope: str | None) -> str | None:
    """The key of a raw record; None for a payload that is not plain JSON (it always takes the full path)."""
    try:
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError, for every value it will not write
        return None
    key = hashlib.blake2b(
        f"{_version()}\x1f{provider}\x1f{external_id}\x1f{scope}\x1f".encode(), digest_size=16
    )
    key.update(body)
    return key.hexdigest()
