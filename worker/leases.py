"""Named leases in the database: who leads the schedulers, who is polling a connection.

A lease is held until `until`; its holder renews it, anyone may take it once it has run out.
On PostgreSQL the row is locked while deciding, on SQLite the write lock does the same.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bookingsync.models.tables import LeaseRow
from bookingsync.worker.db import transaction


def holder_id(role: str) -> str:
    """Unique per process: host, pid and a random suffix (pids repeat across hosts and restarts)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(
    engine: Engine, name: str, holder: str, now: datetime, seconds: float, *, force: bool = False
) -> bool:
    """Take or renew `name` for `seconds`; False when someone else holds it. `force` takes it from
    a holder whose lease has not run out: only for one who knows that holder is gone (it holds
    the leader lock that holder had, worker/leadership.py)."""
    until = now + timedelta(seconds=seconds)
    try:
        with transaction(engine) as session:
            row = session.exec(select(LeaseRow).where(LeaseRow.name == name).with_for_update()).first()
            if row is None:
                session.add(LeaseRow(name=name, holder=holder, until=until))
                return True
            if force or row.holder == holder or row.until <= now:
                row.holder = holder
                row.until = until
                return True
            return False
    except IntegrityError:
        return False  # another process created it first


def release(engine: Engine, name: str, holder: str) -> None:
    with transaction(engine) as session:
        row = session.exec(select(LeaseRow).where(LeaseRow.name == name).with_for_update()).first()
        if row is not None and row.holder == holder:
            session.delete(row)


def release_others(engine: Engine, prefix: str, holder: str) -> int:
    """Drop every lease named `prefix…` held by another process (a holder that is not `holder` nor
    starts with it: a poll's read token is `<holder>:read:<nonce>`): for a restarted embedded
    process, whose predecessor (the only other process on its database) is known dead."""
    with transaction(engine) as session:
        rows = session.exec(
            select(LeaseRow)
            .where(
                col(LeaseRow.name).startswith(prefix),
                LeaseRow.holder != holder,
                ~col(LeaseRow.holder).startswith(f"{holder}:"),
            )
            .with_for_update()
        ).all()
        for row in rows:
            session.delete(row)
        return len(rows)
