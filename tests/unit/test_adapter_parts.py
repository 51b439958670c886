"""Each adapter fills exactly the protocol parts its capabilities declare, and no stub.

The planner reads `capabilities`; the worker asks for parts with isinstance (adapters/base.py).
The two must say the same thing of every adapter, and an adapter must not carry a method it
cannot fill (a `read` that yields nothing, a `parse_webhook` that refuses everything, a
`reschedule` that raises NotImplementedError): a caller asking `isinstance(adapter, Reader)`
would be told yes by a stub.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bookingsync.adapters.base import Capability, Finder, Mover, Reader, WebhookReceiver, Writer
from bookingsync.adapters.registry import ADAPTERS, build_adapter

ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "adapters"

SETTINGS = {
    "leezy": {"base_url": "https://app.leezy.example", "token": "t"},
    "leandata": {"base_url": "https://api.leandata.example", "api_key": "k"},
    "rocketlead": {
        "base_url": "https://api.rocketlead.example",
        "token": "rocketlead_t",
        "calendar_id": "cal",
        "appointment_type_id": "apt",
    },
    "hubspot": {"token": "t"},
    "meetergo": {"base_url": "https://api.meetergo.example", "token": "t"},
}


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_capabilities_and_parts_agree(provider: str) -> None:
    adapter = build_adapter(provider, "c", SETTINGS[provider])
    try:
        caps = adapter.capabilities
        assert isinstance(adapter, Reader) == bool(
            caps & {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}
        )
        assert isinstance(adapter, WebhookReceiver) == (Capability.RECEIVE_WEBHOOKS in caps)
        assert isinstance(adapter, Writer) == (Capability.CREATE in caps) == (Capability.CANCEL in caps)
        assert isinstance(adapter, Mover) == (Capability.RESCHEDULE in caps)
        assert isinstance(adapter, Finder) == (Capability.FIND_BOOKING in caps)
    finally:
        adapter.close()


def test_no_adapter_carries_a_stub() -> None:
    stubs = []
    for path in sorted(ADAPTERS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                called = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(called, ast.Name) and called.id == "NotImplementedError":
                    stubs.append(f"{path.name}:{node.lineno}")
    assert stubs == [], f"methods that only raise NotImplementedError: {stubs}"
