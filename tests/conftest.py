"""Shared fixtures: the database backends every store/relay test runs on, and a manual clock.

Tests that need PostgreSQL or Redis skip on a laptop without them and FAIL under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import settings
from sqlalchemy import Engine, text

from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import make_engine, upgrade

POSTGRES_URL = os.environ.get(
    "BOOKINGSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BOOKINGSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("BOOKINGSYNC_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Property tests check what comes out, not how fast: hypothesis' default 200 ms deadline per
# example fails a pure function whenever a loaded machine stalls the process for a moment.
settings.register_profile("bookingsync", deadline=None)
settings.load_profile("bookingsync")


def service_missing(what: str, detail: str) -> None:
    message = f"{what} is not reachable ({detail})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; under CI=true it must be running", pytrace=False)
    pytest.skip(message)


def postgres_engine() -> Engine:
    """A fresh schema on the test server, migrated, dropped when the engine is disposed by the caller."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the server is missing
        admin.dispose()
        service_missing("PostgreSQL", str(exc).splitlines()[0])
    admin.dispose()
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    engine.bookingsync_schema = schema  # type: ignore[attr-defined]
    upgrade(engine)
    return engine


def drop_postgres(engine: Engine) -> None:
    schema = engine.bookingsync_schema  # type: ignore[attr-defined]
    engine.dispose()
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        eng = postgres_engine()
        yield eng
        drop_postgres(eng)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
