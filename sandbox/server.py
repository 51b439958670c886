"""Run the provider simulators over real HTTP on loopback.

`serve_app` runs one ASGI app with uvicorn in a daemon thread on a socket bound here, so port 0
yields a free port whose number is known before the first request. `start_sandbox` runs the five
simulators (Leezy, LeanData, RocketLead, Meetergo, HubSpot) together; `run.serve_forever` keeps
them in the foreground for the CLI.
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

from bookingsync.sandbox import hubspot, leandata, leezy, meetergo, rocketlead

# How long start-up may take before the sandbox gives up; uvicorn needs well under a second.
STARTUP_TIMEOUT_SECONDS = 10.0


class ServedApp:
    """One app served by uvicorn in a daemon thread; `stop()` shuts it down gracefully."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        # IPPROTO_TCP so asyncio turns Nagle off on accepted connections (worker/probes.bind says why).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        # No websockets and no lifespan: the simulators need neither, and skipping them avoids
        # importing optional libraries whose deprecation warnings would fail strict test runs.
        # An app that writes its own `Date` (a simulated provider clock) gets no second one from uvicorn.
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
            date_header=not getattr(getattr(app, "state", None), "date_header", False),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"sandbox-{self.port}",
            daemon=True,
        )

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
    """All five simulators, each on its own loopback port, with the credentials they accept."""

    leezy_url: str
    leandata_url: str
    rocketlead_url: str
    meetergo_url: str
    hubspot_url: str
    leezy: leezy.LeezyState
    leandata: leandata.LeanDataState
    rocketlead: rocketlead.RocketLeadState
    meetergo: meetergo.MeetergoState
    hubspot: hubspot.HubSpotState
    _servers: tuple[ServedApp, ...]
    leezy_token: str = leezy.DEFAULT_TOKEN
    leandata_api_key: str = leandata.DEFAULT_API_KEY
    rocketlead_token: str = rocketlead.DEFAULT_TOKEN
    meetergo_token: str = meetergo.DEFAULT_TOKEN
    hubspot_token: str = hubspot.DEFAULT_TOKEN
    hubspot_client_secret: str = hubspot.DEFAULT_CLIENT_SECRET

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self.leezy.close()
        self.meetergo.close()
        self.hubspot.close()

    def describe(self) -> list[str]:
        """One line per simulator: where it is and how to authenticate."""
        return [
            f"Leezy       {self.leezy_url}  Authorization: Bearer {self.leezy_token}",
            f"LeanData    {self.leandata_url}  X-Api-Key: {self.leandata_api_key}",
            f"RocketLead  {self.rocketlead_url}  Authorization: Bearer {self.rocketlead_token}  "
            f"(calendar {rocketlead.DEFAULT_CALENDAR_ID}, appointment type {rocketlead.DEFAULT_APPOINTMENT_TYPE_ID})",
            f"Meetergo    {self.meetergo_url}  Authorization: Bearer {self.meetergo_token}  "
            f"(meeting type {meetergo.MEETING_TYPE_ID}, host {meetergo.DEFAULT_USER_ID})",
            f"HubSpot     {self.hubspot_url}  Authorization: Bearer {self.hubspot_token}  "
            f"(client secret {self.hubspot_client_secret}, meeting link {hubspot.DEFAULT_LINK_SLUG})",
        ]


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
    *,
    rocketlead_port: int = 0,
    meetergo_port: int = 0,
    hubspot_port: int = 0,
) -> RunningSandbox:
    states = {
        "leezy": leezy.LeezyState(now=now),
        "leandata": leandata.LeanDataState(now=now),
        "rocketlead": rocketlead.RocketLeadState(now=now),
        "meetergo": meetergo.MeetergoState(now=now),
        "hubspot": hubspot.HubSpotState(now=now),
    }
    modules = {
        "leezy": leezy,
        "leandata": leandata,
        "rocketlead": rocketlead,
        "meetergo": meetergo,
        "hubspot": hubspot,
    }
    ports = {
        "leezy": leezy_port,
        "leandata": leandata_port,
        "rocketlead": rocketlead_port,
        "meetergo": meetergo_port,
        "hubspot": hubspot_port,
    }
    servers: dict[str, ServedApp] = {}
    try:
        for name, state in states.items():
            servers[name] = serve_app(modules[name].create_app(state), host, ports[name])  # type: ignore[attr-defined]
        for server in servers.values():
            _wait_until_answering(server.url)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return RunningSandbox(
        **{f"{name}_url": server.url for name, server in servers.items()},  # type: ignore[arg-type]
        **states,  # type: ignore[arg-type]
        _servers=tuple(servers.values()),
    )
