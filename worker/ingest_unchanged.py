"""Records read again unchanged: recognised by fingerprint before normalising, and only touched.

Re-reading a page that has not changed is the commonest read of all (every poll of a quiet
calendar), and the full path (normalise, hash, load, plan) spent most of its time proving that
nothing happened. Here a page's records are first compared with their links' `raw_hash` (the
key of the raw record whose reading the link holds, worker/ingest_fingerprint.py): a record
whose key matches would only have its link's `last_seen_at` set by the full path
(`Planner._touch` with nothing to change), so that is all that is done, in one UPDATE for the
page. Everything else takes the full path, unchanged.

Only what the bulk path would merely touch is skipped: records read by a poll (a webhook
record's receipt time is an ordering key of its own), whose raw external id appears once in the
page, of links the bulk path plans (not mirrors, peers, or a bidirectional route's: issue 16's
per-record path reads those).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import LinkRow

LINKS = LinkRow.__table__  # type: ignore[attr-defined]
# Built once: on a page that changed nothing these two statements are most of the work, and
# building and keying a statement per call cost as much as running it.
_CANDIDATES = (
    select(
        LINKS.c.id,
        LINKS.c.external_id,
        LINKS.c.raw_hash,
        LINKS.c.mirrored,
        LINKS.c.rule,
    )
    .where(
        LINKS.c.connection == bindparam("connection"),
        LINKS.c.external_id.in_(bindparam("external_ids", expanding=True)),
        # Only links whose key is one of the page's: a page that changed reads no rows here.
        LINKS.c.raw_hash.in_(bindparam("keys", expanding=True)),
    )
    .order_by(LINKS.c.id)
    .with_for_update()
)
_TOUCH = (
    update(LINKS)
    .where(LINKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(last_seen_at=bindparam("now"))
)


def touch_unchanged(
    session: Session,
    *,
    connection: str,
    raws: Sequence[RawRecord],
    keys: Sequence[str | None],
    now: datetime,
) -> set[int]:
    """Set `last_seen_at` on the links of the records (`keys`: their raw keys) read again unchanged;
    the positions of those records, which the caller does not apply again."""
    from bookingsync.worker import conflicts

    if conflicts.on_bidirectional_route(connection):
        return set()
    repeated = Counter(raw.external_id for raw in raws)
    wanted = {
        raw.external_id: position
        for position, (raw, key) in enumerate(zip(raws, keys, strict=True))
        if key is not None and raw.external_id is not None and repeated[raw.external_id] == 1
    }
    if not wanted:
        return set()
    conn = session.connection()  # Core statements: the ORM's execute adds nothing here but cost
    touched: dict[int, int] = {}
    for link_id, external_id, stored, mirrored, rule in conn.execute(
        _CANDIDATES,
        {
            "connection": connection,
            "external_ids": sorted(wanted),
            "keys": sorted({key for position in wanted.values() if (key := keys[position]) is not None}),
        },
    ):
        position = wanted[external_id]
        if stored == keys[position] and not mirrored and rule not in conflicts.PEER_RULES:
            touched[link_id] = position
    if touched:
        conn.execute(_TOUCH, {"ids": sorted(touched), "now": now})
    return set(touched.values())
