"""What a connection of a provider takes: the base of every adapter's settings model.

Each adapter declares its settings as one pydantic model beside its class (`LeezySettings` in
adapters/leezy.py, …): every field with its type, default, constraints and a description, secrets
as `SecretStr`. That model is the one statement of a provider's settings:

* `bookingsync config check` validates a connection's keys through it (worker/config.py), so a
  key the provider does not take, a missing one or a bad value is named before anything starts;
* the registry builds the adapter from it (`adapter_kwargs`, adapters/registry.py);
* the README's per-provider option tables are made from it (`option_rows`), and a test fails
  when the README and the model disagree (tests/unit/test_adapter_settings.py).

An adapter's constructor takes its settings as keywords (tests and benchmarks build adapters
directly) and validates them through its model (`checked`), so the rules live in one place and a
config that passes `config check` builds adapters that start.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Any, ClassVar, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, ValidationInfo, field_validator

from bookingsync.models.errors import ConfigError

# A validator's message that starts with §key§ is about that key (a rule across fields names the
# one to change); `problems` takes it apart again.
_KEY = "§"


def keyed(key: str, message: str) -> str:
    """A validator message about `key` (for rules that span fields: say which one to change)."""
    return f"{_KEY}{key}{_KEY}{message}"


def blank(value: str | SecretStr | None) -> bool:
    """Whether a given text setting is only white space (None is not given, so not blank)."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return text is not None and not text.strip()


def http_url(value: str) -> str:
    """An http(s) URL with a host, else ValueError saying how to write one."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; write it as https://host/path")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has a port that is not a number") from None
    return value.strip()


class AdapterSettings(BaseModel):
    """The settings every provider's model shares the shape of (each declares `base_url` itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The provider as messages name it ("the Leezy token is empty").
    label: ClassVar[str] = "provider"
    # The field holding the credential (`token` or `api_key`): required, never blank, kept stripped.
    credential: ClassVar[str] = "token"

    base_url: str

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("token", "api_key", check_fields=False)
    @classmethod
    def _credential(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        secret = value.get_secret_value().strip()
        if not secret:
            name = info.field_name or cls.credential
            raise ValueError(
                f'the {cls.label} {name} is empty; set {name} (e.g. {name} = "env:{cls.label.upper()}_{name.upper()}")'
            )
        return SecretStr(secret)

    @classmethod
    def checked(cls, connection_id: str, values: Mapping[str, Any]) -> Self:
        """The settings of connection `connection_id`, or ConfigError naming each bad key and its fix."""
        try:
            return cls(**values)
        except ValidationError as exc:
            found = "; ".join(
                message if not key or message.startswith(key) else f"{key}: {message}"
                for key, message in cls.problems(exc)
            )
            raise ConfigError(f"connection {connection_id!r}: {found}") from None

    @classmethod
    def problems(cls, exc: ValidationError) -> list[tuple[str | None, str]]:
        """(key, sentence) for each error of a validation of this model; key None: the whole."""
        found: list[tuple[str | None, str]] = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            key = loc[0] if loc else None
            message = error["msg"].removeprefix("Value error, ")
            if message.startswith(_KEY):
                key, _, message = message[1:].partition(_KEY)
            elif error["type"] == "missing":
                message = f"needs the setting {key}; add it"
            elif error["type"] == "extra_forbidden":
                known = ", ".join(cls.model_fields)
                message = f"takes no setting {key}; remove it (it takes {known})"
            elif len(loc) > 1:  # inside a list or table: name the item
                message = f"{'.'.join(loc[1:])}: {message}"
            found.append((key, message))
        return found

    def adapter_kwargs(self) -> dict[str, Any]:
        """The adapter constructor's keywords: secrets as plain strings here, and only here."""
        return {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in self
        }

    def booking_problem(self) -> str | None:
        """Why a connection with these settings cannot book (be a route target), or None.

        Only asked of providers whose adapter can create bookings; those whose booking needs a
        setting (a meeting type, a link) say which one is missing.
        """
        return None


def option_rows(model: type[AdapterSettings], written: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(key as written in the TOML, type, default, description) for each field of `model`.

    `written` maps a field to how the config file spells it when that is not the field's own
    name (worker/config.py puts provider-specific settings under `options.`).
    """
    rows = []
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else _toml(info.get_default(call_default_factory=True))
        rows.append((written.get(name, name), _type_name(info.annotation), default, info.description or ""))
    return rows


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        name = " or ".join(_type_name(a) for a in kept)
        return f"{name}, optional" if len(kept) < len(args) else name
    if origin is tuple:
        return f"list of {_type_name(args[0])}s"
    if origin is dict:
        return "table"
    return {
        str: "string",
        SecretStr: "secret",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))
