"""Fixtures serving the simulators over real HTTP on loopback, with a clock tests can move."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox import leandata, leezy
from bookingsync.sandbox.server import serve_app

START = datetime(2030, 5, 6, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Served:
    state: object
    url: str
    client: httpx.Client


@pytest.fixture
def leezy_sandbox(clock: Clock) -> Iterator[Served]:
    state = leezy.LeezyState(now=clock)
    server = serve_app(leezy.create_app(state))
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Served(state, server.url, client)
    server.stop()
    state.close()


@pytest.fixture
def leandata_sandbox(clock: Clock) -> Iterator[Served]:
    state = leandata.LeanDataState(now=clock)
    server = serve_app(leandata.create_app(state))
    with httpx.Client(
        base_url=server.url, timeout=5.0, headers={"X-Api-Key": leandata.DEFAULT_API_KEY}
    ) as client:
        yield Served(state, server.url, client)
    server.stop()


@dataclass
class Receiver:
    """A webhook receiver over real HTTP that stores raw bodies and answers `status`."""

    url: str = ""
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        box.received.append((dict(request.headers), await request.body()))
        box.arrived.set()
        return JSONResponse({"ok": box.status < 300}, box.status)

    server = serve_app(app)
    box.url = f"{server.url}/hook"
    yield box
    server.stop()
