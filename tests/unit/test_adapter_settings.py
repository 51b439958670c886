"""Each adapter's settings model is the one statement of what a connection takes: the README's
tables are made from it, `config check` validates through it, the adapter is built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bookingsync.adapters.registry import ADAPTERS, build_adapter, settings_model
from bookingsync.models.errors import ConfigError
from bookingsync.worker.config import OPTIONS_BEGIN, OPTIONS_END, parse_config, provider_settings_tables

README = Path(__file__).resolve().parents[2] / "README.md"
SECRETS = ("token", "api_key", "webhook_secret")


def test_the_readme_tables_are_the_models() -> None:
    text = README.read_text()
    assert OPTIONS_BEGIN in text and OPTIONS_END in text, "the README lost its provider settings tables"
    shown = text[text.index(OPTIONS_BEGIN) : text.index(OPTIONS_END) + len(OPTIONS_END)]
    expected = provider_settings_tables()
    assert shown == expected, (
        "README.md's provider settings tables differ from the adapters' settings models; replace them with "
        'the output of: python -c "from bookingsync.worker.config import provider_settings_tables as t; print(t())"'
    )


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_every_field_says_what_it_is_for_and_secrets_stay_secret(provider: str) -> None:
    model = settings_model(provider)
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description for the README"
        if name in SECRETS:
            assert SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ())), name


# -- config check validates each connection through its provider's model -------------------------

BASE = {
    "leezy": {"base_url": "https://app.leezy.example", "token": "lz_live_7f3a9c2e51"},
    "meetergo": {"base_url": "https://api.meetergo.example", "token": "mg_personal_1"},
    "rocketlead": {
        "base_url": "https://api.rocketlead.example",
        "token": "rocketlead_live_1",
        "options": {"calendar_id": "cal", "appointment_type_id": "apt"},
    },
    "leandata": {"base_url": "https://api.leandata.example", "api_key": "ld_9c2e51a7f3"},
    "hubspot": {"token": "hs_pat_1"},
}


def connection(provider: str, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "c1", "provider": provider, **BASE[provider]}
    options = {**item.get("options", {}), **changes.pop("options", {})}
    item.update(changes)
    if options:
        item["options"] = options
    return item


def error(item: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"connections": [item]}, source="site.toml", environ={})
    return str(info.value)


@pytest.mark.parametrize(
    ("item", "key", "words"),
    [
        # Rules that only the adapter's constructor knew before: `config check` passed, the start failed.
        (
            connection("meetergo", options={"meeting_type_id": "mt-1"}),
            "connections[0].options.host_ids",
            "needs host_ids or queue_id",
        ),
        (connection("meetergo", user_id="u-1"), "connections[0].user_id", "remove user_id"),
        (connection("rocketlead", token="live_abc"), "connections[0].token", "must start with 'rocketlead_'"),
        (
            connection("rocketlead", options={"table_entry_ids": {"nobody": "lead-1"}}),
            "connections[0].options.table_entry_ids",
            "not an email address",
        ),
        (
            connection("leandata", options={"link_id": "Lw5mjKK", "trigger_node": "Webform"}),
            "connections[0].options.trigger_node",
            "not both",
        ),
        (
            connection("leandata", watch_emails=["not-an-email"]),
            "connections[0].watch_emails",
            "not an email address",
        ),
        (
            connection("hubspot", options={"booking_timezone": "Mars/Base"}),
            "connections[0].options.booking_timezone",
            "not an IANA timezone",
        ),
        # Values the model's types and bounds refuse, named where the file writes them.
        (connection("leezy", page_size=500), "connections[0].page_size", "less than or equal to 100"),
        (
            connection("leezy", options={"requests_per_minute": 0}),
            "connections[0].options.requests_per_minute",
            "greater than 0",
        ),
        # Missing and misplaced keys.
        (
            {**connection("rocketlead"), "options": {"appointment_type_id": "apt"}},
            "connections[0].options.calendar_id",
            "needs `calendar_id` under [connections.options]",
        ),
        (
            {k: v for k, v in connection("leezy").items() if k != "base_url"},
            "connections[0].base_url",
            "needs `base_url`",
        ),
        (
            connection("hubspot", options={"page_size": 10}),
            "connections[0].options.page_size",
            "on the connection itself",
        ),
        (connection("leezy", meeting_slug="intro"), "connections[0].meeting_slug", "not permitted"),
    ],
)
def test_config_check_names_the_connection_key_and_fix(item: dict[str, Any], key: str, words: str) -> None:
    message = error(item)
    assert message.startswith("config error in site.toml: "), message
    assert key in message and words in message, message


def test_several_problems_of_one_connection_are_all_named_in_one_run() -> None:
    message = error(
        connection("leezy", watch_emails=["a@b.example"], page_size=500, options={"colour": "blue"})
    )
    assert "connections[0].watch_emails" in message and "connections[0].options.colour" in message
    assert "connections[0].page_size: Input should be less than or equal to 100" in message


def test_the_config_builds_the_adapter_from_the_validated_model() -> None:
    cfg = parse_config(
        {"connections": [connection("meetergo", options={"meeting_type_id": "mt", "host_ids": [" h1 "]})]},
        environ={},
    )
    conn = cfg.connections[0]
    assert conn.settings.host_ids == ("h1",)  # type: ignore[attr-defined]  # MeetergoSettings
    adapter = build_adapter(conn.provider, conn.id, conn.settings)
    try:
        assert adapter.connection_id == "c1"  # type: ignore[attr-defined]
        assert adapter._host_ids == ("h1",)  # type: ignore[attr-defined]
    finally:
        adapter.close()
    # HubSpot's default base_url and pace come from its model, not from a shared connection default.
    hubspot = parse_config({"connections": [connection("hubspot")]}, environ={}).connections[0]
    assert hubspot.base_url == "https://api.hubapi.com"
    assert hubspot.settings.requests_per_second == 10.0  # type: ignore[attr-defined]
