"""Configuration: one TOML file, every value overridable from the environment.

* The file is `--config PATH` or `$BOOKINGSYNC_CONFIG`; with neither, the embedded defaults
  (SQLite, in-process broker, no connections: the sandbox demo).
* `BOOKINGSYNC_<SECTION>__<KEY>` overrides a key of a table (`BOOKINGSYNC_DATABASE__URL`);
  `BOOKINGSYNC_CONNECTIONS__<ID>__<KEY>` one of a connection, addressed by its id in upper case
  with `-` as `_` (`BOOKINGSYNC_CONNECTIONS__LEEZY_MAIN__TOKEN`). Values are read as JSON when
  they parse as JSON (numbers, booleans, lists), else as plain strings.
* Any string may be `env:NAME`, read from the environment at load time (secrets stay out of files).
* Unknown keys are errors, and so are keys the connection's provider does not take. Every error
  names the file (or the environment variable), the key and the fix.
* Secrets (`token`, `api_key`, `webhook_secret`, a subscription's `secret`) are `SecretStr`: they
  never appear in a repr or a log; `.get_secret_value()` where one is really needed.
* `validate_for(cfg, role)` adds what depends on the process that will run it (the broker a
  role can use, the sandbox demo); `bookingsync config check` and every command call the same
  code, so a check that passes is a start that passes.
* Subscription and connection URLs must resolve to public addresses unless
  `allow_private_targets = true` (see worker/egress.py, which checks again at connect time).
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
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bookingsync.adapters.base import Capability
from bookingsync.adapters.registry import ADAPTERS, booking_problem, settings_model
from bookingsync.adapters.settings import AdapterSettings, http_url, option_rows
from bookingsync.models.errors import ConfigError
from bookingsync.worker import egress
from bookingsync.worker.lifecycle import Backfill, EventType

ENV_PREFIX = "BOOKINGSYNC_"
CONFIG_ENV = "BOOKINGSYNC_CONFIG"
SECTIONS = (
    "database",
    "broker",
    "server",
    "scheduler",
    "events",
    "delivery",
    "worker",
    "logging",
    "retention",
    "mirroring",
)
TOP_LEVEL_KEYS = ("allow_private_targets",)
PROVIDERS = tuple(sorted(ADAPTERS))
ROLES = ("run", "web", "worker", "scheduler")
# Settings written on the connection itself (the rest of a provider's settings go under
# `options`); which of them a provider takes, and what else, its settings model says.
COMMON_SETTINGS = (
    "base_url",
    "token",
    "api_key",
    "user_id",
    "webhook_secret",
    "accept_legacy_signature",
    "page_size",
    "overlap_seconds",
    "watch_emails",
    "lookback_days",
    "requests_per_second",
)
MIN_API_KEY_LENGTH = 24  # an API key is a secret a person cannot guess: `openssl rand -hex 24`
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replace-me", "replaceme", "your-", "your_")
# Adapter constructor keywords that are not settings: its id (the connection's) and the seams tests
# fill (a fake transport, a sleep that does not); named so that an option spelled so is explained.
TEST_HOOKS = frozenset({"transport", "sleep", "connection_id"})
DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")
DATABASE_FIX = "use sqlite:///path/to/bookingsync.db or postgresql+psycopg://user:password@host:5432/dbname"
# A model validator's message that starts with §key§ is about that key of the item (see _problem);
# several such messages are joined by _SEP.
_KEY = "§"
_SEP = "\x1e"


def keyed(key: str, message: str) -> str:
    return f"{_KEY}{key}{_KEY}{message}"


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    # repr=False: the URL may carry a password.
    url: str = Field(default="sqlite:///bookingsync.db", repr=False)
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"{redact_url(value)!r} is not a database URL; {DATABASE_FIX}") from None
        if (
            url.drivername.split("+")[0] in ("postgres", "postgresql")
            and url.drivername != "postgresql+psycopg"
        ):
            raise ValueError(
                f"{url.drivername}:// names a driver bookingsync does not ship; write the URL as "
                f"postgresql+psycopg://… (psycopg 3), e.g. postgresql+psycopg://user:password@host:5432/db"
            )
        if url.drivername not in DATABASE_DRIVERS:
            raise ValueError(f"{url.drivername}:// is not a database bookingsync supports; {DATABASE_FIX}")
        if url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:"):
            raise ValueError(
                "an in-memory SQLite database is private to one connection and lost at exit; "
                "name a file: sqlite:///path/to/bookingsync.db"
            )
        return value

    @field_serializer("url")
    def _hide_password(self, value: str) -> str:
        return redact_url(value)


class BrokerConfig(_Strict):
    url: str = Field(default="memory://", repr=False)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value == "memory://":
            return value
        parts = urlsplit(value)
        if parts.scheme not in BROKER_SCHEMES or not parts.hostname:
            raise ValueError(
                f"{redact_url(value)!r} is not a broker URL; use memory:// (in-process, `run` only), "
                "redis://host:6379/0 (rediss:// for TLS) or amqp://user:password@host:5672/vhost "
                "(RabbitMQ, amqps:// for TLS)"
            )
        return value

    @field_serializer("url")
    def _hide_password(self, value: str) -> str:
        return redact_url(value)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # How providers reach us, when it differs from host:port (behind a proxy).
    public_url: str | None = None
    max_body_bytes: int = 1024 * 1024

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)


class SchedulerConfig(_Strict):
    relay_interval_seconds: float = Field(default=0.5, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=500, gt=0)
    leader_lease_seconds: float = Field(default=15.0, gt=0)
    # /healthz, /readyz and /metrics of a `bookingsync scheduler` (on server.host); 0: any free port.
    health_port: int = Field(default=0, ge=0, le=65535)
    # Leased rows of one kind (events, deliveries, receipts) the relay lets be out at once: a burst
    # of due work waits in the database, not in the broker or a worker's memory.
    max_in_flight: int = Field(default=5000, gt=0)


class EventsConfig(_Strict):
    # Late first sight: timers of a meeting first seen (or moved) after its start still fire, marked
    # `late_by`, until this long after the meeting's end; beyond it they are counted and skipped.
    late_window_seconds: float = Field(default=86400.0, ge=0)
    # The old name of the same cut-off (it was 5 minutes); the larger of the two is used.
    grace_seconds: float = Field(default=0.0, ge=0)
    console: bool = True  # print each published event
    # `upcoming`: a meeting first seen when it is already over is stored, not announced; `all`: announced.
    backfill: Backfill = Backfill.UPCOMING
    # A hasStarted fires at once only if its meeting's sources were read at most this long before
    # its start; otherwise a re-read is asked for and it waits up to freshness_wait_seconds for it
    # (then fires anyway). freshness_wait_seconds = 0 turns the check off (worker/freshness.py).
    freshness_max_age_seconds: float = Field(default=5.0, gt=0)
    freshness_wait_seconds: float = Field(default=5.0, ge=0, le=300)


class DeliveryConfig(_Strict):
    max_attempts: int = Field(default=10, ge=1)
    min_backoff_seconds: float = Field(default=2.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    # Per subscription and worker process: requests at once, and deliveries waiting for one of
    # them (beyond that they wait in the database). A slow endpoint fills only its own lane.
    concurrency_per_subscription: int = Field(default=4, ge=1, le=64)
    queue_per_subscription: int = Field(default=1000, ge=1)
    # The circuit breaker: open after this many retryable failures in a row, half-open after the
    # cooldown (doubling while probes keep failing).
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)


class WorkerConfig(_Strict):
    threads: int = Field(default=4, ge=1)
    # Threads that run polls, on a queue of their own: reads never take a pipeline thread.
    poll_threads: int = Field(default=2, ge=1)
    # /healthz, /readyz and /metrics of a `bookingsync worker` (on server.host); 0: any free port.
    health_port: int = Field(default=0, ge=0, le=65535)


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one object per line with the bound context (connection, meeting, event, delivery).
    format: Literal["text", "json"] = "text"


class RetentionConfig(_Strict):
    """How long finished rows are kept (worker/retention.py says what each window covers)."""

    enabled: bool = True
    interval_seconds: float = Field(default=3600.0, gt=0)
    batch_size: int = Field(default=1000, ge=1)
    # The defaults keep a service at 5 changes/s about 22 GB (README, "Retention: what it keeps").
    receipt_bodies_days: float = Field(default=3.0, gt=0)  # a weekend of raw bodies to debug with
    receipts_days: float = Field(default=7.0, gt=0)  # dedupes provider redeliveries (hours to days)
    events_days: float = Field(default=7.0, gt=0)  # the feed's reach back: consumers read within it
    cancelled_days: float = Field(default=3.0, gt=0)  # superseded timers: in no feed, kept to debug
    meetings_days: float = Field(default=30.0, gt=0)  # ended meetings (> every lookback_days)
    quarantine_days: float = Field(default=30.0, gt=0)


class MirroringConfig(_Strict):
    """Writes to route targets (worker/reconcile.py, worker/intents.py)."""

    # More creates or moves than this of one meeting at one target within an hour halt that
    # mirror until a person lifts it (`bookingsync mirrors resume`): a loop stops at this many.
    max_writes_per_hour: int = Field(default=5, ge=1)
    # How long one write may be in flight before its answer counts as lost (and a worker that
    # died mid-call is replaced): above the adapters' worst case of timeouts and retries.
    lease_seconds: float = Field(default=120.0, gt=0)


class IdentityConfig(_Strict):
    """How a record from a connection not yet linked is matched to a meeting (worker/identity.py)."""

    # The rules after our own planted reference, in order. `attendee-start`: the same normalised
    # attendee email and the same start (within the tolerance), hosts overlapping where both name
    # them. An empty list links only by our reference: every other record is a meeting of its own.
    rules: tuple[Literal["attendee-start"], ...] = ("attendee-start",)
    # How far apart two starts may be and still be the same meeting (0: exactly the same instant).
    start_tolerance_seconds: float = Field(default=0.0, ge=0, le=86400)
    # Two records naming hosts must share at least one of them (a record naming none never blocks).
    require_host_overlap: bool = True


class DriftConfig(_Strict):
    """The sweep that re-reads live mirrors and converges them (worker/drift.py)."""

    enabled: bool = True
    interval_seconds: float = Field(default=900.0, gt=0)
    # Mirrors checked per sweep: reads at a target are spent on this at most, so polls keep the rest
    # of the target's rate limit.
    batch_size: int = Field(default=50, ge=1)
    # Only mirrors of meetings ending after now: history is not repaired.


class ConnectionConfig(_Strict):
    """One [[connections]] table: its id and provider, how it is polled, and its provider's settings.

    The file spells the shared settings on the connection (`base_url`, `token`, …) and the rest
    under `options`; both are validated together through the provider's settings model
    (`LeezySettings` …, adapters/settings.py), which is what `settings` holds.
    """

    id: str
    provider: str
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    enabled: bool = True
    settings: SerializeAsAny[AdapterSettings]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", value):
            raise ValueError("use lower-case letters, digits, '-' and '_' (it appears in URLs)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _settings(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "settings" in data:
            return data
        data = dict(data)
        given = {name: data.pop(name) for name in COMMON_SETTINGS if name in data}
        options = data.pop("options", {})
        provider = data.get("provider")
        if provider not in PROVIDERS:
            raise ValueError(
                keyed("provider", f"unknown provider {provider!r}; supported: {', '.join(PROVIDERS)}")
            )
        if not isinstance(options, dict):
            raise ValueError(
                keyed("options", "options must be a table: write them under [connections.options]")
            )
        model = settings_model(provider)
        problems = _misplaced(provider, model, given, options)
        # The values of the keys it does take are checked even beside misplaced ones, so one run
        # of `config check` names every problem of the connection.
        values = {name: value for name, value in {**given, **options}.items() if name in model.model_fields}
        try:
            data["settings"] = model(**values)
        except ValidationError as exc:
            named = {key for key, _ in problems}
            for key, message in model.problems(exc):
                where = key if key is None or key in COMMON_SETTINGS else f"options.{key}"
                if where not in named:  # a missing key is already named by _misplaced
                    problems.append((where, message))
        if problems:
            # Raising here stops pydantic before it names unknown keys: name them too.
            problems += [
                (name, "Extra inputs are not permitted") for name in data if name not in cls.model_fields
            ]
            raise ValueError(_SEP.join(keyed(key, message) if key else message for key, message in problems))
        return data

    @model_validator(mode="after")
    def _polls(self) -> ConnectionConfig:
        adapter = ADAPTERS[self.provider]
        polls = adapter.capabilities & {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}
        if "poll_interval_seconds" in self.model_fields_set and not polls:
            raise ValueError(
                keyed(
                    "poll_interval_seconds",
                    f"{self.provider} has nothing to poll (no list or lookup endpoint); remove it",
                )
            )
        return self

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def lookback_days(self) -> int:
        """How many days back its reads start (LeanData's `lookback_days`; 0 for the others)."""
        return int(getattr(self.settings, "lookback_days", 0))


def _misplaced(
    provider: str, model: type[AdapterSettings], given: Mapping[str, Any], options: Mapping[str, Any]
) -> list[tuple[str | None, str]]:
    """Keys the provider does not take, keys written in the wrong place, and missing ones."""
    fields = model.model_fields
    problems: list[tuple[str | None, str]] = []
    for name in given:
        if name in fields:
            continue
        if name in ("token", "api_key"):
            problems.append(
                (name, f"a {provider} connection takes `{model.credential}`, not `{name}`; rename it")
            )
        else:
            problems.append((name, f"a {provider} connection takes no `{name}`; remove it"))
    for name in options:
        key = f"options.{name}"
        if name in TEST_HOOKS:
            problems.append((key, f"`{name}` is a test hook of the adapter, not a setting; remove it"))
        elif name in COMMON_SETTINGS or name in ConnectionConfig.model_fields:
            problems.append((key, f"set `{name}` on the connection itself, not under options"))
        elif name not in fields:
            takes = ", ".join(f for f in fields if f not in COMMON_SETTINGS) or "none"
            problems.append(
                (key, f"a {provider} connection takes no option `{name}` (its options: {takes}); remove it")
            )
    for name, info in fields.items():
        if info.is_required() and name not in given and name not in options:
            where = "" if name in COMMON_SETTINGS else " under [connections.options]"
            key = name if name in COMMON_SETTINGS else f"options.{name}"
            problems.append((key, f"a {provider} connection needs `{name}`{where}; add it"))
    return problems


class SubscriptionConfig(_Strict):
    id: str
    url: str
    secret: SecretStr
    events: tuple[EventType, ...] = tuple(EventType)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        problem = (
            "a subscription secret is a Standard Webhooks secret: whsec_ followed by base64 of 24 to 64 bytes "
            "(python3 -c 'import base64, os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())')"
        )
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError(problem)
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
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


class ApiKeyConfig(_Strict):
    """A key for the HTTP API (`/v1`) and the status page: `read` sees, `write` also replays and re-enables."""

    id: str
    key: SecretStr
    scopes: tuple[Literal["read", "write"], ...] = ("read",)

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"an API key needs at least {MIN_API_KEY_LENGTH} characters; make one with "
                "`openssl rand -hex 24` and give it as env:NAME"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('give at least one scope: "read", or "write" (which includes read)')
        return value


class RouteConfig(_Strict):
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    # false (default): the sources are authoritative; a change made at a target is reported
    # (`meeting.sync_conflict`) and undone. true: a change at either end flows to the other, the
    # newest `source_updated_at` winning (worker/policy.py); the sources must then be bookable too.
    bidirectional: bool = False


class Config(_Strict):
    # Subscriptions and connections may point at loopback / private / link-local addresses.
    allow_private_targets: bool = False
    database: DatabaseConfig = DatabaseConfig()
    broker: BrokerConfig = BrokerConfig()
    server: ServerConfig = ServerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    events: EventsConfig = EventsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    worker: WorkerConfig = WorkerConfig()
    logging: LoggingConfig = LoggingConfig()
    retention: RetentionConfig = RetentionConfig()
    mirroring: MirroringConfig = MirroringConfig()
    identity: IdentityConfig = IdentityConfig()
    drift: DriftConfig = DriftConfig()
    connections: tuple[ConnectionConfig, ...] = ()
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    actors: tuple[ActorTargetConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    api_keys: tuple[ApiKeyConfig, ...] = ()
    source: str = Field(default="<defaults>", exclude=True)

    @model_validator(mode="after")
    def _unique_api_keys(self) -> Config:
        ids, secrets = set(), set()
        for index, item in enumerate(self.api_keys):
            if item.id in ids:
                raise ValueError(f"api_keys[{index}].id: {item.id!r} is used twice; ids must be unique")
            if item.key.get_secret_value() in secrets:
                raise ValueError(
                    f"api_keys[{index}].key: the same key is given twice; give each id its own key"
                )
            ids.add(item.id)
            secrets.add(item.key.get_secret_value())
        return self

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
                        raise ValueError(
                            f"routes[{index}].{side}[{position}]: names connection {ref!r}, "
                            "which is not configured"
                        )
            ends = [("targets", route.targets)] + (
                [("sources", route.sources)] if route.bidirectional else []
            )
            for side, refs in ends:
                for position, ref in enumerate(refs):
                    # A route books into its targets (and, both ways, its sources): one that cannot
                    # create (read-only, or not set up to book) would only collect dead letters.
                    target = known[ref]
                    problem = booking_problem(target.provider, target.settings)
                    if problem is not None:
                        why = (
                            "" if side == "targets" else " (bidirectional = true books into the sources too)"
                        )
                        raise ValueError(
                            f"routes[{index}].{side}[{position}]: connection {ref!r} cannot be a route "
                            f"target{why}: {problem}"
                        )
        lookback = max(
            (c.lookback_days for c in self.connections if "lookback_days" in c.settings.model_fields_set),
            default=0,
        )
        if self.retention.meetings_days <= lookback:
            raise ValueError(
                f"retention.meetings_days: {self.retention.meetings_days:g} must be longer than the "
                f"longest lookback_days ({lookback}), or a pruned meeting read again would be new; "
                "raise it"
            )
        if not self.allow_private_targets:
            targets = [(f"connections[{i}].base_url", c.base_url) for i, c in enumerate(self.connections)]
            targets += [(f"subscriptions[{i}].url", s.url) for i, s in enumerate(self.subscriptions)]
            for key, url in targets:
                reason = egress.problem(url)
                if reason is not None:
                    raise ValueError(f"{key}: {url} is refused: {reason}; {egress.FIX}")
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


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str]) -> None:
    """Apply BOOKINGSYNC_* overrides; `origins` maps each key set this way to its variable."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 1 and parts[0] in TOP_LEVEL_KEYS:
            data[parts[0]] = _env_value(raw)
            origins[parts[0]] = name
            continue
        if len(parts) == 1:
            continue  # not an override (BOOKINGSYNC_TEST_*, say)
        if len(parts) == 2 and parts[0] in SECTIONS:
            data.setdefault(parts[0], {})[parts[1]] = _env_value(raw)
            origins[f"{parts[0]}.{parts[1]}"] = name
        elif len(parts) == 3 and parts[0] in ("connections", "subscriptions"):
            for index, item in enumerate(data.get(parts[0], [])):
                if str(item.get("id", "")).replace("-", "_").lower() == parts[1]:
                    item[parts[2]] = _env_value(raw)
                    origins[f"{parts[0]}[{index}].{parts[2]}"] = name
                    break
            else:
                raise ConfigError(f"{name} names {parts[0][:-1]} {parts[1]!r}, which is not configured")
        else:
            raise ConfigError(
                f"{name} is not a setting: use BOOKINGSYNC_<SECTION>__<KEY> with a section of "
                f"{', '.join(SECTIONS)}, or BOOKINGSYNC_CONNECTIONS__<ID>__<KEY>"
            )


def _resolve_env_refs(value: Any, where: str, environ: Mapping[str, str], origins: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _resolve_env_refs(v, f"{where}.{k}" if where else k, environ, origins)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_env_refs(v, f"{where}[{i}]", environ, origins) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("env:"):
        var = value[4:]
        if var not in environ:
            raise ConfigError(
                f"{where} refers to env:{var}, but ${var} is not set; export it or put the value in the file"
            )
        origins[where] = var
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
                    # Shown whole: a placeholder is no secret, and seeing it helps find it.
                    raise ConfigError(
                        f"{group}[{i}].{key} looks like a placeholder ({value!r}); put the real secret there"
                    )


def _problem(loc: tuple[Any, ...], message: str, origins: Mapping[str, str]) -> str:
    # Cross-field checks name their key at the start of the message themselves; an item's model
    # validator names its key as §key§ (see `keyed`).
    if message.startswith(_KEY):
        key, _, rest = message[1:].partition(_KEY)
        where, message = f"{_where(loc)}.{key}", rest
    elif loc:
        where = _where(loc)
    else:
        where, _, message = message.partition(": ") if ": " in message else ("", "", message)
    return f"{where}{_origin(where, origins)}: {message}" if where else message


def _origin(where: str, origins: Mapping[str, str]) -> str:
    """' (from $VAR)' when the value at `where` came from the environment, not the file."""
    for key, var in origins.items():
        if where == key or where.startswith((f"{key}.", f"{key}[")):
            return f" (from ${var})"
    return ""


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(
    data: dict[str, Any], *, source: str = "<defaults>", environ: Mapping[str, str] | None = None
) -> Config:
    environ = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    try:
        data = json.loads(json.dumps(data))  # a private copy we may edit
        _apply_env_overrides(data, environ, origins)
        data = _resolve_env_refs(data, "", environ, origins)
        _refuse_placeholders(data)
        return Config.model_validate({**data, "source": source})
    except ConfigError as exc:
        raise ConfigError(f"config error in {source}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            _problem(tuple(e["loc"]), message, origins)
            for e in exc.errors()
            for message in e["msg"].removeprefix("Value error, ").split(_SEP)
        )
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
        raise ConfigError(
            f"config error: {file} does not exist; pass --config with the path of a TOML file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error in {file}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(file), environ=environ)


def validate_for(cfg: Config, role: str, *, sandbox: bool = False) -> None:
    """What depends on the process that runs `cfg`; ConfigError naming the file, the key and the fix.

    `role` is run, web, worker or scheduler; `sandbox` is `run --sandbox` (the built-in demo).
    """
    problems = []
    if role != "run" and cfg.broker.url == "memory://":
        problems.append(
            f"broker.url: memory:// is the in-process broker of `bookingsync run`; a separate {role} "
            'process shares nothing through it. Set broker.url = "redis://host:6379/0" (or an '
            "amqp:// URL), or run everything in one process with `bookingsync run`"
        )
    if cfg.actors and cfg.broker.url == "memory://":
        # Nothing outside this process can read the in-process broker: the events would pile up in
        # its memory for as long as it runs.
        problems.append(
            "actors: [[actors]] hand events to your own dramatiq workers through the broker, and "
            "memory:// lives inside this process where no worker of yours can read them; set "
            'broker.url = "redis://host:6379/0" (or an amqp:// URL) or remove the [[actors]]'
        )
    if sandbox:
        if cfg.connections:
            problems.append(
                "connections: --sandbox runs the built-in simulated providers instead; remove the "
                "[[connections]] or drop --sandbox"
            )
        if cfg.subscriptions:
            problems.append(
                "subscriptions: --sandbox would send made-up meetings to them; remove the "
                "[[subscriptions]] (the demo prints what a subscriber receives) or drop --sandbox"
            )
    elif not cfg.connections and (cfg.source != "<defaults>" or role != "run"):
        if cfg.subscriptions:
            problems.append(
                "subscriptions: configured without any [[connections]], so nothing real would ever reach "
                "them; add the [[connections]] to read meetings from (see the README)"
            )
        else:
            problems.append(
                "connections: none configured; add a [[connections]] table (see the README), or run "
                "`bookingsync run --sandbox` (or `run` without a config) for the built-in demo"
            )
    if problems:
        raise ConfigError(f"config error in {cfg.source}: " + "; ".join(problems))


OPTIONS_BEGIN = (
    "<!-- provider settings: made from the adapters' settings models by `provider_settings_tables` -->"
)
OPTIONS_END = "<!-- end of provider settings -->"


def provider_settings_tables() -> str:
    """The README's per-provider settings tables, made from each adapter's settings model.

    tests/unit/test_adapter_settings.py fails when the README's copy differs; print this and paste
    it between the two markers to bring the README up to date.
    """
    parts = [OPTIONS_BEGIN]
    for provider in PROVIDERS:
        model = settings_model(provider)
        written = {name: f"options.{name}" for name in model.model_fields if name not in COMMON_SETTINGS}
        parts += [
            "",
            f'`provider = "{provider}"`',
            "",
            "| key | type | default | what |",
            "|---|---|---|---|",
        ]
        parts += [
            f"| `{key}` | {kind} | {default} | {what} |"
            for key, kind, default, what in option_rows(model, written)
        ]
    parts += ["", OPTIONS_END]
    return "\n".join(parts)
