"""Records read again unchanged: recognised by fingerprint before normalising, and only touched.

Re-reading a page that has not changed is the commonest read of all (every poll of a quiet
calendar), and the full path (normalise, hash, load, plan) spent most of its time proving that
nothing happened. Here a page's records are first compared with their links' `raw_hash` (the
key of the raw record whose reading the link holds, worker/ingest_fingerprint.py): a record
whose key matches would only have its link's `last_seen_at` set by the full path
(`Planner._touch` with nothing to change), so that is all that is done. Everything else takes
the full path, unchanged.

The comparison and the touch are one statement, `UPDATE … WHERE raw_hash IN (the page's keys)
… RETURNING raw_hash`: a page that changed nothing costs one round trip, and the database
compares under the row's lock, so a link another writer changed meanwhile is not touched. On
PostgreSQL the rows are locked first in id order (the order every other ingest locks links in),
so two writers never wait on each other in opposite orders. A key names its raw record (the raw
external id is part of it), so a returned key says which record of the page was unchanged.

Only what the bulk path would merely touch is skipped: records read by a poll (a webhook
record's receipt time is an ordering key of its own), whose raw external id appears once in the
page, of links the bulk path plans (not mirrors, peers, or a bidirectional route's: issue 16's
per-record path reads those).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, false, func, null, or_, select, true, update
from sqlmodel import Session

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import LinkRow
from bookingsync.worker.ingest_plan import LINK_COLUMNS, LinkState
from bookingsync.worker.sql_lists import constants, one_of

LINKS = LinkRow.__table__  # type: ignore[attr-defined]
# Built once per dialect: on a page that changed nothing this statement is most of the work, and
# building and keying a statement per call cost as much as running it.
_TOUCH: dict[str, Any] = {}


@dataclass
class Loaded:
    """The stored links of the page's external ids `ids` that were not touched (PostgreSQL reads
    them in the touch's statement), as `ingest_load.load_links` gives them: an id of `ids` that is
    not in `links` has no link."""

    ids: set[str] = field(default_factory=set)
    links: dict[str, LinkState] = field(default_factory=dict)


def _touch_and_load_statement() -> Any:
    """PostgreSQL: the touch, and the page's other links read, in one statement. Every link of the
    page's ids is locked (in id order, as every ingest locks links); the unchanged ones are touched
    and come back as their key alone, the others with the columns the plan reads, so a page that
    changed something does not read its links again (one round trip fewer), and a page that changed
    nothing reads no more than before."""
    from bookingsync.worker.conflicts import PEER_RULES

    stmt = _TOUCH.get("postgresql+load")
    if stmt is None:
        same = (
            func.coalesce(one_of("postgresql", LINKS.c.raw_hash, "keys"), false())
            & (LINKS.c.mirrored == false())
            & or_(LINKS.c.rule.is_(None), LINKS.c.rule.not_in(constants(PEER_RULES)))
        )
        page = (
            select(*(LINKS.c[name] for name in LINK_COLUMNS), same.label("same"))
            .where(
                LINKS.c.connection == bindparam("b_connection"),
                one_of("postgresql", LINKS.c.external_id, "external_ids"),
            )
            .order_by(LINKS.c.id)
            .with_for_update()
            .cte("page")
        )
        touched = (
            update(LINKS)
            .where(LINKS.c.id == page.c.id, page.c.same == true())
            .values(last_seen_at=bindparam("now"))
            .cte("touched")
        )
        stmt = _TOUCH["postgresql+load"] = select(
            page.c.same,
            page.c.raw_hash,
            *(case((page.c.same == true(), null()), else_=page.c[name]).label(name) for name in LINK_COLUMNS),
        ).add_cte(touched)
    return stmt


def _touch_statement(dialect: str) -> Any:
    from bookingsync.worker.conflicts import PEER_RULES

    stmt = _TOUCH.get(dialect)
    if stmt is None:
        unchanged = (
            select(LINKS.c.id)
            .where(
                LINKS.c.connection == bindparam("b_connection"),
                one_of(dialect, LINKS.c.external_id, "external_ids"),
                # Only links whose key is one of the page's: a page that changed matches no rows.
                one_of(dialect, LINKS.c.raw_hash, "keys"),
                LINKS.c.mirrored == false(),
                # The rules are constants, written into the statement rather than bound on every call.
                or_(
                    LINKS.c.rule.is_(None),
                    LINKS.c.rule.not_in(constants(PEER_RULES)),
                ),
            )
            .order_by(LINKS.c.id)
            .with_for_update()
        )
        stmt = _TOUCH[dialect] = (
            update(LINKS)
            .where(LINKS.c.id.in_(unchanged.scalar_subquery()))
            .values(last_seen_at=bindparam("now"))
            .returning(LINKS.c.raw_hash)
        )
    return stmt


def touch_unchanged(
    session: Session,
    *,
    connection: str,
    raws: Sequence[RawRecord],
    keys: Sequence[str | None],
    now: datetime,
    loaded: Loaded | None = None,
) -> set[int]:
    """Set `last_seen_at` on the links of the records (`keys`: their raw keys) read again unchanged;
    the positions of those records, which the caller does not apply again. On PostgreSQL, `loaded`
    gets the page's other stored links, read in the same statement."""
    from bookingsync.worker import conflicts

    if conflicts.on_bidirectional_route(connection):
        return set()
    repeated = Counter(raw.external_id for raw in raws)
    # key -> position; a key embeds its record's raw external id, so keys of distinct ids differ
    wanted: dict[str, int] = {}
    external_ids: list[str] = []
    for position, (raw, key) in enumerate(zip(raws, keys, strict=True)):
        if key is not None and raw.external_id is not None and repeated[raw.external_id] == 1:
            wanted[key] = position
            external_ids.append(raw.external_id)
    if not wanted:
        return set()
    conn = session.connection()  # Core statements: the ORM's execute adds nothing here but cost
    if loaded is not None and conn.dialect.name == "postgresql":
        unchanged: set[int] = set()
        rows = conn.execute(
            _touch_and_load_statement(),
            {
                "b_connection": connection,
                "external_ids": sorted(external_ids),
                "keys": sorted(wanted),
                "now": now,
            },
        )
        touched_ids: set[str] = set()
        for row in rows:
            if row[0]:
                position = wanted[row[1]]
                unchanged.add(position)
                touched_ids.add(raws[position].external_id)  # type: ignore[arg-type]
            else:
                link = LinkState(*row[2:])
                loaded.links[link.external_id] = link
        loaded.ids = set(external_ids) - touched_ids
        return unchanged
    touched = conn.execute(
        _touch_statement(conn.dialect.name),
        {
            "b_connection": connection,
            "external_ids": sorted(external_ids),
            "keys": sorted(wanted),
            "now": now,
        },
    ).scalars()
    return {wanted[key] for key in touched}
