"""PostgreSQL webhook receipts written from the event loop (worker/receipts_async.py).

Concurrent callers share statements, each hears back only once its row is committed, duplicates
are told apart, one bad row fails alone, a connection the server dropped is replaced without
losing the batch, and the after-commit step sees every committed batch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from bookingsync.worker.receipts_async import LoopReceipts
from bookingsync.worker.db import make_engine
from tests.conftest import POSTGRES_URL, drop_postgres, postgres_engine
from tests.store.test_receipts import (
    arriving_over_turns,
    item,
    loop_callers_hear_back_only_when_stored,
    one_bad_row_among_good,
    stored_ids,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = postgres_engine()
    # A name of this test's own on every session, the writer's included (it connects as the
    # engine's pool does), so a test can find its sessions among other clients of the server.
    name = f"t_{uuid.uuid4().hex[:12]}"
    named = make_engine(
        POSTGRES_URL,
        connect_args={"options": f"-csearch_path={eng.bookingsync_schema}", "application_name": name},  # type: ignore[attr-defined]
    )
    named.bookingsync_schema = eng.bookingsync_schema  # type: ignore[attr-defined]
    named.application_name = name  # type: ignore[attr-defined]
    eng.dispose()
    yield named
    drop_postgres(named)


def test_concurrent_callers_share_statements_and_hear_back_only_when_stored(engine: Engine) -> None:
    after: list[int] = []
    writer = LoopReceipts(engine, after=lambda items, results: after.append(len(items)))
    loop_callers_hear_back_only_when_stored(engine, writer.submit, 60)
    assert sum(after) == 60 and len(after) < 60  # grouped: fewer batches than callers


def test_receipts_arriving_over_consecutive_turns_share_a_statement(engine: Engine) -> None:
    after: list[int] = []
    writer = LoopReceipts(engine, after=lambda items, results: after.append(len(items)))
    results = arriving_over_turns(writer.submit, 20, turns=4)
    assert [outcome for outcome, _ in results] == ["accepted"] * 20
    assert after == [20]  # sent once the loop had read them all, not after the first turn's


def test_duplicates_inside_a_batch_and_across_batches(engine: Engine) -> None:
    writer = LoopReceipts(engine, connections=1)

    async def main() -> tuple[list[Any], list[Any]]:
        first = await asyncio.gather(*(writer.submit(item(x)) for x in ("a", "b", "a", "c", "b")))
        again = await asyncio.gather(*(writer.submit(item(x)) for x in ("b", "d")))
        return first, again

    first, again = asyncio.run(main())
    assert [outcome for outcome, _ in first] == ["accepted", "accepted", "duplicate", "accepted", "duplicate"]
    assert [outcome for outcome, _ in again] == ["duplicate", "accepted"]
    assert len({receipt_id for _, receipt_id in first if receipt_id is not None}) == 3
    assert stored_ids(engine) == {"a", "b", "c", "d"}


def test_a_bad_row_fails_only_its_own_caller(engine: Engine) -> None:
    writer = LoopReceipts(engine, connections=1)
    assert isinstance(one_bad_row_among_good(engine, writer.submit), psycopg.errors.NotNullViolation)


def test_a_connection_the_server_dropped_is_replaced_and_the_batch_stored(engine: Engine) -> None:
    writer = LoopReceipts(engine, connections=1)

    async def main() -> list[Any]:
        first = await writer.submit(item("before"))
        with engine.begin() as conn:  # the server ends the writer's session
            ended = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid() "
                    "AND query LIKE 'INSERT INTO webhook_receipts%'"
                ),
                {"name": engine.application_name},  # type: ignore[attr-defined]
            ).scalars()
            assert list(ended) == [True]
        await asyncio.sleep(0.2)
        return [first, *await asyncio.gather(*(writer.submit(item(f"after{i}")) for i in range(5)))]

    results = asyncio.run(main())
    assert [outcome for outcome, _ in results] == ["accepted"] * 6
    assert stored_ids(engine) == {"before", *(f"after{i}" for i in range(5))}
