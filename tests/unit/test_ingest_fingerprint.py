"""The raw key (worker/ingest_fingerprint.py) is the one links store in `raw_hash`: it must stay the
same bytes across changes to how it is computed, or every stored link reads its record in full
once more; and a payload that is not plain JSON never gets one."""

from __future__ import annotations

import enum
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# The public encoder with the key's settings: the bytes every stored `raw_hash` holds. `raw_key` writes
# them with a C encoder it builds itself, and any faster writer must give the same bytes.
_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def _reference_key(provider: str, payload: object, external_id: str | None, scope: str | None) -> str | None:
    try:
        body = _REFERENCE.encode(payload)
    except (TypeError, ValueError, RecursionError):
        return None
    text = f"{_version()}\x1f{provider}\x1f{external_id}\x1f{scope}\x1f{body}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_TEXT = st.one_of(
    st.text(),  # any code point: non-ASCII, astral, lone surrogates, controls, DEL
    st.text(alphabet=st.characters(max_codepoint=0x7F)),
    st.sampled_from(
        [
            "2024-01-20T15:00:00Z",
            "2026-12-07T12:09:46.652988Z",
            "x:1.5]",
            ",2e5}",
            "v1.2",
            "1e5",
            "null",
            "Démo",
            "\u2028",
            "a\x7fb",
            '\\/"',
        ]
    ),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),  # NaN and infinities too (no key), and every notation repr writes
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e-3, max_value=1e-3),
    _TEXT,
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(payload=_JSON, external_id=st.one_of(st.none(), _TEXT), scope=st.one_of(st.none(), st.text()))
def test_the_key_is_the_same_bytes_as_the_reference_encoder_over_any_json(
    payload: object, external_id: str | None, scope: str | None
) -> None:
    try:
        expected = _reference_key("leezy", payload, external_id, scope)
    except UnicodeEncodeError:  # an id with a lone surrogate: refused as before
        with pytest.raises(UnicodeEncodeError):
            raw_key("leezy", payload, external_id, scope)
        return
    assert raw_key("leezy", payload, external_id, scope) == expected


def test_the_key_of_non_json_values_and_deep_nesting_is_as_before() -> None:
    class Str(str):
        pass

    class Int(int):
        pass

    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    for payload in (
        {"x": float("inf")},
        {"x": float("-inf")},
        {"x": [None, float("nan")]},
        {"x": uuid.UUID(int=1)},
        {"x": Color.RED},
        {"x": datetime(2024, 1, 1, tzinfo=UTC)},
        {"x": Str("a")},
        {"x": Int(3)},
        {1: "int key", "b": None},
        {"x": (1, 2)},
        {"x": 2**64},
        {"x": -(2**63) - 1},
        deep,
    ):
        assert raw_key("leezy", payload, "lz_1", None) == _reference_key("leezy", payload, "lz_1", None), (
            payload
        )


class Color(enum.Enum):
    RED = "red"


def _sample_payloads() -> list[object]:
    """Every JSON object in the providers' documents (BOOKINGSYNC_PROVIDER_DOCS) that parses."""
    docs = Path(os.environ.get("BOOKINGSYNC_PROVIDER_DOCS", "/work/shared/providers"))
    found: list[object] = []
    decoder = json.JSONDecoder()
    for path in sorted(docs.rglob("*")):
        if path.suffix not in {".md", ".json"}:
            continue
        text = path.read_text(errors="replace")
        position = text.find("{")
        while position != -1:
            try:
                value, end = decoder.raw_decode(text, position)
            except ValueError:
                position = text.find("{", position + 1)
                continue
            found.append(value)
            position = text.find("{", end)
    return found


def test_the_key_of_the_providers_sample_payloads_is_as_before() -> None:
    payloads = _sample_payloads()
    if not payloads and not os.environ.get("CI"):
        pytest.skip("no provider documents (BOOKINGSYNC_PROVIDER_DOCS)")
    assert len(payloads) > 20
    for payload in payloads:
        for sub in _objects_in(payload):
            assert raw_key("leezy", sub, "lz_1", None) == _reference_key("leezy", sub, "lz_1", None)


def _objects_in(value: object) -> list[object]:
    """`value` and every object and array nested in it (each a payload of its own)."""
    out = [value]
    if isinstance(value, dict):
        for child in value.values():
            out.extend(_objects_in(child))
    elif isinstance(value, list):
        for child in value:
            out.extend(_objects_in(child))
    return [v for v in out if isinstance(v, dict | list)]
