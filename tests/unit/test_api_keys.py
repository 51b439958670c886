"""API keys: lookup by secret, scopes, status-page sessions and form tokens; the config's checks."""

from __future__ import annotations

import pytest

from bookingsync.models.errors import ConfigError
from bookingsync.worker.api.auth import READ, WRITE, Keys, allows
from bookingsync.worker.config import parse_config

READER, WRITER = "r" * 24, "w" * 30


def keys() -> Keys:
    return Keys(
        parse_config(
            {
                "api_keys": [
                    {"id": "crm.sync", "key": READER},
                    {"id": "ops", "key": WRITER, "scopes": ["write"]},
                ]
            },
            environ={},
        )
    )


def test_a_key_is_found_by_its_secret_only() -> None:
    found = keys().by_secret(WRITER)
    assert found is not None and found.id == "ops"
    assert keys().by_secret(WRITER[:-1]) is None and keys().by_secret("") is None


def test_write_includes_read_and_read_is_the_default() -> None:
    reader, writer = keys().by_secret(READER), keys().by_secret(WRITER)
    assert reader is not None and writer is not None
    assert allows(reader, READ) and not allows(reader, WRITE)
    assert allows(writer, READ) and allows(writer, WRITE)


def test_a_session_names_its_key_without_holding_it_and_cannot_be_forged() -> None:
    made = keys()
    reader = made.by_secret(READER)
    assert reader is not None
    value = made.session_value(reader)
    assert READER not in value and value.startswith("crm.sync.")  # an id with a dot still works
    assert made.by_session(value) == reader
    assert made.by_session(value[:-1] + ("0" if value[-1] != "0" else "1")) is None
    assert made.by_session("ops." + value.rpartition(".")[2]) is None  # another key's id with this MAC
    assert made.by_session(None) is None and made.by_session("") is None
    assert made.check_form_token(reader, made.form_token(reader))
    assert not made.check_form_token(reader, made.session_value(reader))


@pytest.mark.parametrize(
    "entry, problem",
    [
        ({"id": "a", "key": "short"}, "api_keys[0].key: an API key needs at least 24 characters"),
        ({"id": "a", "key": READER, "scopes": ["admin"]}, "api_keys[0].scopes[0]"),
        ({"id": "a", "key": READER, "scopes": []}, "give at least one scope"),
    ],
)
def test_config_refuses_bad_keys_naming_the_key(entry: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"api_keys": [entry]}, environ={})


def test_config_refuses_a_key_given_twice_and_keeps_it_out_of_reprs() -> None:
    with pytest.raises(ConfigError, match="the same key is given twice"):
        parse_config({"api_keys": [{"id": "a", "key": READER}, {"id": "b", "key": READER}]}, environ={})
    cfg = parse_config({"api_keys": [{"id": "a", "key": "env:API_KEY"}]}, environ={"API_KEY": WRITER})
    assert cfg.api_keys[0].key.get_secret_value() == WRITER and WRITER not in repr(cfg)
