"""Logging: plain text for a terminal, or one JSON object per line (`logging.format = "json"`).

Work carries its context: while an actor handles a message, every log line it writes names what
it is working on (`connection`, `meeting`, `event`, `delivery`, `receipt`). The context lives in a
context variable, so it follows the thread that handles the message and nothing else:

    with logs.bound(delivery=17):
        log.warning("…")            # {"message": "…", "delivery": 17, …}

`BindContext` is a dramatiq middleware that binds the id each of our actors' messages carries;
code deeper down adds to it with `logs.bind(meeting=…)`.

Secrets do not reach the logs: config secrets are SecretStr, and URLs are printed through
`config.redact_url`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

_context: ContextVar[dict[str, Any] | None] = ContextVar("bookingsync_log_context", default=None)
# Libraries that talk too much at INFO.
QUIET = ("apscheduler", "httpx", "httpcore", "uvicorn.access", "alembic", "pika")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
# Which argument of which of our actors names what (worker/actors.py: messages carry ids only).
ACTOR_CONTEXT = {
    "bookingsync.publish": "event",
    "bookingsync.deliver": "delivery",
    "bookingsync.ingest": "receipt",
    "bookingsync.poll": "connection",
}


def context() -> dict[str, Any]:
    return dict(_context.get() or {})


def bind(**values: Any) -> None:
    """Add to the current context, inside a `bound` block or a message only (undone when it ends).

    Outside one there is nothing that would undo it, so it would label every later line of the
    thread: then it does nothing.
    """
    current = _context.get()
    if current is not None:
        _context.set({**current, **values})


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    """Puts the bound context on every record (as `record.context`, text, and `record.bound`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = _context.get() or {}
        record.bound = dict(values)
        record.context = "".join(f" {key}={value}" for key, value in values.items()) if values else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "bound", {}) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """Route every logger to stderr in `fmt` (text | json); stdout stays for command output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.bookingsync = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call; a host's own handlers stay
        if getattr(old, "bookingsync", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


class BindContext(Middleware):
    """Binds the id an actor's message carries for as long as the message is processed."""

    def __init__(self) -> None:
        self._tokens: dict[str, Any] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        key = ACTOR_CONTEXT.get(message.actor_name)
        values = {key: message.args[0]} if key and message.args else {}
        self._tokens[message.message_id] = _context.set({**values, "message": message.message_id})

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        token = self._tokens.pop(message.message_id, None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another context: nothing of ours to undo
                _context.reset(token)

    after_skip_message = after_process_message
