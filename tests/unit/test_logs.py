"""Logs: one JSON object per line with the bound context, or text with the context appended."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bookingsync.worker import logs


@pytest.fixture
def root_logger() -> Iterator[None]:
    """logs.configure adds its handler to the root logger; take it away afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_bound_context(root_logger: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    log = logging.getLogger("bookingsync.worker.delivery")
    with logs.bound(connection="leezy-main", delivery=17):
        logs.bind(meeting="mtg_1", event="evt_1")
        log.warning("delivery %s: %s", 17, "dead")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("it failed")
    log.info("outside")
    log.debug("not at INFO")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 3
    first, failed, outside = lines
    assert first["level"] == "WARNING" and first["logger"] == "bookingsync.worker.delivery"
    assert first["message"] == "delivery 17: dead" and first["time"].endswith("Z")
    assert {k: first[k] for k in ("connection", "delivery", "meeting", "event")} == {
        "connection": "leezy-main",
        "delivery": 17,
        "meeting": "mtg_1",
        "event": "evt_1",
    }
    assert "RuntimeError: boom" in failed["exception"] and failed["delivery"] == 17
    assert "delivery" not in outside and "meeting" not in outside


def test_text_lines_append_the_context(root_logger: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "text")
    with logs.bound(connection="leezy-main"):
        logging.getLogger("bookingsync.worker.poll").warning("poll stopped")
    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING bookingsync.worker.poll: poll stopped connection=leezy-main")


def test_bind_outside_a_bound_block_changes_nothing() -> None:
    logs.bind(meeting="mtg_leak")
    assert logs.context() == {}
