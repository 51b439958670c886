"""The I/O half of ingest: load a page's state in one go, plan it (worker/ingest_plan.py), write it in bulk.

Per page, in the caller's transaction: one query for the page's links, one for their meetings
(both locked on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises writers), the identity
matches for records not linked yet, then Core statements: new meetings, new links, changed
meetings and links (executemany), the cancelled timers (one UPDATE) and the events (one INSERT).

Concurrent first sight is an upsert (issue 13). Two transactions that see a new booking at once
(a webhook and a poll) both plan a new meeting; the links go in with `INSERT … ON CONFLICT DO
NOTHING`, which on PostgreSQL waits for the other transaction and then inserts nothing. The
loser rolls back to a savepoint taken before its writes, re-reads the page (now seeing the
winner's link) and plans again: one meeting, one link, one `booked`, no error, the page commits.
"""

from __future__ import annotations

import logging
from datetime import UTC
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, bindparam, func, insert, literal_column, null, select, update
from sqlalchemy.dialects import postgresql
import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401  (the dialect the statements compile for)
from sqlmodel import Session

from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker import identity, metrics
from bookingsync.worker.db import insert_for
from bookingsync.worker.ingest_plan import (
    MEETING_COLUMNS,
    Incoming,
    LinkState,
    MeetingSlot,
    Outcome,
    PagePlan,
    StoredLink,
    meeting_columns,
    meetings_needed,
    new_id,
    plan_page,
    state_of_columns,
)
from bookingsync.worker.lifecycle import TIMER_TYPES, Backfill
from bookingsync.worker.sql_lists import constants, one_of

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from bookingsync.worker.identity import Match
    from bookingsync.worker.ingest_unchanged import Loaded

log = logging.getLogger(__name__)

MEETINGS, LINKS, EVENTS = MeetingRow.__table__, LinkRow.__table__, EventRow.__table__  # type: ignore[attr-defined]
# A page that loses the first-sight race for one link is planned again, with the winners' links
# loaded, so each attempt makes progress. A poll page of many new bookings whose webhooks arrive one
# by one can lose once per booking (the soak at 5 changes/s lost three in a row and logged an
# error), so the page is planned again up to ten times before it is handed back to the broker.
FIRST_SIGHT_ATTEMPTS = 10
# LinkState's fields, in order.
_LINK_COLUMNS = (
    "id",
    "meeting_id",
    "connection",
    "provider",
    "external_id",
    "content_hash",
    "scope",
    "mirrored",
    "missing",
    "source_updated_at",
    "source_delivered_at",
    "stale_count",
    "rule",
    "raw_hash",
)


class FirstSightContended(RuntimeError):
    """Other writers kept creating the page's new bookings first; the page is retried later."""


class _LostFirstSight(Exception):
    """Rolls the page's writes back to their savepoint: another writer linked a new booking first."""


# Statements a page runs every time, built once per dialect and kind (building and cache-keying
# a statement per page cost about as much as the short ones take to run).
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_STORED_COLUMNS = (*MEETING_COLUMNS, "source_updated_at")  # what a meeting update compares with
_UNKNOWN = object()


def _statement(dialect: str, *key: Any) -> Any:
    stmt = _STATEMENTS.get((dialect, *key))
    if stmt is None:
        stmt = _STATEMENTS[(dialect, *key)] = _BUILD[key[0]](dialect, *key[1:])
    return stmt


def _links_by_external_id(dialect: str) -> Any:
    return (
        select(*(LINKS.c[name] for name in _LINK_COLUMNS))
        .where(LINKS.c.connection == bindparam("connection"), one_of(dialect, LINKS.c.external_id, "ids"))
        .order_by(LINKS.c.id)
        .with_for_update()
    )


def load_links(session: Session, connection: str, external_ids: set[str]) -> dict[str, LinkState]:
    if not external_ids:
        return {}
    conn = session.connection()
    rows = conn.execute(
        _statement(conn.dialect.name, "links"), {"connection": connection, "ids": sorted(external_ids)}
    )
    return {row.external_id: LinkState(*row) for row in rows}  # columns in field order


# The columns `load_meetings` reads (`_STORED_COLUMNS` right after the id, which it reads by
# position): what the planner needs of a stored meeting, and the
# (connection, provider, external_id) of each of its links, which an event's meeting snapshot lists.
_MEETING_READ = (
    MEETINGS.c.id,
    *(MEETINGS.c[name] for name in _STORED_COLUMNS),
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


def load_meetings(session: Session, meeting_ids: set[str]) -> dict[str, MeetingSlot]:
    """The stored meetings of `meeting_ids`, locked, each with its stored links (`stored_links`,
    which the payloads of its events list) and columns (`stored`, which the update compares
    with): one query for all, read as Core rows."""
    if not meeting_ids:
        return {}
    conn = session.connection()
    rows = conn.execute(_statement(conn.dialect.name, "meetings"), {"ids": sorted(meeting_ids)})
    slots: dict[str, MeetingSlot] = {}
    for row in rows:
        slot = slots.get(row.id)
        if slot is None:
            slot = slots[row.id] = MeetingSlot(
                id=row.id,
                state=state_of_columns(row),
                next_sequence=row.next_sequence,
                source_updated_at=row.source_updated_at,
                stored=dict(zip(_STORED_COLUMNS, row[1 : 1 + len(_STORED_COLUMNS)], strict=True)),
            )
        if row.external_id is not None:
            slot.stored_links.append(StoredLink(row.connection, row.provider, row.external_id))
    return slots


def _link_echoes(
    session: Session,
    incoming: Sequence[Incoming],
    matches: dict[str, Match],
    *,
    connection: str,
    provider: str,
    now: datetime,
) -> set[int]:
    """Link records that echo a write of ours (worker/identity.py) through `store.link_echo`;
    the positions of the records so consumed (the first of each id)."""
    from bookingsync.worker.store import link_echo

    done: set[int] = set()
    seen: set[str] = set()
    for position, item in enumerate(incoming):
        eid = item.record.external_id
        match = matches.get(eid)
        if match is None or match.intent is None or eid in seen:
            continue
        seen.add(eid)
        link_echo(
            session,
            match,
            connection=connection,
            provider=provider,
            record=item.record,
            raw=item.raw,
            now=now,
        )
        done.add(position)
    if done:
        session.flush()
    return done


def _per_record(
    incoming: Sequence[Incoming],
    links: dict[str, LinkState],
    matches: dict[str, Match],
    connection: str,
    skip: set[int],
) -> set[int]:
    """Positions of the records issue 16 speaks for, which go through `store.apply_one`: a read of
    a link that is not a plain origin (a mirror, a peer) or on a bidirectional route, where
    `conflicts.on_read` decides; an identity match without an intent (a peer link, or a
    double-opt-in successor). Decided per external id, so one booking's records stay in order."""
    from bookingsync.worker import conflicts

    both = conflicts.on_bidirectional_route(connection)
    ids: set[str] = set()
    for item in incoming:
        eid = item.record.external_id
        link = links.get(eid)
        if link is not None:
            if link.mirrored or link.rule in conflicts.PEER_RULES or both:
                ids.add(eid)
        elif (match := matches.get(eid)) is not None and match.intent is None:
            ids.add(eid)
    return {
        position
        for position, item in enumerate(incoming)
        if position not in skip and item.record.external_id in ids
    }


def _apply_per_record(
    session: Session,
    incoming: Sequence[Incoming],
    positions: set[int],
    matches: dict[str, Match],
    *,
    connection: str,
    provider: str,
    now: datetime,
    grace: timedelta,
    backfill: Backfill,
) -> dict[int, Outcome]:
    from bookingsync.worker import store

    chosen = [incoming[position] for position in sorted(positions)]
    ids = {item.record.external_id for item in chosen} | {
        item.record.supersedes for item in chosen if item.record.supersedes
    }
    ids |= {m.supersedes for eid, m in matches.items() if m.supersedes and eid in ids}
    known = store.lock_links(session, connection, ids)
    out: dict[int, Outcome] = {}
    for position in sorted(positions):
        item = incoming[position]
        eid = item.record.external_id
        applied = store.apply_one(
            session,
            connection=connection,
            provider=provider,
            record=item.record,
            raw=item.raw,
            now=now,
            grace=grace,
            known=known,
            backfill=backfill,
            match=matches.get(eid) if known.get(eid) is None else None,
            delivered_at=item.delivered_at,
        )
        out[position] = Outcome(
            meeting_id=applied.meeting_id, changed=applied.changed, events=applied.events, stale=applied.stale
        )
    session.flush()
    return out


def _write(session: Session, plan: PagePlan, now: datetime) -> bool:
    """Write the plan; False (nothing written) when another writer linked one of its new bookings first."""
    plan.fingerprint_links()
    events = plan.render()
    if not plan.new_links:  # nothing to race for: no savepoint needed
        _write_rows(session, plan, events, now)
        return True
    if session.get_bind().dialect.name == "postgresql":
        # The savepoint is left to end with the transaction: its RELEASE was one more round trip
        # of a page's few. A lost race rolls back to it; planned again, the page takes a new one.
        conn = session.connection()
        conn.exec_driver_sql("SAVEPOINT ingest_page")
        try:
            _write_rows(session, plan, events, now)
        except _LostFirstSight:
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT ingest_page")
            return False
        return True
    try:
        with session.begin_nested():
            _write_rows(session, plan, events, now)
    except _LostFirstSight:
        return False
    return True


def _write_rows(session: Session, plan: PagePlan, events: list[dict[str, Any]], now: datetime) -> None:
    conn = session.connection()  # Core statements: the ORM's execute adds nothing here but cost
    dialect = conn.dialect.name
    new_links = sorted(plan.new_links, key=lambda link: link.external_id)  # one lock order for every writer
    new_meetings = [
        {
            "id": slot.id,
            **meeting_columns(slot.state, slot.next_sequence, slot.content_hash),
            "created_at": now,
            "updated_at": now,
            "source_updated_at": slot.source_updated_at,
        }
        for slot in plan.new_meetings
        if slot.state is not None
    ]
    link_rows = [
        {
            "meeting_id": link.meeting_id,
            "connection": link.connection,
            "provider": link.provider,
            "external_id": link.external_id,
            **link.values,
        }
        for link in new_links
    ]
    if dialect == "postgresql" and _uniform(new_meetings) and _uniform(link_rows) and _uniform(events):
        meeting_groups, link_groups = _update_groups(plan, now)
        if len(meeting_groups) > 1 or len(link_groups) > 1:
            # Updates of several shapes go as they are, so the texts of the one statement below
            # stay few (one per shape of each part, not per combination of shapes).
            _run_updates(conn, dialect, meeting_groups, link_groups)
            meeting_groups = link_groups = {}
        # The stored timers are cancelled before this page's events go in (a timer set again
        # comes back to life in the insert; in one statement the two would not see each other).
        _cancel_stored_timers(conn, dialect, plan, now)
        if not (new_meetings or link_rows or events or meeting_groups or link_groups):
            return
        inserted = _write_arrays(
            conn,
            new_meetings,
            link_rows,
            events,
            next(iter(meeting_groups.values()), []),
            next(iter(link_groups.values()), []),
        )
        if inserted < len(new_links):
            raise _LostFirstSight
        return
    if new_meetings:
        _executemany(conn, _statement(dialect, "new_meetings"), new_meetings)
    # Without RETURNING: an executemany with RETURNING goes as multi-row VALUES, a statement text
    # per page size (issue 18); the driver counts the rows the executemany inserted.
    if new_links and _executemany(conn, _statement(dialect, "new_links"), link_rows) < len(new_links):
        raise _LostFirstSight
    _write_updates(conn, dialect, plan, now)
    if events:
        _executemany(conn, _statement(dialect, "events"), events)


def _executemany(conn: Any, stmt: Any, rows: list[dict[str, Any]]) -> int:
    """`conn.execute(stmt, rows)`; the rows it wrote. On SQLite, on the driver's cursor with the
    columns' own bind processors but UTC times formatted at once (`receipts.sqlite_time`), as
    `receipts._insert_sqlite` does: SQLAlchemy's executemany processed every time twice (the
    type's step, then the dialect's formatting), a seventh of a page of new bookings."""
    if conn.dialect.name != "sqlite" or not _uniform(rows):
        return int(conn.execute(stmt, rows).rowcount)
    sql, names, processors = _sqlite_executemany(conn, stmt, tuple(rows[0]))
    columns = []  # column by column: one comprehension a column, not a generator a row
    for name, (process, json) in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        if process is not None:
            values = (
                [process(v) for v in values] if json else [v if v is None else process(v) for v in values]
            )
        columns.append(values)
    params = list(zip(*columns, strict=True))
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


_SQLITE_TEXTS: dict[tuple[int, tuple[str, ...]], tuple[str, list[str], list[tuple[Any, bool]]]] = {}


def _sqlite_executemany(
    conn: Any, stmt: Any, keys: tuple[str, ...]
) -> tuple[str, list[str], list[tuple[Any, bool]]]:
    """The SQLite text of `stmt` for rows with `keys`, its parameters' names in order and their
    bind processors; compiled once per statement and keys."""
    from bookingsync.worker.receipts import sqlite_time

    found = _SQLITE_TEXTS.get((id(stmt), keys))
    if found is None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        names = list(compiled.positiontup)
        missing = [name for name in names if name not in keys]
        if missing:
            raise ValueError(f"rows lack {missing} for {compiled.string}")
        # (processor, whether it takes None too: JSON stores None as JSON null, as SQLAlchemy does)
        processors = [
            (sqlite_time, False)
            if isinstance(compiled.binds[name].type, UTCDateTime)
            else (
                compiled.binds[name].type._cached_bind_processor(conn.dialect),
                isinstance(compiled.binds[name].type, JSON),
            )
            for name in names
        ]
        found = _SQLITE_TEXTS[(id(stmt), keys)] = (compiled.string, names, processors)
    return found


def _uniform(rows: list[dict[str, Any]]) -> bool:
    """Whether every row has the same columns (the first row's), as one array a column needs."""
    if not rows:
        return True
    first = rows[0].keys()
    return all(row.keys() == first for row in rows)


def _write_arrays(
    conn: Any,
    meetings: list[dict[str, Any]],
    links: list[dict[str, Any]],
    events: list[dict[str, Any]],
    meeting_updates: list[dict[str, Any]],
    link_updates: list[dict[str, Any]],
) -> int:
    """PostgreSQL: the page's new meetings, new links, events and updated meetings and links (one
    shape each) in one statement, each column one parameter (`INSERT … SELECT unnest(…)`, `UPDATE
    … FROM (SELECT unnest(…))`), the links with `ON CONFLICT DO NOTHING`; how many new links went
    in (fewer than given: another writer linked one of the bookings first).

    One round trip where an executemany a table, a read-back of the new links and their
    savepoint's release were up to six; one statement text for every page size (issue 18: a
    column's values bind as one parameter). The rows reference each other (a link and an event
    their meeting): PostgreSQL checks the foreign keys at the end of the statement, once all of
    its rows are in.

    The arrays go in binary (`%(name)b`): in text, psycopg quotes every element and PostgreSQL
    parses it back (300 timestamps: 1.2 ms as text, 0.2 ms binary). A JSON column goes as one JSON
    document of its values (`json_array_elements`): a `json[]` in text escaped every quote of every
    value (300 payloads: 4.4 ms, against 0.2 ms as one document). Values go through the columns'
    own bind processors, as SQLAlchemy's executemany sends them (JSON: the same serializer)."""
    parts = {"m": meetings, "l": links, "e": events, "mu": meeting_updates, "lu": link_updates}
    key = tuple(tuple(rows[0]) if rows else () for rows in parts.values())
    sql, parameters = _statement("postgresql", "arrays", *key)
    params: dict[str, Any] = {}
    for name, part, column, process, as_json in parameters:
        values = [row[column] for row in parts[part]]
        if as_json:
            params[name] = process(values)  # one JSON document: the list of the column's values
        elif process is not None:
            params[name] = [None if value is None else process(value) for value in values]
        else:
            params[name] = values
    rows = conn.exec_driver_sql(sql, params).all()
    return len(rows) if links else 0


def _update_groups(
    plan: PagePlan, now: datetime
) -> tuple[dict[tuple[str, ...], list[dict[str, Any]]], dict[tuple[str, ...], list[dict[str, Any]]]]:
    """The changed meetings' and stored links' rows to update, grouped by the columns they set.

    A changed meeting's row gets the columns whose value differs from the stored one (and
    updated_at): a move writes its times, hash, version and sequence, not the unchanged title,
    attendee and hosts (JSON) again. Rows with the same columns go in one statement."""
    meeting_groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for slot in plan.changed_meetings:
        if slot.state is None:
            continue
        values = meeting_columns(slot.state, slot.next_sequence, slot.content_hash)
        values["source_updated_at"] = slot.source_updated_at
        if slot.stored is not None:
            values = {
                name: value for name, value in values.items() if slot.stored.get(name, _UNKNOWN) != value
            }
        values["updated_at"] = now
        meeting_groups.setdefault(tuple(sorted(values)), []).append({"b_id": slot.id, **values})
    link_groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for link in plan.links.values():
        if link.id is not None and link.written:
            columns = tuple(sorted(link.written))
            link_groups.setdefault(columns, []).append(
                {"b_id": link.id, **{c: link.values[c] for c in columns}}
            )
    return meeting_groups, link_groups


def _run_updates(
    conn: Any,
    dialect: str,
    meeting_groups: dict[tuple[str, ...], list[dict[str, Any]]],
    link_groups: dict[tuple[str, ...], list[dict[str, Any]]],
) -> None:
    for columns, params in meeting_groups.items():
        _executemany(conn, _statement(dialect, "meeting_update", columns), params)
    for columns, params in link_groups.items():
        _executemany(conn, _statement(dialect, "link_update", columns), params)


def _cancel_stored_timers(conn: Any, dialect: str, plan: PagePlan, now: datetime) -> None:
    if plan.cancel_stored_timers:
        conn.execute(
            _statement(dialect, "cancel_timers"), {"ids": sorted(plan.cancel_stored_timers), "now": now}
        )


def _write_updates(conn: Any, dialect: str, plan: PagePlan, now: datetime) -> None:
    _run_updates(conn, dialect, *_update_groups(plan, now))
    _cancel_stored_timers(conn, dialect, plan, now)


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


def apply_page(
    session: Session,
    *,
    connection: str,
    provider: str,
    incoming: Sequence[Incoming],
    now: datetime,
    grace: timedelta,
    backfill: Backfill = Backfill.UPCOMING,
    matches: dict[str, Match] | None = None,
    loaded: Loaded | None = None,
) -> list[Outcome]:
    """Apply a page of normalised records in the caller's transaction; one outcome per record, in order.

    `matches` overrides the identity look-up (a caller that made it already); `loaded`, the page's
    links as the touch of its unchanged records read them (worker/ingest_unchanged.py), spares
    reading them again when they are all the page needs."""
    if not incoming:
        return []
    records = [item.record for item in incoming]
    wanted = {r.external_id for r in records} | {r.supersedes for r in records if r.supersedes}
    if loaded is not None and wanted <= loaded.ids:
        links = {eid: link for eid, link in loaded.links.items() if eid in wanted}
    else:
        links = load_links(session, connection, wanted)
    if matches is None:
        unlinked: dict[str, Any] = {}
        for r in records:
            if r.external_id not in links:
                unlinked.setdefault(r.external_id, r)
        # Issue 15/16: a record no link knows yet may be the echo of a write of ours, or a meeting
        # already known through another provider.
        matches = identity.match_unlinked(session, connection, list(unlinked.values())) if unlinked else {}
    else:
        matches = {eid: m for eid, m in matches.items() if eid not in links}
    outcomes: dict[int, Outcome] = {}
    echoed = _link_echoes(session, incoming, matches, connection=connection, provider=provider, now=now)
    for position in echoed:
        item = incoming[position]
        outcomes[position] = Outcome(meeting_id=matches[item.record.external_id].meeting_id, changed=False)
    others = {eid: m for eid, m in matches.items() if m.intent is None}
    one_by_one = _per_record(incoming, links, others, connection, echoed)
    if one_by_one:
        outcomes.update(
            _apply_per_record(
                session,
                incoming,
                one_by_one,
                others,
                connection=connection,
                provider=provider,
                now=now,
                grace=grace,
                backfill=backfill,
            )
        )
    apart = echoed | one_by_one
    rest = [item for position, item in enumerate(incoming) if position not in apart]
    for attempt in range(FIRST_SIGHT_ATTEMPTS):
        if apart or attempt:
            links = load_links(session, connection, wanted)
        meetings = load_meetings(session, meetings_needed(rest, links, others))
        plan = plan_page(
            rest,
            links=links,
            meetings=meetings,
            matches=others,
            connection=connection,
            provider=provider,
            now=now,
            grace=grace,
            backfill=backfill,
            new_id=new_id,
        )
        if _write(session, plan, now):
            break
        log.info(
            "%s: another writer linked a new booking of this page first; planning the page again", connection
        )
    else:
        raise FirstSightContended(
            f"{connection}: other writers created this page's new bookings first "
            f"{FIRST_SIGHT_ATTEMPTS} times in a row; the page will be retried"
        )
    if apart:
        # link_echo's and apply_one's ORM objects may be older than what the bulk statements wrote.
        session.expire_all()
    for meeting_id, end, skipped in plan.skipped:
        # Late first sight beyond the late window: history, but never silently (README, Events).
        metrics.late_timers_skipped(skipped)
        log.info(
            "meeting %s was first seen %s after its end (%s), beyond the late window of %s: %s not sent",
            meeting_id,
            now - end,
            end.isoformat(),
            grace,
            " and ".join(t.value for t in skipped),
        )
    if plan.stale:
        log.info("%s: %d older snapshot(s) ignored (a newer one was already applied)", connection, plan.stale)
    rest_outcomes = iter(plan.outcomes)
    return [
        outcomes[position] if position in outcomes else next(rest_outcomes)
        for position in range(len(incoming))
    ]
