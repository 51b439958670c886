"""start_sandbox over real sockets, the demo driver, and the sandbox's import boundary."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bookingsync.sandbox.demo import DEMO_PROSPECT_EMAILS, DemoDriver
from bookingsync.sandbox.server import RunningSandbox, start_sandbox

from .conftest import Clock

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "sandbox"
FORBIDDEN = ("bookingsync.adapters", "bookingsync.models", "bookingsync.worker")


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox()
    yield running
    running.stop()


def test_start_sandbox_serves_both_providers(sandbox: RunningSandbox) -> None:
    leezy = httpx.get(
        f"{sandbox.leezy_url}/api/v1/meetings", headers={"Authorization": f"Bearer {sandbox.leezy_token}"}
    )
    assert leezy.status_code == 200 and leezy.json()["meta"]["total"] == 0
    leandata = httpx.get(
        f"{sandbox.leandata_url}/v1/meetings",
        params={"prospectEmail": "a@example.com"},
        headers={"X-Api-Key": sandbox.leandata_api_key},
    )
    assert (leandata.status_code, leandata.json()) == (200, [])
    assert sandbox.leezy_url != sandbox.leandata_url


def test_stop_closes_the_ports() -> None:
    running = start_sandbox()
    url = running.leezy_url
    running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v1/meetings", timeout=1.0)


def test_demo_driver_books_and_cancels_over_time(sandbox: RunningSandbox) -> None:
    driver = DemoDriver(sandbox, interval_seconds=0.01, seed=7)
    driver.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kinds = {" ".join(a.split()[:2]) for a in driver.actions}
        if {"leezy book", "leezy cancel", "leandata book", "leandata cancel"} <= kinds:
            break
        time.sleep(0.05)
    driver.stop()
    assert {"leezy book", "leezy cancel", "leandata book", "leandata cancel"} <= kinds
    listed = httpx.get(
        f"{sandbox.leezy_url}/api/v1/meetings",
        params={"status": "cancelled"},
        headers={"Authorization": f"Bearer {sandbox.leezy_token}"},
    ).json()
    assert listed["meta"]["total"] >= 1
    found = [
        m
        for email in DEMO_PROSPECT_EMAILS
        for m in httpx.get(
            f"{sandbox.leandata_url}/v1/meetings",
            params={"prospectEmail": email},
            headers={"X-Api-Key": sandbox.leandata_api_key},
        ).json()
    ]
    assert found and {m["bookIt"]["status"] for m in found} & {"canceled"}
    for meeting in sandbox.leezy.meetings():
        assert 20 <= (meeting.end_time - meeting.start_time).total_seconds() <= 60
        if meeting.status == "scheduled":  # updated_at is when it was booked or moved
            assert 20 <= (meeting.start_time - meeting.updated_at).total_seconds() <= 90


def test_demo_driver_is_deterministic_with_a_seed() -> None:
    def kinds(seed: int) -> list[str]:
        running = start_sandbox(now=Clock())
        try:
            driver = DemoDriver(running, seed=seed)
            for _ in range(30):
                driver.step()
            return [" ".join(a.split()[:2]) for a in driver.actions]
        finally:
            running.stop()

    assert kinds(3) == kinds(3)
    assert kinds(3) != kinds(4)


def test_sandbox_imports_nothing_from_the_service() -> None:
    offenders = []
    for path in SANDBOX_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(FORBIDDEN)]
    assert offenders == []
