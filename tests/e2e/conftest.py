from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import Proc, Subscriber, free_port, wait_until


@pytest.fixture
def sandbox_proc(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = {name: free_port() for name in ("leezy", "leandata", "rocketlead", "meetergo", "hubspot")}
    args = [item for name, port in ports.items() for item in (f"--{name}-port", str(port))]
    proc = Proc("sandbox", ["sandbox", *args], tmp_path).start()
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for url in urls.values():
            wait_until(
                lambda url=url: httpx.get(f"{url}/_sandbox/requests", timeout=1).is_success,
                30,
                f"the sandbox at {url}\n{proc.output()}",
            )
        yield urls
    finally:
        proc.stop()


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber().start()
    yield sub
    sub.stop()
