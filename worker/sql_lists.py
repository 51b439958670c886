"""A column matched against a list of values, as one statement text whatever the list's length.

`column.in_(values)` renders one placeholder per value, so every length is a statement of its own.
On PostgreSQL that costs twice: psycopg converts a statement of more than 50 parameters again in
Python on every execution, and it prepares every text it has run five times and keeps up to 100
of them per connection. A claim of 1 to 1,000 ids is then up to 1,000 texts, each a few KB, each
cached and prepared on the server; the scheduler's memory grew by about 1.5 MiB an hour for hours
this way (issue 18: tracemalloc put all of its growth in psycopg/_queries.py). `= ANY(array)` is
one short text and one parameter for every length, and PostgreSQL plans both forms alike (an IN
list is an `= ANY` of its values).

SQLite's driver caches too: the last 128 statements of each connection, compiled. An IN list of a
few hundred ids compiles to a program of a few hundred KB, so a pool of connections each holding
128 of them kept tens of MB (128 IN lists of 7 to 896 ids: +12.7 MB of RSS in one connection). On
SQLite the list goes as one JSON parameter, `IN (SELECT value FROM json_each(:list))`, which
SQLite answers from the column's index one value at a time, as it does an IN list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql


def dialect_of(bind: Any) -> str:
    """The dialect name of a Session, Connection or Engine."""
    get_bind = getattr(bind, "get_bind", None)
    engine = get_bind() if get_bind is not None else bind
    return str(engine.dialect.name)


def among(bind: Any, column: Any, values: Iterable[Any]) -> Any:
    """`column IN (values)` as `column = ANY(:array)` on PostgreSQL, `column IN (SELECT value FROM
    json_each(:list))` on SQLite. `bind`: the Session, Connection
    or Engine the statement runs on. The values are sorted, so equal sets bind equal arrays."""
    ordered = sorted(values)
    if dialect_of(bind) == "postgresql":
        return column == any_(bindparam(None, ordered, type_=postgresql.ARRAY(column.type)))
    listed = func.json_each(bindparam(None, ordered, type_=JSON())).table_valued("value")
    return column.in_(select(listed.c.value).scalar_subquery())
