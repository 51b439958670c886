"""The CLI a person can use: `config check` is `run`'s validation, read-only commands never create a
database, failing commands exit non-zero, tables and JSON keep full ids.

Most cases run the command in-process (typer's runner: the same code, without paying a Python
start-up per case); the first checks the same through a real process.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from bookingsync.models.tables import CursorRow, QuarantineRow
from bookingsync.worker import reports
from bookingsync.worker.cli import app
from bookingsync.worker.db import make_engine, transaction
from tests.unit.test_cli import add_meeting, bookingsync, files, no_traceback


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(cwd: Path, *args: str, columns: str = "200") -> Ran:
    """`bookingsync ARGS` in this process, from `cwd`, without BOOKINGSYNC_* from the environment."""
    env = {name: None for name in os.environ if name.startswith("BOOKINGSYNC_")} | {"COLUMNS": columns}
    before = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=env)
    finally:
        os.chdir(before)
        for handler in list(logging.getLogger().handlers):  # the command's log handler wrote to the runner
            if getattr(handler, "bookingsync", False):
                logging.getLogger().removeHandler(handler)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEEZY = '[[connections]]\nid = "leezy-main"\nprovider = "leezy"\nbase_url = "{base}"\ntoken = "lz_live_7f3a9c2e51"\n'


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A migrated SQLite site with one Leezy connection and one subscription (loopback, allowed)."""
    path = write(
        tmp_path,
        f'allow_private_targets = true\n[database]\nurl = "sqlite:///{tmp_path / "bs.db"}"\n'
        + LEEZY.format(base="http://127.0.0.1:9")
        + f'[[subscriptions]]\nid = "crm"\nurl = "http://127.0.0.1:9/hook"\nsecret = "{SECRET}"\n',
    )
    result = cli(tmp_path, "db", "upgrade", "--config", str(path))
    assert result.returncode == 0, result.stderr
    return path


# --- config check is run's validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (LEEZY.format(base="not a url"), "connections[0].base_url"),
        (
            LEEZY.format(base="https://app.leezy.example")
            + f'[[subscriptions]]\nid = "crm"\nurl = "http://169.254.169.254/latest/meta-data/"\nsecret = "{SECRET}"\n',
            "subscriptions[0].url",
        ),
        (
            '[database]\nurl = "postgres://bs:pw@db/bookingsync"\n'
            + LEEZY.format(base="https://app.leezy.example"),
            "database.url",
        ),
    ],
)
def test_config_check_refuses_exactly_what_run_refuses(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    check = cli(tmp_path, "config", "check", "--config", str(path))
    run = cli(tmp_path, "run", "--config", str(path))
    assert check.returncode == run.returncode == 2
    assert check.stderr == run.stderr and f"{key}: " in check.stderr and str(path) in check.stderr
    assert len(check.stderr.strip().splitlines()) == 1
    no_traceback(check)
    no_traceback(run)
    assert files(tmp_path) == {"site.toml"}


def test_as_real_processes_too(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.format(base="http://127.0.0.1:9/"))
    check = bookingsync(tmp_path, "config", "check", "--config", str(path))
    run = bookingsync(tmp_path, "run", "--config", str(path))
    assert check.returncode == run.returncode == 2 and check.stderr == run.stderr
    assert (
        "connections[0].base_url: http://127.0.0.1:9/ is refused: 127.0.0.1 is a loopback address"
        in run.stderr
    )
    no_traceback(run)
    missing = bookingsync(
        tmp_path,
        "status",
        "--config",
        str(write(tmp_path, '[database]\nurl = "sqlite:///x.db"\n', "other.toml")),
    )
    assert missing.returncode == 1 and "no database at" in missing.stderr
    assert files(tmp_path) == {"site.toml", "other.toml"}


def test_memory_broker_is_refused_for_separate_roles(tmp_path: Path) -> None:
    path = write(tmp_path, LEEZY.format(base="https://app.leezy.example"))
    check = cli(tmp_path, "config", "check", "--role", "worker", "--config", str(path))
    worker = cli(tmp_path, "worker", "--config", str(path))
    assert check.returncode == worker.returncode == 2 and check.stderr == worker.stderr
    assert "broker.url: memory://" in worker.stderr
    ok = cli(tmp_path, "config", "check", "--config", str(path))
    assert ok.returncode == 0 and "ok for run" in ok.stdout
    assert files(tmp_path) == {"site.toml"}


def test_subscriptions_without_connections_never_start_a_demo(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'[[subscriptions]]\nid = "crm"\nurl = "https://crm.example.com/h"\nsecret = "{SECRET}"\n'
    )
    for args in (["run"], ["run", "--sandbox"], ["config", "check"]):
        result = cli(tmp_path, *args, "--config", str(path))
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "subscriptions" in result.stderr and "Sandbox" not in result.stdout
    assert files(tmp_path) == {"site.toml"}


# --- read-only commands never create a database ------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["status"], ["meetings", "list"], ["events", "list"], ["prune"], ["quarantine", "replay", "1"]],
)
def test_commands_on_a_missing_database_fail_and_create_nothing(tmp_path: Path, command: list[str]) -> None:
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path / "nothing-yet.db"}"\n')
    result = cli(tmp_path, *command, "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"no database at {tmp_path / 'nothing-yet.db'}" in result.stderr and "db upgrade" in result.stderr
    no_traceback(result)
    assert files(tmp_path) == {"site.toml"}


def test_a_database_without_the_schema_is_not_migrated_by_a_report(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path / "empty.db"}"\n')
    result = cli(tmp_path, "status", "--config", str(path))
    assert result.returncode == 1 and "no bookingsync schema" in result.stderr
    with sqlite3.connect(tmp_path / "empty.db") as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_reports_say_which_database_they_read(tmp_path: Path, site: Path) -> None:
    result = cli(tmp_path, "status", "--config", str(site))
    assert result.returncode == 0 and f"database sqlite:///{tmp_path / 'bs.db'}" in result.stderr


# --- failing commands exit non-zero -----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        (["quarantine", "replay", "999"], 1, "quarantine item 999 does not exist"),
        (["subscriptions", "enable", "nosuch"], 1, "no subscription named 'nosuch'"),
        (["events", "list", "--status", "bogus"], 2, "'bogus' is not one of"),
        (["deliveries", "replay", "999"], 1, "delivery 999 does not exist"),
        (["events", "list", "--meeting", "mtg_nothing"], 1, "no meeting id starts with 'mtg_nothing'"),
        (["config", "check", "--role", "cook"], 2, "--role 'cook' is not a role"),
    ],
)
def test_failing_commands_exit_non_zero(
    tmp_path: Path, site: Path, command: list[str], code: int, words: str
) -> None:
    result = cli(tmp_path, *command, "--config", str(site))
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr
    no_traceback(result)


# --- full ids, --json, prefixes, readable status ----------------------------------------------


def test_json_output_and_full_ids_and_meeting_prefixes(tmp_path: Path, site: Path) -> None:
    add_meeting(tmp_path, "First", "m1")
    add_meeting(tmp_path, "Second", "m2")
    listed = cli(tmp_path, "meetings", "list", "--json", "--config", str(site))
    assert listed.returncode == 0, listed.stderr
    meetings = json.loads(listed.stdout)
    assert {m["title"] for m in meetings} == {"First", "Second"}
    first = next(m for m in meetings if m["title"] == "First")
    assert len(first["id"]) == len("mtg_") + 32 and first["links"] == ["leezy-main:m1"]
    table = cli(tmp_path, "meetings", "list", "--config", str(site))
    assert first["id"] in table.stdout  # the table prints the id whole

    prefix = first["id"][:12]
    events = cli(tmp_path, "events", "list", "--json", "--meeting", prefix, "--config", str(site))
    assert events.returncode == 0, events.stderr
    rows = json.loads(events.stdout)
    assert rows and {row["meeting"] for row in rows} == {first["id"]}
    ambiguous = cli(tmp_path, "events", "list", "--meeting", "mtg_", "--config", str(site))
    assert ambiguous.returncode == 1 and "more than one meeting id" in ambiguous.stderr

    engine = make_engine(f"sqlite:///{tmp_path / 'bs.db'}")
    with transaction(engine) as session:
        session.add(
            CursorRow(
                connection="leezy-main",
                value={"since": "2026-03-02T09:00:00Z", "offset": 100},
                updated_at=datetime.now(UTC),
            )
        )
    engine.dispose()
    status = cli(tmp_path, "status", "--json", "--config", str(site))
    assert status.returncode == 0, status.stderr
    [connection] = json.loads(status.stdout)["connections"]
    assert (
        connection["provider"] == "leezy" and connection["cursor"] == "offset=100, since=2026-03-02T09:00:00Z"
    )
    assert "ago" in connection["cursor saved"]
    text = cli(tmp_path, "status", "--config", str(site))
    assert "leezy" in text.stdout and "offset=100, since=2026-03-02T09:00:00Z" in text.stdout


def test_a_narrow_terminal_never_cuts_an_id() -> None:
    long_id = "mtg_" + "0123456789abcdef" * 2
    rows = [
        {
            "id": long_id,
            "status": "scheduled",
            "title": "A rather long title " * 4,
            "links": ["leezy-main:m1"],
        }
    ]
    out = StringIO()
    Console(file=out, width=60, force_terminal=False).print(
        reports.table("meetings", rows, ["id", "status", "title", "links"])
    )
    assert long_id in out.getvalue()


def test_version_and_flags_that_show_as_flags(tmp_path: Path) -> None:
    version = cli(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("bookingsync ")
    helped = cli(tmp_path, "deliveries", "list", "--help", columns="100")
    assert "--dead" in helped.stdout and "--json" in helped.stdout and "<bool>" not in helped.stdout
    run_help = cli(tmp_path, "run", "--help", columns="100")
    assert "--sandbox" in run_help.stdout and "--no-sandbox" not in run_help.stdout


def test_prune_reports_each_policy(tmp_path: Path, site: Path) -> None:
    result = cli(tmp_path, "prune", "--config", str(site))
    assert result.returncode == 0, result.stderr
    for policy in ("receipt_bodies", "receipts", "events", "meetings", "quarantine"):
        assert policy in result.stdout
    assert "free pages given back" in result.stdout


def test_quarantine_replay_of_an_item_that_still_fails_exits_1(tmp_path: Path, site: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bs.db'}")
    now = datetime.now(UTC)
    with transaction(engine) as session:
        row = QuarantineRow(
            connection="leezy-main",
            source="poll",
            raw={"id": "bad"},
            raw_hash="h",
            reason="x",
            created_at=now,
            last_seen_at=now,
        )
        session.add(row)
        session.flush()
        item = row.id
    result = cli(tmp_path, "quarantine", "replay", str(item), "--config", str(site))
    assert result.returncode == 1 and "still cannot be normalised" in result.stderr
    with transaction(engine) as session:
        session.execute(update(QuarantineRow).values(status="replayed"))
    again = cli(tmp_path, "quarantine", "replay", str(item), "--config", str(site))
    assert again.returncode == 1 and "already replayed" in again.stderr
    engine.dispose()
