"""What installing a process's runtime does beyond making it `current()`."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bookingsync.worker import runtime
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine


@pytest.fixture
def restored() -> Iterator[None]:
    before = runtime._current
    yield
    gc.unfreeze()  # give the test process's objects back to the collector
    runtime._current = before


def test_installing_freezes_what_start_up_made_out_of_the_collector(restored: None) -> None:
    """A full collection then walks only what the work made, not 100,000+ start-up objects (a
    pass over them stalled a burst's relay claim for 200-600 ms, issue 6)."""
    gc.unfreeze()
    engine = make_engine("sqlite://")
    rt = runtime.Runtime(config=parse_config({}, environ={}), engine=engine)
    start_up_object = object.__new__(type("StartUp", (), {}))
    assert gc.get_freeze_count() == 0
    runtime.install(rt)
    assert runtime.current() is rt
    assert gc.get_freeze_count() > 10_000
    assert not any(o is start_up_object for o in gc.get_objects())  # frozen: not the collector's
    engine.dispose()


@pytest.mark.parametrize(
    ("role", "opened"), [("worker", True), ("run", True), ("web", False), ("cli", False)]
)
def test_a_delivering_process_opens_its_subscriptions_lanes_at_install(
    restored: None, role: str, opened: bool
) -> None:
    """A lane's connection pool makes a TLS context (20-60 ms of CPU): a worker makes its lanes when
    it starts, not in the middle of a burst's first deliveries (issue 6). Other roles make none."""
    secret = "whsec_" + "A" * 32
    subscriptions = [
        {"id": sid, "url": f"https://{sid}.example.com/hooks", "secret": secret} for sid in ("a", "b")
    ]
    engine = make_engine("sqlite://")
    rt = runtime.Runtime(
        config=parse_config({"subscriptions": subscriptions}, environ={}), engine=engine, role=role
    )
    runtime.install(rt)
    try:
        assert (sorted(rt._lanes._lanes) if rt._lanes is not None else []) == (["a", "b"] if opened else [])
    finally:
        rt.close()
        engine.dispose()
