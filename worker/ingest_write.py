"""The writes of a page of ingest (worker/ingest_store.py), in bulk: each table's rows at once.

On PostgreSQL a page goes as one statement of binary arrays (`_write_arrays`), its updates of
several shapes before it; on SQLite as executemanys on the driver's cursor (`_executemany`). Both
cancel the stored timers the page replaces before its events go in. A new link another writer
made first raises `LostFirstSight`: the caller rolls the page back to its savepoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON
from sqlmodel import Session

from bookingsync.models.columns import UTCDateTime
from bookingsync.worker.ingest_plan import PagePlan, meeting_columns
from bookingsync.worker.ingest_statements import statement

if TYPE_CHECKING:
    from datetime import datetime

_UNKNOWN = object()


class LostFirstSight(Exception):
    """Rolls the page's writes back to their savepoint: another writer linked a new booking first."""


def write_rows(session: Session, plan: PagePlan, events: list[dict[str, Any]], now: datetime) -> None:
    """Write the plan's rows and its rendered `events`; `LostFirstSight` when another writer
    linked one of its new bookings first (the caller rolls back to its savepoint)."""
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
            raise LostFirstSight
        return
    if new_meetings:
        _executemany(conn, statement(dialect, "new_meetings"), new_meetings)
    # Without RETURNING: an executemany with RETURNING goes as multi-row VALUES, a statement text
    # per page size (issue 18); the driver counts the rows the executemany inserted.
    if new_links and _executemany(conn, statement(dialect, "new_links"), link_rows) < len(new_links):
        raise LostFirstSight
    _write_updates(conn, dialect, plan, now)
    if events:
        _executemany(conn, statement(dialect, "events"), events)


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
    sql, parameters = statement("postgresql", "arrays", *key)
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
        _executemany(conn, statement(dialect, "meeting_update", columns), params)
    for columns, params in link_groups.items():
        _executemany(conn, statement(dialect, "link_update", columns), params)


def _cancel_stored_timers(conn: Any, dialect: str, plan: PagePlan, now: datetime) -> None:
    if plan.cancel_stored_timers:
        conn.execute(
            statement(dialect, "cancel_timers"), {"ids": sorted(plan.cancel_stored_timers), "now": now}
        )


def _write_updates(conn: Any, dialect: str, plan: PagePlan, now: datetime) -> None:
    _run_updates(conn, dialect, *_update_groups(plan, now))
    _cancel_stored_timers(conn, dialect, plan, now)
