"""Which adapter class serves which provider name, its settings model, and building one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bookingsync.adapters.base import Adapter, Capability
from bookingsync.adapters.hubspot import HubSpotAdapter
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.adapters.meetergo import MeetergoAdapter
from bookingsync.adapters.rocketlead import RocketLeadAdapter
from bookingsync.adapters.settings import AdapterSettings
from bookingsync.models.errors import ConfigError

ADAPTERS: dict[str, type[Adapter]] = {
    LeezyAdapter.provider: LeezyAdapter,
    LeanDataAdapter.provider: LeanDataAdapter,
    RocketLeadAdapter.provider: RocketLeadAdapter,
    HubSpotAdapter.provider: HubSpotAdapter,
    MeetergoAdapter.provider: MeetergoAdapter,
}


def adapter_class(provider: str) -> type[Adapter]:
    """The adapter class of `provider`; ConfigError naming the providers there are."""
    cls = ADAPTERS.get(provider)
    if cls is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"provider {provider!r} is not one bookingsync knows; use one of: {known}")
    return cls


def settings_model(provider: str) -> type[AdapterSettings]:
    """The pydantic model of what a connection of `provider` takes."""
    return adapter_class(provider).settings_model


def booking_problem(provider: str, settings: AdapterSettings) -> str | None:
    """Why a connection of `provider` with `settings` cannot book (be a route target), or None.

    Asks the adapter class: its `capabilities` must include CREATE, and its settings must name
    where a booking is made (`AdapterSettings.booking_problem`).
    """
    if Capability.CREATE not in adapter_class(provider).capabilities:
        return f"{provider} is read-only for bookingsync (it documents no way to create a booking)"
    return settings.booking_problem()


def build_adapter(
    provider: str, connection_id: str, settings: AdapterSettings | Mapping[str, Any], **hooks: Any
) -> Adapter:
    """An adapter for `provider`; ConfigError naming the unknown provider or a bad setting.

    `settings` is the provider's settings model (as the config validated it) or the plain values
    of one; `hooks` are the constructor's test seams (`transport`, `sleep`), never settings.
    """
    cls = adapter_class(provider)
    values = settings.adapter_kwargs() if isinstance(settings, AdapterSettings) else dict(settings)
    return cls(connection_id=connection_id, **values, **hooks)
