"""Which adapter class serves which provider name, and building one from a connection's settings."""

from __future__ import annotations

import inspect
from typing import Any

from bookingsync.adapters.base import Adapter, Capability
from bookingsync.adapters.hubspot import HubSpotAdapter
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.adapters.meetergo import MeetergoAdapter
from bookingsync.adapters.rocketlead import RocketLeadAdapter
from bookingsync.models.errors import ConfigError

ADAPTERS: dict[str, type] = {
    LeezyAdapter.provider: LeezyAdapter,
    LeanDataAdapter.provider: LeanDataAdapter,
    RocketLeadAdapter.provider: RocketLeadAdapter,
    HubSpotAdapter.provider: HubSpotAdapter,
    MeetergoAdapter.provider: MeetergoAdapter,
}


def _adapter_class(provider: str) -> type:
    cls = ADAPTERS.get(provider)
    if cls is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"provider {provider!r} is not one bookingsync knows; use one of: {known}")
    return cls


def accepted_settings(provider: str) -> frozenset[str]:
    """The keyword arguments the provider's adapter takes (its connection settings)."""
    return frozenset(inspect.signature(_adapter_class(provider)).parameters)


def check_settings(provider: str, settings: dict[str, Any]) -> None:
    """ConfigError naming an unknown provider, an unknown setting or a missing one."""
    parameters = inspect.signature(_adapter_class(provider)).parameters
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        raise ConfigError(f"provider {provider!r} takes no setting {', '.join(unknown)}; remove it")
    missing = sorted(
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty and name not in settings
    )
    if missing:
        raise ConfigError(f"provider {provider!r} needs the setting {', '.join(missing)}; add it")


def booking_problem(provider: str, settings: dict[str, Any]) -> str | None:
    """Why a connection of `provider` with `settings` cannot book (be a route target), or None.

    Asks the adapter class: its `capabilities` must include CREATE, and an adapter whose booking
    needs settings says what is missing through an optional `booking_problem(settings)`.
    """
    cls = _adapter_class(provider)
    if Capability.CREATE not in cls.capabilities:
        return f"{provider} is read-only for bookingsync (it documents no way to create a booking)"
    check = getattr(cls, "booking_problem", None)
    return check(settings) if check is not None else None


def build_adapter(provider: str, **settings: Any) -> Adapter:
    """An adapter for `provider`; ConfigError naming the unknown provider or setting."""
    # Checked here rather than left to a TypeError, so the message reads as a config sentence.
    check_settings(provider, settings)
    return _adapter_class(provider)(**settings)
