"""The statements a page of ingest runs (worker/ingest_store.py), built once per dialect and kind.

Building and cache-keying a statement per page cost about as much as the short ones take to run,
so each is built the first time a page needs it and kept: the reads of a page's links and
meetings (worker/ingest_load.py), and the writes (worker/ingest_write.py): new meetings and links,
updates by the columns they set, the cancelled timers, the events, and on PostgreSQL the one
statement of binary arrays that carries a whole page (`_arrays_statement`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401  (the dialect the statements compile for)
from sqlalchemy import JSON, bindparam, func, insert, literal_column, null, select, update
from sqlalchemy.dialects import postgresql

from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker.db import insert_for
from bookingsync.worker.ingest_plan import LINK_COLUMNS, MEETING_COLUMNS
from bookingsync.worker.lifecycle import TIMER_TYPES
from bookingsync.worker.sql_lists import constants, one_of

if TYPE_CHECKING:
    from datetime import datetime

MEETINGS, LINKS, EVENTS = MeetingRow.__table__, LinkRow.__table__, EventRow.__table__  # type: ignore[attr-defined]


_STATEMENTS: dict[tuple[Any, ...], Any] = {}
STORED_COLUMNS = (*MEETING_COLUMNS, "source_updated_at")  # what a meeting update compares with


def statement(dialect: str, *key: Any) -> Any:
    """The statement of kind `key[0]` (its arguments: the rest of `key`) for `dialect`, built once."""
    stmt = _STATEMENTS.get((dialect, *key))
    if stmt is None:
        stmt = _STATEMENTS[(dialect, *key)] = _BUILD[key[0]](dialect, *key[1:])
    return stmt


def _links_by_external_id(dialect: str) -> Any:
    return (
        select(*(LINKS.c[name] for name in LINK_COLUMNS))
        .where(LINKS.c.connection == bindparam("connection"), one_of(dialect, LINKS.c.external_id, "ids"))
        .order_by(LINKS.c.id)
        .with_for_update()
    )


# The columns `load_meetings` reads (`STORED_COLUMNS` right after the id, which it reads by
# position): what the planner needs of a stored meeting, and the
# (connection, provider, external_id) of each of its links, which an event's meeting snapshot lists.
_MEETING_READ = (
    MEETINGS.c.id,
    *(MEETINGS.c[name] for name in STORED_COLUMNS),
    LINKS.c.connection,
    LINKS.c.provider,
    LINKS.c.external_id,
)


def _meetings_by_id(dialect: str) -> Any:
    """The page's meetings with their links, one row a link. The meeting rows are locked
    (PostgreSQL: `FOR UPDATE OF meetings`); the links, of this connection or others, are not."""
    return (
        select(*_MEETING_READ)
        .select_from(MEETINGS.outerjoin(LINKS, LINKS.c.meeting_id == MEETINGS.c.id))
        .where(one_of(dialect, MEETINGS.c.id, "ids"))
        .order_by(MEETINGS.c.id)
        .with_for_update(of=MEETINGS)
    )


def _meeting_update(dialect: str, columns: tuple[str, ...]) -> Any:
    return (
        update(MEETINGS).where(MEETINGS.c.id == bindparam("b_id")).values({c: bindparam(c) for c in columns})
    )


def _link_update(dialect: str, columns: tuple[str, ...]) -> Any:
    return update(LINKS).where(LINKS.c.id == bindparam("b_id")).values({c: bindparam(c) for c in columns})


def _cancel_timers(dialect: str) -> Any:
    return (
        update(EVENTS)
        .where(
            one_of(dialect, EVENTS.c.meeting_id, "ids"),
            EVENTS.c.type.in_(constants(t.value for t in TIMER_TYPES)),
            EVENTS.c.status.in_(constants(["pending", "leased"])),
        )
        # Stamped here, its retention window starts now (worker/retention.py stamps any it finds without).
        .values(status="cancelled", cancelled_at=bindparam("now"))
    )


def _unnest(table: Any, prefix: str, columns: tuple[str, ...]) -> Any:
    """One row a position of the arrays `prefix_<column>` (`b_id`: the id of the row to update)."""
    return select(
        *(
            func.json_array_elements(bindparam(f"{prefix}_{c}", type_=JSON())).label(c)
            if c != "b_id" and isinstance(table.c[c].type, JSON)
            else func.unnest(
                bindparam(
                    f"{prefix}_{c}",
                    type_=postgresql.ARRAY(table.c["id" if c == "b_id" else c].type, dimensions=1),
                )
            ).label(c)
            for c in columns
        )
    )


def _arrays_statement(
    dialect: str,
    meetings: tuple[str, ...],
    links: tuple[str, ...],
    events: tuple[str, ...],
    meeting_updates: tuple[str, ...],
    link_updates: tuple[str, ...],
) -> tuple[str, list[tuple[str, str, str, Any, bool]]]:
    """The statement's text (binary placeholders) and, for each parameter, where its values come
    from (part, column) and how they are processed."""
    ctes = []
    for name, table, columns in (("mu", MEETINGS, meeting_updates), ("lu", LINKS, link_updates)):
        if columns:
            rows = _unnest(table, name, columns).subquery(f"{name}_rows")
            ctes.append(
                update(table)
                .where(table.c.id == rows.c.b_id)
                .values({c: rows.c[c] for c in columns if c != "b_id"})
                .cte(f"{name}_updated")
            )
    if meetings:
        ctes.append(
            insert(MEETINGS)
            .from_select(meetings, _unnest(MEETINGS, "m", meetings), include_defaults=False)
            .cte("new_meetings")
        )
    if events:
        stmt = postgresql.insert(EVENTS)
        ctes.append(
            stmt.from_select(events, _unnest(EVENTS, "e", events), include_defaults=False)
            .on_conflict_do_update(**_EVENT_CONFLICT(stmt))
            .cte("new_events")
        )
    if links:
        new_links = (
            postgresql.insert(LINKS)
            .from_select(links, _unnest(LINKS, "l", links), include_defaults=False)
            .on_conflict_do_nothing(index_elements=["connection", "external_id"])
            .returning(LINKS.c.external_id)
            .cte("new_links")
        )
        main = select(new_links.c.external_id)
    else:
        main = select(literal_column("1"))
    pg = postgresql.psycopg.dialect()
    sql = str(main.add_cte(*ctes).compile(dialect=pg))
    parameters = []
    for part, table, columns in (
        ("m", MEETINGS, meetings),
        ("l", LINKS, links),
        ("e", EVENTS, events),
        ("mu", MEETINGS, meeting_updates),
        ("lu", LINKS, link_updates),
    ):
        for c in columns:
            name = f"{part}_{c}"
            if f"%({name})s" not in sql:
                raise AssertionError(f"{name} is not a parameter of {sql}")
            sql = sql.replace(f"%({name})s", f"%({name})b")
            as_json = c != "b_id" and isinstance(table.c[c].type, JSON)
            column_type = table.c["id" if c == "b_id" else c].type
            process = (
                _utc
                if isinstance(column_type, UTCDateTime)
                else (JSON() if as_json else column_type)._cached_bind_processor(pg)
            )
            parameters.append((name, part, c, process, as_json))
    return sql, parameters


def _utc(value: datetime) -> datetime:
    """`UTCDateTime`'s bind step on PostgreSQL (UTC-aware, naive refused) without its TypeDecorator
    call: a page of new bookings binds about 2,000 times."""
    if value.tzinfo is None:
        raise ValueError("refusing to store a naive datetime; times are UTC-aware everywhere")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _events_insert(dialect: str) -> Any:
    # A key already stored stands as it is, unless it is a cancelled timer set again: then it
    # comes back to life at its new due time. The constants are literals, not parameters: bound,
    # they were two more values to process for every row of an executemany.
    stmt = insert_for(dialect)(EVENTS)
    return stmt.on_conflict_do_update(**_EVENT_CONFLICT(stmt))


def _EVENT_CONFLICT(stmt: Any) -> dict[str, Any]:  # noqa: N802
    return {
        "index_elements": ["dedupe_key"],
        "set_": {
            "status": stmt.excluded.status,
            "due_at": stmt.excluded.due_at,
            "lease_until": null(),
            "cancelled_at": null(),
        },
        "where": EVENTS.c.status == literal_column("'cancelled'"),
    }


def _new_meetings(dialect: str) -> Any:
    return insert(MEETINGS)


def _new_links(dialect: str) -> Any:
    return insert_for(dialect)(LINKS).on_conflict_do_nothing(index_elements=["connection", "external_id"])


_BUILD: dict[str, Callable[..., Any]] = {
    "new_meetings": _new_meetings,
    "new_links": _new_links,
    "links": _links_by_external_id,
    "meetings": _meetings_by_id,
    "meeting_update": _meeting_update,
    "link_update": _link_update,
    "cancel_timers": _cancel_timers,
    "events": _events_insert,
    "arrays": _arrays_statement,
}
