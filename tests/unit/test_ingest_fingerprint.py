"""The raw key (worker/ingest_fingerprint.py) is the one links store in `raw_hash`: it must stay the
same bytes across changes to how it is computed, or every stored link reads its record in full
once more; and a payload that is not plain JSON never gets one."""

from __future__ import annotations

import hashlib
import json

from bookingsync.worker.ingest_fingerprint import _version, raw_key


def test_the_key_is_the_hash_of_the_canonical_json_of_the_record() -> None:
    payload = {"id": "lz_1", "attributes": {"title": "Démo", "n": [1, 2.5, None, True], "a": "\u2028"}}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    text = f"{_version()}\x1fleezy\x1flz_1\x1fNone\x1f{body}"
    assert (
        raw_key("leezy", payload, "lz_1", None) == hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    )
    # Key order does not count; the provider, id and scope do.
    reordered = {"attributes": dict(reversed(payload["attributes"].items())), "id": "lz_1"}
    assert raw_key("leezy", reordered, "lz_1", None) == raw_key("leezy", payload, "lz_1", None)
    assert raw_key("leezy", payload, "lz_1", "scope") != raw_key("leezy", payload, "lz_1", None)


def test_a_payload_that_is_not_plain_json_gets_no_key() -> None:
    circular: list = []
    circular.append(circular)
    for payload in ({"x": float("nan")}, {"x": object()}, {"x": {1, 2}}, circular):
        assert raw_key("leezy", payload, "lz_1", None) is None
