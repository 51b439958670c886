"""`bookingsync meetings show | link | unlink` and `routes sync` as a person runs them (subprocess)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import MeetingRow
from bookingsync.worker import ingest
from bookingsync.worker.db import make_engine, transaction
from tests.store.test_identity import START, Reader, record
from tests.store.test_safe_writes_properties import GRACE
from tests.unit.test_cli import bookingsync, config, migrated, no_traceback  # noqa: F401 (fixtures)


def _read(db: Path, connection: str, *payloads: dict) -> None:
    engine = make_engine(f"sqlite:///{db}")
    raws = [RawRecord(payload=p, external_id=p["external_id"]) for p in payloads]
    with transaction(engine) as session:
        ingest.ingest_records(
            session,
            Reader(),
            connection,
            raws,
            source="poll",
            now=START - timedelta(days=1),
            grace=GRACE,
            result=ingest.IngestResult(),
        )
    engine.dispose()


def test_show_unlink_and_link_a_meeting(tmp_path: Path, migrated: Path) -> None:  # noqa: F811
    db = tmp_path / "bs.db"
    _read(db, "leezy-main", record("L1"))
    _read(db, "other", record("D1"))
    engine = make_engine(f"sqlite:///{db}")
    with transaction(engine) as session:
        [mid] = list(session.exec(select(MeetingRow.id)))
    engine.dispose()
    result = bookingsync(tmp_path, "meetings", "show", mid[:12], "--config", str(migrated))
    no_traceback(result)
    assert result.returncode == 0 and "attendee-start" in result.stdout and "other" in result.stdout
    result = bookingsync(tmp_path, "meetings", "unlink", mid, "other:D1", "--config", str(migrated))
    assert result.returncode == 0 and "split off" in result.stdout, result.stderr
    again = bookingsync(tmp_path, "meetings", "unlink", mid, "leezy-main:L1", "--config", str(migrated))
    no_traceback(again)
    assert again.returncode == 1 and "only link" in again.stderr
    bad = bookingsync(tmp_path, "meetings", "link", mid, "nolink", "--config", str(migrated))
    assert bad.returncode == 1 and "CONNECTION:EXTERNAL_ID" in bad.stderr
    result = bookingsync(tmp_path, "meetings", "link", mid, "other:D1", "--config", str(migrated))
    assert result.returncode == 0 and "linked by hand" in result.stdout, result.stderr
    shown = json.loads(
        bookingsync(tmp_path, "meetings", "show", mid, "--json", "--config", str(migrated)).stdout
    )
    assert [link["linked by"] for link in shown["links"]] == ["origin", "hand"]
    # Its own trail, and what happened to the records of its links (D1's meeting of its own meanwhile).
    assert [a["action"] for a in shown["audit"]] == ["linked", "unlinked", "split", "retired", "linked"]


def test_routes_sync_names_an_unknown_target(tmp_path: Path, migrated: Path) -> None:  # noqa: F811
    result = bookingsync(tmp_path, "routes", "sync", "--target", "nope", "--config", str(migrated))
    no_traceback(result)
    assert result.returncode == 2 and "not the target of any route" in result.stderr
