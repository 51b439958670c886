"""The `bookingsync` command as real subprocesses: config errors, schema, the read-only reports."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.worker import store
from bookingsync.worker.db import make_engine, transaction

BIN = Path(sys.executable).parent / "bookingsync"
if not BIN.exists():  # pragma: no cover - a venv without the console script
    BIN = Path(shutil.which("bookingsync") or "bookingsync")

BAD_KEY = """
[[connections]]
id = "leezy-main"
provider = "leezy"
base_url = "https://app.leezy.ai"
tokn = "lz_live_7f3a9c2e51"
"""


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGSYNC_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}, **extra)
    return env


def bookingsync(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both


def files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bookingsync.toml"
    # Loopback targets (nothing listens there): allowed explicitly, as a test setup must.
    path.write_text(
        f'allow_private_targets = true\n[database]\nurl = "sqlite:///{tmp_path / "bs.db"}"\n\n'
        '[[connections]]\nid = "leezy-main"\nprovider = "leezy"\nbase_url = "http://127.0.0.1:9"\n'
        'token = "lz_live_7f3a9c2e51"\n\n'
        '[[subscriptions]]\nid = "crm"\nurl = "http://127.0.0.1:9/hook"\n'
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
    )
    return path


@pytest.fixture
def migrated(tmp_path: Path, config: Path) -> Path:
    result = bookingsync(tmp_path, "db", "upgrade", "--config", str(config))
    assert result.returncode == 0, result.stderr
    return config


# --- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["status"],
        ["config", "check"],
        ["meetings", "list"],
        ["deliveries", "replay", "--all-dead"],
        ["run"],
        ["worker"],
        ["scheduler"],
    ],
)
def test_config_error_exits_2_names_file_and_key_and_touches_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_KEY)  # no [database]: the default sqlite:///bookingsync.db, relative to cwd
    result = bookingsync(tmp_path, *command, "--config", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(bad) in result.stderr and "connections[0].tokn" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"bad.toml"}


def test_config_error_through_bookingsync_config_env(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_KEY)
    result = bookingsync(tmp_path, "status", env=cli_env(BOOKINGSYNC_CONFIG=str(bad)))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "connections[0].tokn" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"bad.toml"}


def test_unset_env_reference_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(BAD_KEY.replace('tokn = "lz_live_7f3a9c2e51"', 'token = "env:LEEZY_TOKEN_FOR_TEST"'))
    result = bookingsync(tmp_path, "db", "upgrade", "--config", str(cfg))
    assert result.returncode == 2
    assert str(cfg) in result.stderr and "connections[0].token" in result.stderr
    assert "LEEZY_TOKEN_FOR_TEST" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"c.toml"}


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = bookingsync(tmp_path, "status", "--config", str(tmp_path / "nowhere.toml"))
    assert result.returncode == 2
    assert "nowhere.toml" in result.stderr and "does not exist" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == set()


def test_invalid_toml_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[database\n")
    result = bookingsync(tmp_path, "db", "upgrade", "--config", str(cfg))
    assert result.returncode == 2
    assert str(cfg) in result.stderr and "not valid TOML" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"c.toml"}


def test_config_error_prints_bracketed_text_verbatim(tmp_path: Path) -> None:
    folder = tmp_path / "[prod]"
    folder.mkdir()
    bad = folder / "bad.toml"
    bad.write_text(BAD_KEY)
    result = bookingsync(tmp_path, "config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr


def test_config_error_with_closing_tag_lookalike_is_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_KEY.replace('tokn = "lz_live_7f3a9c2e51"', 'token = "[/changeme]"'))
    result = bookingsync(tmp_path, "config", "check", "--config", str(bad))
    no_traceback(result)
    assert result.returncode == 2
    assert "connections[0].token" in result.stderr and "[/changeme]" in result.stderr


# --- schema and reports on a fresh database ----------------------------------------------------


def test_db_upgrade_creates_the_schema(tmp_path: Path, config: Path) -> None:
    result = bookingsync(tmp_path, "db", "upgrade", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    no_traceback(result)
    with sqlite3.connect(tmp_path / "bs.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"meetings", "events", "deliveries", "subscription_states", "alembic_version"} <= tables
    assert len(version) == 1
    again = bookingsync(tmp_path, "db", "upgrade", "--config", str(config))  # idempotent
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        (
            ["status"],
            [
                "work",
                "table",
                "by status",
                "meetings",
                "events",
                "deliveries",
                "next timer",
                "connections",
                "provider",
                "cursor",
                "leases",
                "holder",
            ],
        ),
        (
            ["meetings", "list"],
            ["meetings", "id", "status", "start", "end", "title", "attendee", "links", "booked", "version"],
        ),
        (
            ["events", "list"],
            [
                "events",
                "event_id",
                "type",
                "meeting",
                "seq",
                "status",
                "occurred_at",
                "due_at",
                "published_at",
            ],
        ),
        (["events", "list", "--status", "pending"], ["event_id", "type"]),
        (
            ["deliveries", "list"],
            [
                "deliveries",
                "id",
                "event_id",
                "subscription",
                "attempts",
                "last status",
                "last error",
                "due_at",
            ],
        ),
        (
            ["deliveries", "list", "--dead"],
            ["dead deliveries", "event_id", "subscription", "attempts", "last status"],
        ),
        (["quarantine", "list"], ["quarantine", "id", "connection", "source", "external_id", "reason"]),
    ],
)
def test_reports_on_a_fresh_database(
    tmp_path: Path, migrated: Path, command: list[str], headers: list[str]
) -> None:
    result = bookingsync(tmp_path, *command, "--config", str(migrated))
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result)
    for header in headers:
        assert header in result.stdout, (header, result.stdout)


def test_deliveries_replay_without_arguments_exits_2_with_a_sentence(tmp_path: Path, config: Path) -> None:
    result = bookingsync(tmp_path, "deliveries", "replay", "--config", str(config))
    assert result.returncode == 2
    assert "name a delivery id or pass --all-dead" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"bookingsync.toml"}  # refused before opening the database


def test_deliveries_replay_all_dead_on_a_fresh_database(tmp_path: Path, migrated: Path) -> None:
    result = bookingsync(tmp_path, "deliveries", "replay", "--all-dead", "--config", str(migrated))
    assert result.returncode == 0, result.stderr
    assert "0 deliveries queued again" in result.stdout


def test_subscriptions_enable_of_an_enabled_subscription(tmp_path: Path, migrated: Path) -> None:
    result = bookingsync(tmp_path, "subscriptions", "enable", "crm", "--config", str(migrated))
    assert result.returncode == 0, result.stderr
    assert "subscription crm was not disabled" in result.stdout


def test_config_check_prints_ok(tmp_path: Path, config: Path) -> None:
    result = bookingsync(tmp_path, "config", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"{config}: ok" in result.stdout
    assert "1 connection(s), 1 subscription(s)" in result.stdout
    assert "whsec_" not in result.stdout  # secrets stay hidden
    assert files(tmp_path) == {"bookingsync.toml"}  # a check opens no database


def test_config_check_without_a_file_uses_defaults(tmp_path: Path) -> None:
    result = bookingsync(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "<defaults>: ok" in result.stdout


# --- reports show what the store holds ----------------------------------------------------------


def add_meeting(config_dir: Path, title: str, external_id: str = "m1") -> None:
    engine = make_engine(f"sqlite:///{config_dir / 'bs.db'}")
    now = datetime.now(UTC)
    start = now + timedelta(days=1)
    record = SourceRecord(
        external_id=external_id,
        meeting=Meeting(
            status="scheduled",
            title=title,
            start=start,
            end=start + timedelta(minutes=30),
            attendee={"email": "lisa@acme.com"},
        ),
    )
    try:
        with transaction(engine) as session:
            store.apply_record(
                session,
                connection="leezy-main",
                provider="leezy",
                record=record,
                raw={"id": external_id},
                now=now,
                grace=timedelta(minutes=5),
            )
    finally:
        engine.dispose()


def test_reports_show_a_stored_meeting(tmp_path: Path, migrated: Path) -> None:
    add_meeting(tmp_path, "Quarterly review")
    meetings = bookingsync(tmp_path, "meetings", "list", "--config", str(migrated))
    assert meetings.returncode == 0, meetings.stderr
    assert "Quarterly review" in meetings.stdout and "leezy-main:m1" in meetings.stdout
    events = bookingsync(tmp_path, "events", "list", "--config", str(migrated))
    assert events.returncode == 0, events.stderr
    for kind in ("meeting.booked", "meeting.hasStarted", "meeting.hasEnded"):
        assert kind in events.stdout
    status = bookingsync(tmp_path, "status", "--config", str(migrated))
    assert status.returncode == 0, status.stderr
    assert "pending=3" in status.stdout


def test_meetings_list_prints_titles_with_brackets_verbatim(tmp_path: Path, migrated: Path) -> None:
    add_meeting(tmp_path, "Sync [/internal] [draft]")
    result = bookingsync(tmp_path, "meetings", "list", "--config", str(migrated))
    no_traceback(result)
    assert result.returncode == 0
    assert "Sync [/internal] [draft]" in result.stdout
