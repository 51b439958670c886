"""Configuration: one TOML file, every value overridable from the environment.

* The file is `--config PATH` or `$BOOKINGSYNC_CONFIG`; with neither, the embedded defaults
  (SQLite, in-process broker, no connections: the sandbox demo).
* `BOOKINGSYNC_<SECTION>__<KEY>` overrides a key of a table (`BOOKINGSYNC_DATABASE__URL`);
  `BOOKINGSYNC_CONNECTIONS__<ID>__<KEY>` one of a connection, addressed by its id in upper case
  with `-` as `_` (`BOOKINGSYNC_CONNECTIONS__LEEZY_MAIN__TOKEN`). Values are read as JSON when
  they parse as JSON (numbers, booleans, lists), else as plain strings.
* Any string may be `env:NAME`, read from the environment at load time (secrets stay out of files).
* Unknown keys are errors. Every error names the file, the key and the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bookingsync.adapters.registry import ADAPTERS, accepted_settings, booking_problem, check_settings
from bookingsync.models.errors import ConfigError
from bookingsync.worker.lifecycle import EventType

ENV_PREFIX = "BOOKINGSYNC_"
CONFIG_ENV = "BOOKINGSYNC_CONFIG"
SECTIONS = ("database", "broker", "server", "scheduler", "events", "delivery", "worker", "logging", "mirroring")
PROVIDERS = tuple(sorted(ADAPTERS))
# Connection keys handed to the adapter when its constructor takes them (`id` as connection_id).
COMMON_SETTINGS = ("base_url", "token", "api_key", "user_id", "webhook_secret", "accept_legacy_signature",
                   "page_size", "overlap_seconds", "watch_emails", "lookback_days", "requests_per_second")
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replace-me", "replaceme", "your-", "your_")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///bookingsync.db"
    migrate_on_start: bool = True


class BrokerConfig(_Strict):
    url: str = "memory://"

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not (value == "memory://" or value.startswith(("redis://", "rediss://"))):
            raise ValueError("use memory:// (in-process) or a redis:// URL")
        return value


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # How providers reach us, when it differs from host:port (behind a proxy).
    public_url: str | None = None
    max_body_bytes: int = 1024 * 1024


class SchedulerConfig(_Strict):
    relay_interval_seconds: float = Field(default=0.5, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=500, gt=0)
    leader_lease_seconds: float = Field(default=15.0, gt=0)


class EventsConfig(_Strict):
    # A timer whose moment passed longer ago than this when it is set is history, not news.
    grace_seconds: float = Field(default=300.0, ge=0)
    console: bool = True  # print each published event


class DeliveryConfig(_Strict):
    max_attempts: int = Field(default=10, ge=1)
    min_backoff_seconds: float = Field(default=2.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


class WorkerConfig(_Strict):
    threads: int = Field(default=4, ge=1)


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MirroringConfig(_Strict):
    """Writes to route targets (worker/reconcile.py, worker/intents.py)."""

    # More creates or moves than this of one meeting at one target within an hour halt that
    # mirror until a person lifts it (`bookingsync mirrors resume`): a loop stops at this many.
    max_writes_per_hour: int = Field(default=5, ge=1)
    # How long one write may be in flight before its answer counts as lost (and a worker that
    # died mid-call is replaced): above the adapters' worst case of timeouts and retries.
    lease_seconds: float = Field(default=120.0, gt=0)


class ConnectionConfig(_Strict):
    id: str
    provider: str
    base_url: str
    token: str | None = None
    api_key: str | None = None
    user_id: str | None = None
    webhook_secret: str | None = None
    accept_legacy_signature: bool = False
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    page_size: int = Field(default=100, ge=1, le=100)
    overlap_seconds: float = Field(default=1.0, ge=0)
    watch_emails: tuple[str, ...] = ()
    lookback_days: int = Field(default=7, ge=0)
    requests_per_second: float = Field(default=5.0, gt=0)
    enabled: bool = True
    # Provider-specific settings of the adapter (booking targets and the like); checked against
    # what the provider's adapter takes.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", value):
            raise ValueError("use lower-case letters, digits, '-' and '_' (it appears in URLs)")
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r}; supported: {', '.join(PROVIDERS)}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ConnectionConfig:
        # The credential is whichever of `api_key` / `token` the provider's adapter takes.
        needed = "api_key" if "api_key" in accepted_settings(self.provider) else "token"
        if not getattr(self, needed):
            raise ValueError(f"a {self.provider} connection needs `{needed}`")
        try:
            check_settings(self.provider, self.adapter_settings())
        except ConfigError as exc:
            raise ValueError(f"options: {exc}") from None
        return self

    def adapter_settings(self) -> dict[str, Any]:
        """The keyword arguments its adapter takes: the common keys it accepts plus `options`."""
        accepted = accepted_settings(self.provider)
        settings: dict[str, Any] = {"connection_id": self.id} if "connection_id" in accepted else {}
        for name in COMMON_SETTINGS:
            value = getattr(self, name)
            if name in accepted and value is not None:
                settings[name] = value
        return {**settings, **self.options}


class SubscriptionConfig(_Strict):
    id: str
    url: str
    secret: str
    events: tuple[EventType, ...] = tuple(EventType)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        problem = "a subscription secret is a Standard Webhooks secret: whsec_ followed by base64 of 24 to 64 bytes"
        if not value.startswith("whsec_"):
            raise ValueError(problem)
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(problem) from None
        if not 24 <= len(key) <= 64:
            raise ValueError(problem)
        return value


class ActorTargetConfig(_Strict):
    """Events handed to a dramatiq actor of your own, by name, on a queue your workers consume."""

    actor_name: str
    queue_name: str = "bookingsync-events"
    events: tuple[EventType, ...] = tuple(EventType)

    @property
    def key(self) -> str:
        """How its deliveries name it (beside subscription ids)."""
        return f"actor:{self.queue_name}:{self.actor_name}"


class RouteConfig(_Strict):
    sources: tuple[str, ...]
    targets: tuple[str, ...]


class Config(_Strict):
    database: DatabaseConfig = DatabaseConfig()
    broker: BrokerConfig = BrokerConfig()
    server: ServerConfig = ServerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    events: EventsConfig = EventsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    worker: WorkerConfig = WorkerConfig()
    logging: LoggingConfig = LoggingConfig()
    mirroring: MirroringConfig = MirroringConfig()
    connections: tuple[ConnectionConfig, ...] = ()
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    actors: tuple[ActorTargetConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    source: str = Field(default="<defaults>", exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Config:
        # Messages start with the key, so the loader can report them like field errors.
        for group, items in (("connections", self.connections), ("subscriptions", self.subscriptions)):
            seen: set[str] = set()
            for index, item in enumerate(items):
                if item.id in seen:
                    raise ValueError(f"{group}[{index}].id: {item.id!r} is used twice; ids must be unique")
                seen.add(item.id)
        known = {c.id: c for c in self.connections}
        for index, route in enumerate(self.routes):
            for side in ("sources", "targets"):
                for position, ref in enumerate(getattr(route, side)):
                    if ref not in known:
                        raise ValueError(f"routes[{index}].{side}[{position}]: names connection {ref!r}, "
                                         "which is not configured")
            for position, ref in enumerate(route.targets):
                # A route books into its targets: one that cannot create (read-only, or not set up
                # to book) would only collect dead letters.
                target = known[ref]
                problem = booking_problem(target.provider, target.adapter_settings())
                if problem is not None:
                    raise ValueError(f"routes[{index}].targets[{position}]: connection {ref!r} cannot be a route "
                                     f"target: {problem}")
        return self

    def connection(self, connection_id: str) -> ConnectionConfig | None:
        return next((c for c in self.connections if c.id == connection_id), None)

    def subscription(self, subscription_id: str) -> SubscriptionConfig | None:
        return next((s for s in self.subscriptions if s.id == subscription_id), None)

    def actor_target(self, key: str) -> ActorTargetConfig | None:
        return next((a for a in self.actors if a.key == key), None)


def _env_value(raw: str) -> Any:
    """Lists and tables come as JSON; everything else stays text (pydantic converts numbers and
    booleans for the fields that want them, and an all-digit token stays a token)."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) == 1:
            continue  # not an override (BOOKINGSYNC_TEST_*, say)
        if len(parts) == 2 and parts[0] in SECTIONS:
            data.setdefault(parts[0], {})[parts[1]] = _env_value(raw)
        elif len(parts) == 3 and parts[0] in ("connections", "subscriptions"):
            for item in data.get(parts[0], []):
                if str(item.get("id", "")).replace("-", "_").lower() == parts[1]:
                    item[parts[2]] = _env_value(raw)
                    break
            else:
                raise ConfigError(f"{name} names {parts[0][:-1]} {parts[1]!r}, which is not configured")
        else:
            raise ConfigError(f"{name} is not a setting: use BOOKINGSYNC_<SECTION>__<KEY> with a section of "
                              f"{', '.join(SECTIONS)}, or BOOKINGSYNC_CONNECTIONS__<ID>__<KEY>")


def _resolve_env_refs(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_env_refs(v, f"{where}.{k}" if where else k, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env_refs(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("env:"):
        var = value[4:]
        if var not in environ:
            raise ConfigError(f"{where} refers to env:{var}, but ${var} is not set; export it or put the value in the file")
        return environ[var]
    return value


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    # The part after a prefix like `whsec_` or `lzy_at_` made only of x, dots or stars: `lzy_xxx`, `...`.
    tail = re.split(r"[_-]", lowered)[-1]
    return "…" in value or any(word in lowered for word in _PLACEHOLDER_WORDS) or set(tail) <= {"x", ".", "*"}


def _refuse_placeholders(data: dict[str, Any]) -> None:
    for group in ("connections", "subscriptions"):
        for i, item in enumerate(data.get(group, [])):
            for key in ("token", "api_key", "webhook_secret", "secret"):
                value = item.get(key)
                if isinstance(value, str) and _is_placeholder(value):
                    raise ConfigError(f"{group}[{i}].{key} looks like a placeholder ({value!r}); put the real secret there")


def _problem(loc: tuple[Any, ...], message: str) -> str:
    # Cross-field checks name their key at the start of the message themselves.
    return f"{_where(loc)}: {message}" if loc else message


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "<defaults>",
                 environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    try:
        data = json.loads(json.dumps(data))  # a private copy we may edit
        _apply_env_overrides(data, environ)
        data = _resolve_env_refs(data, "", environ)
        _refuse_placeholders(data)
        return Config.model_validate({**data, "source": source})
    except ConfigError as exc:
        raise ConfigError(f"config error in {source}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(_problem(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors())
        raise ConfigError(f"config error in {source}: {problems}") from None


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    if not path:
        return parse_config({}, environ=environ)
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config error: {file} does not exist; pass --config with the path of a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error in {file}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(file), environ=environ)
