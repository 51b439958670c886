"""The raw key (worker/ingest_fingerprint.py) is the one links store in `raw_hash`: the same record
must give the same key in every process and whatever its keys' order, two records that differ as
JSON must not share one, and a payload that is not plain JSON never gets one."""

from __future__ import annotations

import copy
import enum
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.worker import ingest_fingerprint
from bookingsync.worker.ingest_fingerprint import raw_key

PAYLOAD = {"id": "lz_1", "attributes": {"title": "Démo", "n": [1, 2.5, None, True], "a": "\u2028"}}


def test_the_key_of_a_record_is_the_same_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pinned: a change of how keys are written makes every stored link read its record in full once
    # more, so it is made on purpose (and this figure changed with it), never by accident.
    monkeypatch.setattr(ingest_fingerprint, "_version", lambda: "9.9.9")
    assert raw_key("leezy", PAYLOAD, "lz_1", None) == "10fc9259052b0ce674af8595fa6c31cb"


def test_order_does_not_count_but_provider_id_scope_and_version_do(monkeypatch: pytest.MonkeyPatch) -> None:
    key = raw_key("leezy", PAYLOAD, "lz_1", None)
    reordered = {"attributes": dict(reversed(PAYLOAD["attributes"].items())), "id": "lz_1"}  # type: ignore[union-attr]
    assert raw_key("leezy", reordered, "lz_1", None) == key
    assert raw_key("hubspot", PAYLOAD, "lz_1", None) != key
    assert raw_key("leezy", PAYLOAD, "lz_2", None) != key
    assert raw_key("leezy", PAYLOAD, "lz_1", "scope") != key
    monkeypatch.setattr(ingest_fingerprint, "_version", lambda: "0.0.0-other")
    assert raw_key("leezy", PAYLOAD, "lz_1", None) != key


def test_a_payload_that_is_not_plain_json_gets_no_key() -> None:
    circular: list = []
    circular.append(circular)
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    for payload in (
        {"x": object()},
        {"x": {1, 2}},
        circular,
        deep,
        {1: "int key", "b": None},
        {"x": 2**64},
        {"x": -(2**63) - 1},
        {"x": "lone \ud800 surrogate"},
    ):
        assert raw_key("leezy", payload, "lz_1", None) is None, payload


def test_nan_and_the_infinities_are_keyed_as_null_as_the_module_says() -> None:
    # The one value written rather than refused (see the module's docstring): if this changes, so
    # must the docstring.
    null = raw_key("leezy", {"x": None}, "lz_1", None)
    for value in (float("nan"), float("inf"), float("-inf")):
        assert raw_key("leezy", {"x": value}, "lz_1", None) == null


# The standard library's canonical JSON: two payloads are the same JSON when these bytes are equal.
_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


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


def _reorder(value: object) -> object:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reorder(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def _canonical(value: object) -> str | None:
    try:
        return _REFERENCE.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(_JSON, min_size=2, max_size=8))
def test_two_payloads_share_a_key_exactly_when_they_are_the_same_json(payloads: list[object]) -> None:
    keys = [raw_key("leezy", p, "lz_1", None) for p in payloads]
    canon = [_canonical(p) for p in payloads]
    for payload, key, text in zip(payloads, keys, canon, strict=True):
        if key is None:  # only what is not plain JSON: beyond 64 bits, lone surrogates
            assert text is None or _beyond_orjson(payload), payload
            continue
        assert raw_key("leezy", _reorder(copy.deepcopy(payload)), "lz_1", None) == key
    for i in range(len(payloads)):
        for j in range(i + 1, len(payloads)):
            if keys[i] is None or keys[j] is None or canon[i] is None or canon[j] is None:
                continue
            assert (keys[i] == keys[j]) == (canon[i] == canon[j]), (payloads[i], payloads[j])


def _beyond_orjson(value: object) -> bool:
    """Integers beyond 64 bits or strings with lone surrogates anywhere in `value`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_beyond_orjson(k) or _beyond_orjson(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_beyond_orjson(v) for v in value)
    return False


class Color(enum.Enum):
    RED = "red"


def test_objects_json_does_not_have_get_a_key_of_their_own_or_none() -> None:
    # What the full path would make of them is what counts; a key only has to be stable and distinct.
    for value in (uuid.UUID(int=1), Color.RED, datetime(2024, 1, 1, tzinfo=UTC), (1, 2)):
        key = raw_key("leezy", {"x": value}, "lz_1", None)
        assert key is None or key == raw_key("leezy", {"x": copy.deepcopy(value)}, "lz_1", None)
        assert key != raw_key("leezy", {"x": None}, "lz_1", None)


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


def test_the_providers_sample_payloads_each_get_a_key_of_their_own() -> None:
    payloads = _sample_payloads()
    if not payloads and not os.environ.get("CI"):
        pytest.skip("no provider documents (BOOKINGSYNC_PROVIDER_DOCS)")
    assert len(payloads) > 20
    by_text: dict[str, str] = {}
    for payload in payloads:
        for sub in _objects_in(payload):
            key = raw_key("leezy", sub, "lz_1", None)
            assert key is not None and key == raw_key("leezy", _reorder(sub), "lz_1", None)
            text = _REFERENCE.encode(sub)
            assert by_text.setdefault(text, key) == key
    assert len(set(by_text.values())) == len(by_text)  # distinct JSON, distinct keys


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
