"""Fixtures of the contract suite: one sandbox for the session, one driver per provider per test.

`driver` is parametrised over the five providers (ids are the provider names). After each test
the driver's adapters are closed and its simulator settings restored; for LeanData and HubSpot
the test then fails if any exchange broke the provider's published OpenAPI file, or if the
simulator answered a request that did not pass through the validating transport.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bookingsync.sandbox.server import RunningSandbox, start_sandbox
from tests.contract.drivers import DRIVERS, NOW, Driver


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox(now=lambda: NOW)
    yield running
    running.stop()


@pytest.fixture(params=sorted(DRIVERS), ids=str)
def driver(request: pytest.FixtureRequest, sandbox: RunningSandbox) -> Iterator[Driver]:
    built = DRIVERS[request.param](sandbox)
    try:
        yield built
    finally:
        built.close()
    transport = built.transport
    if transport is not None:
        assert transport.violations == [], "\n".join(transport.violations)
        served = built.requests()
        assert len(served) == len(transport.exchanges), (
            f"{built.name}: the simulator answered {len(served)} requests but "
            f"{len(transport.exchanges)} passed through the OpenAPI validator"
        )
