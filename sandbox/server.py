"""Run the provider simulators over real HTTP on loopback.

`serve_app` runs one ASGI app with uvicorn in a daemon thread on a socket bound here, so port 0
yields a free port whose number is known before the first request. `start_sandbox` runs the Leezy
and LeanData simulators together; `serve_forever` is what the CLI calls to keep them in the
foreground.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
import uvicorn
from fastapi import FastAPI

from bookingsync.sandbox import leandata, leezy

# How long start-up may take before the sandbox gives up; uvicorn needs well under a second.
STARTUP_TIMEOUT_SECONDS = 10.0


class ServedApp:
    """One app served by uvicorn in a daemon thread; `stop()` shuts it down gracefully."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        # No websockets and no lifespan: the simulators need neither, and skipping them avoids
        # importing optional libraries whose deprecation warnings would fail strict test runs.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none",
                                http="h11", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name=f"sandbox-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"The sandbox server on {self.url} did not start.")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        self._socket.close()


def serve_app(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> ServedApp:
    return ServedApp(app, host, port).start()


@dataclass
class RunningSandbox:
    leezy_url: str
    leandata_url: str
    leezy_token: str
    leandata_api_key: str
    leezy: leezy.LeezyState
    leandata: leandata.LeanDataState
    _servers: tuple[ServedApp, ...]

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self.leezy.close()


def _wait_until_answering(url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            httpx.get(f"{url}/_sandbox/requests", timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_sandbox(
    host: str = "127.0.0.1",
    leezy_port: int = 0,
    leandata_port: int = 0,
    now: Callable[[], datetime] | None = None,
) -> RunningSandbox:
    leezy_state = leezy.LeezyState(now=now)
    leandata_state = leandata.LeanDataState(now=now)
    servers: list[ServedApp] = []
    try:
        servers.append(serve_app(leezy.create_app(leezy_state), host, leezy_port))
        servers.append(serve_app(leandata.create_app(leandata_state), host, leandata_port))
        for server in servers:
            _wait_until_answering(server.url)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return RunningSandbox(
        leezy_url=servers[0].url,
        leandata_url=servers[1].url,
        leezy_token=leezy.DEFAULT_TOKEN,
        leandata_api_key=leandata.DEFAULT_API_KEY,
        leezy=leezy_state,
        leandata=leandata_state,
        _servers=tuple(servers),
    )


def serve_forever(
    host: str = "127.0.0.1",
    leezy_port: int = 0,
    leandata_port: int = 0,
    *,
    demo: bool = False,
    demo_interval_seconds: float = 5.0,
    seed: int | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run both simulators (and optionally the demo driver) until interrupted."""
    from bookingsync.sandbox.demo import DEMO_PROSPECT_EMAILS, DemoDriver

    sandbox = start_sandbox(host, leezy_port, leandata_port)
    driver = (DemoDriver(sandbox, interval_seconds=demo_interval_seconds, seed=seed)
              if demo else None)
    echo(f"Leezy sandbox:    {sandbox.leezy_url}  (Authorization: Bearer {sandbox.leezy_token})")
    echo(f"LeanData sandbox: {sandbox.leandata_url}  (X-Api-Key: {sandbox.leandata_api_key})")
    if driver is not None:
        driver.start()
        echo(f"Demo driver booking every ~{demo_interval_seconds:g}s; LeanData prospects: "
             f"{', '.join(DEMO_PROSPECT_EMAILS)}")
    echo("Press Ctrl+C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if driver is not None:
            driver.stop()
        sandbox.stop()
