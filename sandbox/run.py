"""Run the five simulators, and optionally the demo driver, in the foreground until Ctrl+C: what
`bookingsync sandbox` and `bookingsync run` call.

Apart from `server` so that the server, which the demo driver drives, does not import the driver
back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from bookingsync.sandbox.demo import DEMO_PROSPECT_EMAILS, DemoDriver
from bookingsync.sandbox.server import start_sandbox


def serve_forever(
    host: str = "127.0.0.1",
    leezy_port: int = 0,
    leandata_port: int = 0,
    *,
    rocketlead_port: int = 0,
    meetergo_port: int = 0,
    hubspot_port: int = 0,
    demo: bool = False,
    demo_interval_seconds: float = 5.0,
    seed: int | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the five simulators (and optionally the demo driver) until interrupted."""
    sandbox = start_sandbox(
        host,
        leezy_port,
        leandata_port,
        rocketlead_port=rocketlead_port,
        meetergo_port=meetergo_port,
        hubspot_port=hubspot_port,
    )
    driver = DemoDriver(sandbox, interval_seconds=demo_interval_seconds, seed=seed) if demo else None
    for line in sandbox.describe():
        echo(line)
    if driver is not None:
        driver.start()
        echo(
            f"Demo driver booking every ~{demo_interval_seconds:g}s; LeanData prospects: "
            f"{', '.join(DEMO_PROSPECT_EMAILS)}"
        )
    echo("Press Ctrl+C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if driver is not None:
            driver.stop()
        sandbox.stop()
