"""What the configuration refuses before anything starts: URLs, private targets, keys a provider does
not take, test hooks, secrets in reprs, and what depends on the role (`validate_for`)."""

from __future__ import annotations

from typing import Any

import pytest

from bookingsync.models.errors import ConfigError
from bookingsync.worker import egress
from bookingsync.worker.config import parse_config, redact_url, validate_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEEZY = {
    "id": "leezy-main",
    "provider": "leezy",
    "base_url": "https://app.leezy.example",
    "token": "lz_live_7f3a9c2e51",
}
LEANDATA = {
    "id": "ld",
    "provider": "leandata",
    "base_url": "https://api.leandata.example",
    "api_key": "ld_9c2e51a7f3",
}
ROCKETLEAD = {
    "id": "rl",
    "provider": "rocketlead",
    "base_url": "https://api.rocketlead.example",
    "token": "rocketlead_live_1",
    "options": {"calendar_id": "cal", "appointment_type_id": "apt"},
}


def sub(url: str) -> dict[str, Any]:
    return {"id": "crm", "url": url, "secret": SECRET}


def error(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="site.toml", environ=environ or {})
    message = str(info.value)
    assert message.startswith("config error in site.toml: "), message
    return message


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolve only as a test says (the machine's resolver is not part of these tests)."""

    def resolve(host: str, port: int) -> list[str]:
        raise OSError(f"{host} does not resolve in this test")

    monkeypatch.setattr(egress, "resolve", resolve)


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"connections": [LEEZY | {"base_url": "not a url"}]}, "connections[0].base_url"),
        ({"connections": [LEEZY | {"base_url": "ftp://app.leezy.example"}]}, "connections[0].base_url"),
        ({"subscriptions": [sub("htp//crm.example.com/hooks")]}, "subscriptions[0].url"),
        ({"subscriptions": [sub("https://")]}, "subscriptions[0].url"),
        ({"subscriptions": [sub("https://crm.example.com:eighty/h")]}, "subscriptions[0].url"),
        ({"server": {"public_url": "not a url"}}, "server.public_url"),
    ],
)
def test_urls_that_cannot_be_called_are_refused(data: dict[str, Any], key: str) -> None:
    message = error(data)
    assert f"{key}: " in message and "https://host/path" in message or "port" in message


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgres://bs:pw@db/bookingsync", "postgresql+psycopg://"),
        ("postgresql://bs:pw@db/bookingsync", "postgresql+psycopg://"),
        ("postgresql+psycopg2://bs:pw@db/bookingsync", "postgresql+psycopg://"),
        ("mysql://bs:pw@db/bookingsync", "sqlite:///"),
        ("not a url", "sqlite:///"),
        ("sqlite://", "name a file"),
        ("sqlite:///:memory:", "name a file"),
    ],
)
def test_database_urls_bookingsync_cannot_open_are_one_sentence_with_the_fix(url: str, hint: str) -> None:
    message = error({"database": {"url": url}})
    assert "database.url: " in message and hint in message
    assert ":pw@" not in message  # the password is never echoed


def test_a_database_url_from_the_environment_names_the_variable() -> None:
    message = error({}, {"BOOKINGSYNC_DATABASE__URL": "postgres://bs:pw@db/bookingsync"})
    assert "database.url (from $BOOKINGSYNC_DATABASE__URL): " in message


def test_a_bad_value_from_an_env_reference_names_the_variable() -> None:
    message = error({"subscriptions": [sub("env:CRM_URL")]}, {"CRM_URL": "htp//crm"})
    assert "subscriptions[0].url (from $CRM_URL): " in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example:6380/1",
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        "amqps://user:pw@mq.example/vhost",
        "memory://",
    ],
)
def test_broker_urls_accepted(url: str) -> None:
    assert parse_config({"broker": {"url": url}}, environ={}).broker.url == url


@pytest.mark.parametrize("url", ["kafka://k:9092", "redis://", "amqp:/nohost", "127.0.0.1:6379"])
def test_broker_urls_refused(url: str) -> None:
    assert "broker.url: " in error({"broker": {"url": url}})


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("amqp://guest:s3cret@mq:5672/%2F") == "amqp://guest:***@mq:5672/%2F"
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


# --- private targets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/latest",
        "http://100.100.100.200/meta",
        "http://0.0.0.0/hook",
    ],
)
def test_private_loopback_link_local_and_metadata_targets_are_refused(url: str) -> None:
    message = error({"subscriptions": [sub(url)]})
    assert "subscriptions[0].url: " in message and "allow_private_targets = true" in message
    message = error({"connections": [LEEZY | {"base_url": url}]})
    assert "connections[0].base_url: " in message


def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "resolve", lambda host, port: ["93.184.215.14", "10.0.0.7"])
    message = error({"subscriptions": [sub("https://crm.example.com/hooks")]})
    assert "crm.example.com resolves to 10.0.0.7 is a private address" in message


def test_public_and_unresolvable_names_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    parse_config({"subscriptions": [sub("https://not-resolvable.example/hooks")]}, environ={})
    monkeypatch.setattr(egress, "resolve", lambda host, port: ["93.184.215.14"])
    parse_config(
        {"subscriptions": [sub("https://crm.example.com/hooks")], "connections": [LEEZY]}, environ={}
    )


def test_allow_private_targets_lets_them_through_from_the_file_or_the_environment() -> None:
    data = {
        "subscriptions": [sub("http://127.0.0.1:9/hook")],
        "connections": [LEEZY | {"base_url": "http://10.0.0.2"}],
    }
    assert parse_config({**data, "allow_private_targets": True}, environ={}).allow_private_targets
    assert parse_config(data, environ={"BOOKINGSYNC_ALLOW_PRIVATE_TARGETS": "true"}).allow_private_targets


# --- keys a provider does not take ------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "key", "words"),
    [
        (LEEZY | {"watch_emails": ["a@b.example"]}, "connections[0].watch_emails", "takes no `watch_emails`"),
        (LEEZY | {"lookback_days": 3}, "connections[0].lookback_days", "takes no `lookback_days`"),
        (
            LEANDATA | {"webhook_secret": "whk_1"},
            "connections[0].webhook_secret",
            "takes no `webhook_secret`",
        ),
        (LEANDATA | {"accept_legacy_signature": True}, "connections[0].accept_legacy_signature", "takes no"),
        (
            {k: v for k, v in LEANDATA.items() if k != "api_key"} | {"token": "ld_1"},
            "connections[0].token",
            "takes `api_key`, not `token`",
        ),
        (
            ROCKETLEAD | {"poll_interval_seconds": 30},
            "connections[0].poll_interval_seconds",
            "nothing to poll",
        ),
        (LEEZY | {"options": {"transport": "x"}}, "connections[0].options.transport", "test hook"),
        (LEEZY | {"options": {"sleep": 0}}, "connections[0].options.sleep", "test hook"),
        (
            LEEZY | {"options": {"connection_id": "other"}},
            "connections[0].options.connection_id",
            "test hook",
        ),
        (LEEZY | {"options": {"token": "lz_2"}}, "connections[0].options.token", "on the connection itself"),
        (
            LEEZY | {"options": {"colour": "blue"}},
            "connections[0].options.colour",
            "takes no option `colour`",
        ),
    ],
)
def test_keys_the_provider_does_not_take_are_errors(connection: dict[str, Any], key: str, words: str) -> None:
    message = error({"connections": [connection]})
    assert key in message and words in message


def test_keys_the_provider_takes_are_fine() -> None:
    cfg = parse_config(
        {
            "connections": [
                LEEZY | {"webhook_secret": "lz_whk_1", "page_size": 50},
                LEANDATA | {"watch_emails": ["a@b.example"], "lookback_days": 3},
                ROCKETLEAD,
            ]
        },
        environ={},
    )
    assert cfg.connection("leezy-main") is not None and cfg.connection("rl") is not None


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_never_appear_in_a_repr_or_a_dump() -> None:
    secrets = [
        "lz_live_7f3a9c2e51",
        "lz_whk_51a7",
        "ld_9c2e51a7f3",
        SECRET.removeprefix("whsec_"),
        "pgpass1",
        "redispass1",
    ]
    cfg = parse_config(
        {
            "database": {"url": "postgresql+psycopg://bs:pgpass1@db/bs"},
            "broker": {"url": "redis://:redispass1@cache:6379/0"},
            "connections": [LEEZY | {"webhook_secret": "lz_whk_51a7"}, LEANDATA],
            "subscriptions": [sub("https://crm.example.com/h")],
        },
        environ={},
    )
    shown = repr(cfg) + str(cfg) + str(cfg.model_dump()) + cfg.model_dump_json()
    for secret in secrets:
        assert secret not in shown, secret
    # …and are there for the code that needs them.
    assert cfg.connections[0].settings.adapter_kwargs()["token"] == "lz_live_7f3a9c2e51"
    assert cfg.subscriptions[0].secret.get_secret_value() == SECRET


# --- what depends on the role -----------------------------------------------------------------


def role_error(data: dict[str, Any], role: str, *, sandbox: bool = False, source: str = "site.toml") -> str:
    cfg = parse_config(data, source=source, environ={})
    with pytest.raises(ConfigError) as info:
        validate_for(cfg, role, sandbox=sandbox)
    return str(info.value)


@pytest.mark.parametrize("role", ["web", "worker", "scheduler"])
def test_memory_broker_only_with_run(role: str) -> None:
    message = role_error({"connections": [LEEZY]}, role)
    assert "broker.url: memory://" in message and "bookingsync run" in message and "redis://" in message
    validate_for(parse_config({"connections": [LEEZY]}, environ={}), "run")
    validate_for(
        parse_config({"connections": [LEEZY], "broker": {"url": "redis://cache:6379/0"}}, environ={}), role
    )


def test_actors_need_a_broker_other_processes_can_read() -> None:
    """On memory:// no worker of the user's can take the events: they would pile up in run's memory."""
    actors = [{"actor_name": "crm_sync", "queue_name": "crm", "events": ["meeting.booked"]}]
    message = role_error({"connections": [LEEZY], "actors": actors}, "run")
    assert "actors: [[actors]]" in message and "memory://" in message and "redis://" in message
    validate_for(
        parse_config(
            {"connections": [LEEZY], "actors": actors, "broker": {"url": "redis://cache:6379/0"}}, environ={}
        ),
        "run",
    )


def test_subscriptions_without_connections_are_an_error_for_every_role() -> None:
    data = {"subscriptions": [sub("https://crm.example.com/h")], "broker": {"url": "redis://cache:6379/0"}}
    for role in ("run", "web", "worker", "scheduler"):
        message = role_error(data, role)
        assert "subscriptions: configured without any [[connections]]" in message


def test_a_config_file_without_connections_does_not_start_the_demo() -> None:
    message = role_error({}, "run")
    assert "connections: none configured" in message and "--sandbox" in message


def test_no_config_at_all_is_the_demo() -> None:
    validate_for(parse_config({}, environ={}), "run")


def test_sandbox_refuses_real_connections_and_subscriptions() -> None:
    message = role_error(
        {"connections": [LEEZY], "subscriptions": [sub("https://crm.example.com/h")]}, "run", sandbox=True
    )
    assert (
        "connections: --sandbox" in message
        and "subscriptions: --sandbox would send made-up meetings" in message
    )
    validate_for(parse_config({"database": {"url": "sqlite:///demo.db"}}, environ={}), "run", sandbox=True)


def test_meetings_must_outlive_the_longest_lookback() -> None:
    message = error({"connections": [LEANDATA | {"lookback_days": 30}], "retention": {"meetings_days": 14}})
    assert "retention.meetings_days" in message and "lookback_days (30)" in message
