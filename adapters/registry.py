"""Which adapter class serves which provider name, and building one from a connection's settings."""

from __future__ import annotations

import inspect
from typing import Any

from bookingsync.adapters.base import Adapter
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.errors import ConfigError

ADAPTERS: dict[str, type] = {
    LeezyAdapter.provider: LeezyAdapter,
    LeanDataAdapter.provider: LeanDataAdapter,
}


def build_adapter(provider: str, **settings: Any) -> Adapter:
    """An adapter for `provider`; ConfigError naming the unknown provider or setting."""
    cls = ADAPTERS.get(provider)
    if cls is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"provider {provider!r} is not one bookingsync knows; use one of: {known}")
    # Checked here rather than left to a TypeError, so the message reads as a config sentence.
    parameters = inspect.signature(cls).parameters
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        raise ConfigError(f"provider {provider!r} takes no setting {', '.join(unknown)}; remove it")
    missing = sorted(
        name for name, p in parameters.items() if p.default is inspect.Parameter.empty and name not in settings
    )
    if missing:
        raise ConfigError(f"provider {provider!r} needs the setting {', '.join(missing)}; add it")
    return cls(**settings)
