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
import json.encoder
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Any

# One encoder for every key, sorted keys, compact, ASCII, no NaN. A payload is parsed JSON, never
# circular, so the circular-reference bookkeeping is left out; and where the C encoder is there it
# is made once, not per call as `JSONEncoder.encode` does: half the cost of a key, on a path where
# keying a page is a third of the work (the bytes are the same as `JSONEncoder.encode`'s).
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False, check_circular=False)


def _encoder() -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return _JSON.encode
    # markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
    chunks = make(
        None, _JSON.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, False
    )
    return lambda payload: "".join(chunks(payload, 0))


_encode = _encoder()


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
        body = _encode(payload)
    except (TypeError, ValueError, RecursionError):
        return None
    text = f"{_version()}\x1f{provider}\x1f{external_id}\x1f{scope}\x1f{body}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
