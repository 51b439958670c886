"""The Meetergo simulator's state: everything it holds, built by concern (see `store`)."""

from __future__ import annotations

from .appointments import Appointments


class MeetergoState(Appointments):
    """Everything the simulator holds; every method is safe to call from any thread."""
