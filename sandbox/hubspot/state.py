"""The HubSpot simulator's state: everything it holds, built by concern (see `store`)."""

from __future__ import annotations

from .scheduler import Scheduler


class HubSpotState(Scheduler):
    """Everything the simulator holds; every method is safe to call from any thread."""
