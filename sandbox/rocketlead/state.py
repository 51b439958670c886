"""The RocketLead simulator's state: everything it holds, `store` (tokens, catalog, leads) with
`scheduling` (availability and bookings) built on it."""

from __future__ import annotations

from .scheduling import Scheduling


class RocketLeadState(Scheduling):
    """Everything the simulator holds; every method is safe to call from any thread."""
