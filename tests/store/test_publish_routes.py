"""Route targets of a published batch, on SQLite and PostgreSQL (the `engine` fixture).

`publish_batch` looks the origin of every meeting of a batch up in one query; each event must get
the route targets of the connection where its meeting was first seen, a mirror bookingsync made
never counting as an origin, exactly as `store.origin_connection` decides one meeting at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select
from sqlmodel import col

from bookingsync.models.tables import EventRow, LinkRow
from bookingsync.worker import reconcile, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish_batch
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_store_and_relay import apply, record


def add_link(engine: Engine, meeting_id: str, connection: str, *, mirrored: bool, seen: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(LinkRow.__table__),  # type: ignore[attr-defined]
            {
                "meeting_id": meeting_id,
                "connection": connection,
                "provider": "leezy",
                "external_id": f"{connection}-{meeting_id}",
                "content_hash": "h",
                "missing": False,
                "mirrored": mirrored,
                "first_seen_at": seen,
                "last_seen_at": seen,
            },
        )


def test_each_event_of_a_batch_is_routed_from_its_own_meetings_origin(
    engine: Engine, clock: ManualClock
) -> None:
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "connections": [
                {"id": "leezy-main", "provider": "leezy", "base_url": "http://127.0.0.1:9", "token": "t1"},
                *(
                    {
                        "id": c,
                        "provider": "leandata",
                        "base_url": "http://127.0.0.1:9",
                        "api_key": "k1",
                        "options": {"link_id": f"L-{c}"},
                    }
                    for c in ("ld", "other")
                ),
            ],
            "routes": [
                {"sources": ["leezy-main"], "targets": ["ld"]},
                {"sources": ["ld"], "targets": ["other"]},
            ],
            "events": {"console": False},
        },
        environ={},
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    plain = apply(engine, clock, record(clock, "a")).meeting_id  # first seen at leezy-main
    at_ld = apply(engine, clock, record(clock, "b"), connection="ld").meeting_id
    # A mirror we made at ld, with an older first sight: still not the origin.
    mirrored = apply(engine, clock, record(clock, "c")).meeting_id
    add_link(engine, mirrored, "ld", mirrored=True, seen=clock.now() - timedelta(hours=1))
    # Seen at leezy-main later (a peer, not a mirror): the origin stays ld, seen first.
    peer = apply(engine, clock, record(clock, "d"), connection="ld").meeting_id
    add_link(engine, peer, "leezy-main", mirrored=False, seen=clock.now() + timedelta(hours=1))
    expected = {
        plain: {"route:ld"},
        at_ld: {"route:other"},
        mirrored: {"route:ld"},
        peer: {"route:other"},
    }

    claimed = claim(engine, clock.now(), lease_seconds=30, limit=100).events
    published = publish_batch(rt, claimed)  # one batch: every meeting's origin in one look-up
    assert len(published) == 4
    with transaction(engine) as session:
        meeting_of: dict[str, str] = dict(
            session.execute(
                select(EventRow.event_id, EventRow.meeting_id).where(
                    col(EventRow.event_id).in_([p.event_id for p in published])
                )
            ).all()
        )
        one_at_a_time = {
            meeting_of[p.event_id]: set(
                reconcile.targets_for(cfg, store.origin_connection(session, meeting_of[p.event_id]), p.type)
            )
            for p in published
        }
    got = {meeting_of[p.event_id]: set(p.targets.values()) for p in published}
    assert got == expected == one_at_a_time
    rt.close()
