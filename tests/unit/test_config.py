"""Loading the TOML configuration: defaults, environment overrides, env: references, and errors
that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookingsync.adapters.leandata import LeanDataSettings
from bookingsync.adapters.leezy import LeezySettings
from bookingsync.models.errors import ConfigError
from bookingsync.worker.config import load_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

LEEZY = """
[[connections]]
id = "leezy-main"
provider = "leezy"
base_url = "https://app.leezy.ai"
token = "lz_live_7f3a9c2e51"
"""

LEANDATA = """
[[connections]]
id = "leandata-main"
provider = "leandata"
base_url = "https://api.leandata.com"
api_key = "ld_9c2e51a7f3"
watch_emails = ["lisa@acme.com"]
lookback_days = 3
"""


def write(tmp_path: Path, text: str, name: str = "bookingsync.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    message = str(info.value)
    assert str(path) in message, message
    return message


# --- loading ----------------------------------------------------------------------------------


def test_defaults_with_no_file() -> None:
    cfg = load_config(None, environ={})
    assert cfg.source == "<defaults>"
    assert cfg.database.url == "sqlite:///bookingsync.db"
    assert cfg.broker.url == "memory://"
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.connections == cfg.subscriptions == cfg.routes == ()
    assert cfg.delivery.max_attempts >= 1


def test_bookingsync_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///elsewhere.db"\n')
    cfg = load_config(None, environ={"BOOKINGSYNC_CONFIG": str(path)})
    assert cfg.source == str(path)
    assert cfg.database.url == "sqlite:///elsewhere.db"


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[database]
url = "postgresql+psycopg://bs@db/bookingsync"
[broker]
url = "redis://127.0.0.1:6379/0"
[server]
host = "0.0.0.0"
port = 9000
[delivery]
max_attempts = 4
{LEEZY}
webhook_secret = "env:LEEZY_WEBHOOK_SECRET"
{LEANDATA}
[[subscriptions]]
id = "crm"
url = "https://crm.example.com/hooks/meetings"
secret = "{SECRET}"
events = ["meeting.booked", "meeting.deleted"]

[connections.options]
link_id = "Lw5mjKK"

[[routes]]
sources = ["leezy-main"]
targets = ["leandata-main"]
""",
    )
    cfg = load_config(path, environ={"LEEZY_WEBHOOK_SECRET": "lz_whk_51a7f3c9"})
    assert cfg.source == str(path)
    assert cfg.database.url.startswith("postgresql+psycopg://")
    assert cfg.broker.url == "redis://127.0.0.1:6379/0"
    assert (cfg.server.host, cfg.server.port, cfg.delivery.max_attempts) == ("0.0.0.0", 9000, 4)
    leezy = cfg.connection("leezy-main")
    assert leezy is not None and isinstance(leezy.settings, LeezySettings)
    assert leezy.settings.token.get_secret_value() == "lz_live_7f3a9c2e51"
    assert leezy.settings.webhook_secret is not None
    assert leezy.settings.webhook_secret.get_secret_value() == "lz_whk_51a7f3c9"
    leandata = cfg.connection("leandata-main")
    assert leandata is not None and isinstance(leandata.settings, LeanDataSettings)
    assert leandata.settings.api_key.get_secret_value() == "ld_9c2e51a7f3"
    assert leandata.settings.watch_emails == ("lisa@acme.com",) and leandata.lookback_days == 3
    crm = cfg.subscription("crm")
    assert crm is not None and [e.value for e in crm.events] == ["meeting.booked", "meeting.deleted"]
    assert cfg.routes[0].sources == ("leezy-main",) and cfg.routes[0].targets == ("leandata-main",)


def test_env_overrides_a_section_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///file.db"\n')
    cfg = load_config(
        path,
        environ={
            "BOOKINGSYNC_DATABASE__URL": "postgresql+psycopg://bs@db/bs",
            "BOOKINGSYNC_SERVER__PORT": "9100",
        },
    )
    assert cfg.database.url == "postgresql+psycopg://bs@db/bs"
    assert cfg.server.port == 9100


def test_env_overrides_apply_without_a_file() -> None:
    cfg = load_config(
        None,
        environ={
            "BOOKINGSYNC_DATABASE__URL": "sqlite:///from-env.db",
            "BOOKINGSYNC_DELIVERY__MAX_ATTEMPTS": "3",
        },
    )
    assert cfg.database.url == "sqlite:///from-env.db"
    assert cfg.delivery.max_attempts == 3


def test_env_overrides_a_connection_key_by_id(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY)
    cfg = load_config(
        path,
        environ={
            "BOOKINGSYNC_CONNECTIONS__LEEZY_MAIN__TOKEN": "lz_from_env_1c9",
            "BOOKINGSYNC_CONNECTIONS__LEEZY_MAIN__POLL_INTERVAL_SECONDS": "15",
        },
    )
    conn = cfg.connection("leezy-main")
    assert (
        conn is not None
        and conn.settings.token is not None
        and conn.settings.token.get_secret_value() == "lz_from_env_1c9"
        and conn.poll_interval_seconds == 15
    )


def test_env_override_of_an_unconfigured_connection_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY)
    message = load_error(path, {"BOOKINGSYNC_CONNECTIONS__LEEZY_SPARE__TOKEN": "lz_x1"})
    assert "BOOKINGSYNC_CONNECTIONS__LEEZY_SPARE__TOKEN" in message and "not configured" in message


def test_env_override_of_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY)
    message = load_error(path, {"BOOKINGSYNC_DATABASE__URLL": "sqlite:///x.db"})
    assert "database.urll" in message


def test_other_bookingsync_variables_are_not_config(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY)
    cfg = load_config(
        path, environ={"BOOKINGSYNC_TEST_POSTGRES_URL": "postgresql://x", "BOOKINGSYNC_CONFIG": "/nope"}
    )
    assert cfg.source == str(path)


def test_env_override_with_a_numeric_looking_token_stays_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY)
    cfg = load_config(path, environ={"BOOKINGSYNC_CONNECTIONS__LEEZY_MAIN__TOKEN": "1234567890"})
    conn = cfg.connection("leezy-main")
    assert (
        conn is not None
        and conn.settings.token is not None
        and conn.settings.token.get_secret_value() == "1234567890"
    )


def test_env_reference_is_resolved(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        LEEZY.replace('"lz_live_7f3a9c2e51"', '"env:LEEZY_TOKEN"')
        + """
[[subscriptions]]
id = "crm"
url = "https://crm.example.com/hook"
secret = "env:CRM_SECRET"
""",
    )
    cfg = load_config(path, environ={"LEEZY_TOKEN": "lz_live_from_env", "CRM_SECRET": SECRET})
    conn, sub = cfg.connection("leezy-main"), cfg.subscription("crm")
    assert (
        conn is not None
        and conn.settings.token is not None
        and conn.settings.token.get_secret_value() == "lz_live_from_env"
    )
    assert sub is not None and sub.secret.get_secret_value() == SECRET


def test_env_reference_to_unset_variable_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.replace('"lz_live_7f3a9c2e51"', '"env:LEEZY_TOKEN"'))
    message = load_error(path, {"OTHER": "x"})
    assert "connections[0].token" in message
    assert "LEEZY_TOKEN" in message and "not set" in message


# --- errors: each names the file and the key ----------------------------------------------------


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.replace("token =", "tokn ="))
    message = load_error(path)
    assert "connections[0].tokn" in message


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[databse]\nurl = "sqlite:///x.db"\n')
    assert "databse" in load_error(path)


def test_unknown_key_in_a_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 8080\n")
    assert "server.prot" in load_error(path)


def test_wrong_provider(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.replace('provider = "leezy"', 'provider = "calendly"'))
    message = load_error(path)
    assert "connections[0].provider" in message and "calendly" in message


@pytest.mark.parametrize(
    ("block", "needed"),
    [
        (LEEZY.replace('token = "lz_live_7f3a9c2e51"', ""), "token"),
        (LEANDATA.replace('api_key = "ld_9c2e51a7f3"', ""), "api_key"),
        # A leandata connection is not satisfied by a token.
        (LEANDATA.replace('api_key = "ld_9c2e51a7f3"', 'token = "ld_9c2e51a7f3"'), "api_key"),
    ],
)
def test_missing_credential_per_provider(tmp_path: Path, block: str, needed: str) -> None:
    message = load_error(write(tmp_path, block))
    assert "connections[0]" in message and f"`{needed}`" in message


def test_missing_credential_names_the_right_connection(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY + LEANDATA.replace('api_key = "ld_9c2e51a7f3"', ""))
    message = load_error(path)
    assert "connections[1]" in message and "`api_key`" in message


@pytest.mark.parametrize("value", ["…", "...", "changeme", "CHANGE-ME", "replace-me", "lz_xxx"])
def test_placeholder_secret_is_refused(tmp_path: Path, value: str) -> None:
    message = load_error(write(tmp_path, LEEZY.replace("lz_live_7f3a9c2e51", value)))
    assert "connections[0].token" in message and "placeholder" in message


def test_placeholder_subscription_secret_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\nsecret = "whsec_…"\n'
    )
    message = load_error(path)
    assert "subscriptions[0].secret" in message and "placeholder" in message


def test_placeholder_from_env_reference_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.replace('"lz_live_7f3a9c2e51"', '"env:LEEZY_TOKEN"'))
    message = load_error(path, {"LEEZY_TOKEN": "changeme"})
    assert "connections[0].token" in message


def test_duplicate_connection_ids(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, LEEZY + LEEZY))
    assert "unique" in message and "leezy-main" in message and "connection" in message


def test_duplicate_subscription_ids(tmp_path: Path) -> None:
    sub = f'[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\nsecret = "{SECRET}"\n'
    message = load_error(write(tmp_path, sub + sub))
    assert "unique" in message and "crm" in message and "subscription" in message


def test_route_naming_an_unknown_connection(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY + '[[routes]]\nsources = ["leezy-main"]\ntargets = ["rocketlead-main"]\n')
    message = load_error(path)
    assert "rocketlead-main" in message and "not configured" in message


ROCKETLEAD = """
[[connections]]
id = "rocketlead-main"
provider = "rocketlead"
base_url = "https://api.rocketlead.io"
token = "rocketlead_live_0123456789abcdef"
[connections.options]
calendar_id = "cal-1"
appointment_type_id = "type-1"
"""


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (LEEZY, "leezy is read-only"),
        (LEANDATA, "options.link_id"),
        (
            '[[connections]]\nid = "hs"\nprovider = "hubspot"\nbase_url = "https://api.hubapi.com"\ntoken = "pat-na1-1"\n',
            "options.meeting_slug",
        ),
        (
            '[[connections]]\nid = "mg"\nprovider = "meetergo"\nbase_url = "https://api.meetergo.com"\n'
            'token = "rgo-abc123"\n',
            "options.meeting_type_id",
        ),
    ],
)
def test_a_route_into_a_target_that_cannot_book_is_refused(tmp_path: Path, target: str, problem: str) -> None:
    target_id = target.split('id = "', 1)[1].split('"', 1)[0]
    source = ROCKETLEAD if target_id != "rocketlead-main" else LEEZY
    source_id = "rocketlead-main" if source is ROCKETLEAD else "leezy-main"
    path = write(
        tmp_path, target + source + f'[[routes]]\nsources = ["{source_id}"]\ntargets = ["{target_id}"]\n'
    )
    message = load_error(path)
    assert "routes[0].targets[0]" in message and "cannot be a route target" in message and problem in message


def test_a_route_into_a_target_that_books_passes(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            LEEZY + ROCKETLEAD + '[[routes]]\nsources = ["leezy-main"]\ntargets = ["rocketlead-main"]\n',
        ),
        environ={},
    )
    assert cfg.routes[0].targets == ("rocketlead-main",)
    assert cfg.mirroring.max_writes_per_hour == 5


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (LEEZY + LEEZY, "connections[1].id"),
        (
            LEEZY + '[[routes]]\nsources = ["leezy-main"]\ntargets = ["rocketlead-main"]\n',
            "routes[0].targets[0]",
        ),
    ],
)
def test_reference_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert key in load_error(write(tmp_path, text))


@pytest.mark.parametrize("secret", ["sk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_abc"])
def test_subscription_secret_must_be_standard_webhooks(tmp_path: Path, secret: str) -> None:
    path = write(
        tmp_path, f'[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\nsecret = "{secret}"\n'
    )
    message = load_error(path)
    assert "subscriptions[0].secret" in message and "whsec_" in message


def test_subscription_secret_must_be_valid_base64(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\nsecret = "whsec_abcdefghi"\n',
    )
    assert "subscriptions[0].secret" in load_error(path)


def test_unknown_event_type_in_subscription(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\n'
        f'secret = "{SECRET}"\nevents = ["meeting.booked", "meeting.exploded"]\n',
    )
    assert "subscriptions[0].events[1]" in load_error(path)


def test_bad_connection_id(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, LEEZY.replace('id = "leezy-main"', 'id = "Leezy Main"')))
    assert "connections[0].id" in message


def test_bad_broker_url(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[broker]\nurl = "kafka://rabbit"\n'))
    assert "broker.url" in message and "amqp://" in message and "redis://" in message


def test_wrong_type(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[server]\nport = "eighty"\n'))
    assert "server.port" in message


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[server]\nport = "eighty"\nprot = 1\n'))
    assert "server.port" in message and "server.prot" in message


def test_invalid_toml(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[database\nurl = "sqlite:///x.db"\n'))
    assert "not valid TOML" in message and "line 1" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    message = load_error(path)
    assert "does not exist" in message
    assert not path.exists()
