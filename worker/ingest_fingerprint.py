"""The key that lets ingest recognise a record read again unchanged before normalising it (pure).

A link stores in `raw_hash` the key of the raw record whose reading it holds: written by the
bulk ingest with the link (worker/ingest_plan.py `PagePlan.fingerprint_links`), cleared by any
other write that changes what a read is compared with (models/tables.py `_forget_raw_hash`). A
polled record whose key equals its link's is one the full path would only touch.

The key covers what normalising sees: the payload, the raw external id and scope, the provider,
and the package's version (a normaliser changed by an upgrade reads every record once more
rather than trusting what an older one made of it).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from typing import Any

# One encoder for every key (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


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
        body = _ENCODER.encode(payload)
    except (TypeError, ValueError):
        return None
    text = f"{_version()}\x1f{provider}\x1f{external_id}\x1f{scope}\x1f{body}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
