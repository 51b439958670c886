"""Fresh PostgreSQL statistics while ingest grows the tables fast, as a company's first sync does.

PostgreSQL plans each statement from the statistics ANALYZE gathers, and autovacuum gathers them
at most once a minute (`autovacuum_naptime`), once enough rows have changed. A first sync writes
tens of thousands of links within that minute. Without statistics the planner takes
`connection = …` to match a handful of rows, so it read a page's links by walking every link of
the connection (ix_links_connection_scope) rather than finding the page's hundred in the unique
index: at 10,000 links that read took 20 ms of a page's 70, and each page's took longer than the
last (bench/ingest.py --n 10000, fresh: 0.39 of the same-rows floor).

So each process counts the links its ingest creates. Once they reach as many as the table held at
its last ANALYZE (and at least FIRST_AT), it analyses links, meetings and events itself, after the
page that crossed the mark has committed: about six ANALYZEs, 65–80 ms each here, over a first sync of
50,000. One that would wait for a lock (autovacuum's or another worker's ANALYZE) is skipped: the
statistics are being gathered already. SQLite plans without them (its planner prefers the unique
index for equality on both columns), so it is left alone.
"""

from __future__ import annotations

import logging
import threading
import time
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

log = logging.getLogger(__name__)

FIRST_AT = 1000  # links created in this process before its first ANALYZE
TABLES = ("links", "meetings", "events")
LOCK_TIMEOUT_MS = 50

_LOCK = threading.Lock()
# Per engine: [links created since the last ANALYZE, how many make the next one due].
_COUNTS: WeakKeyDictionary[Engine, list[int]] = WeakKeyDictionary()


def links_created(session: Session, count: int) -> None:
    """Count `count` links written in `session`'s transaction; once enough have been, analyse the
    tables when it commits (PostgreSQL only)."""
    engine = session.get_bind()
    if count <= 0 or not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return
    with _LOCK:
        counts = _COUNTS.setdefault(engine, [0, FIRST_AT])
        counts[0] += count
        if counts[0] < counts[1]:
            return
        counts[0] = 0
    event.listen(session, "after_commit", lambda _session: analyze(engine), once=True)


def analyze(engine: Engine) -> bool:
    """ANALYZE the ingest's tables and set the next mark to the links' new row count; False when it
    was skipped (a lock it would have waited for) or failed (logged; ingest goes on either way)."""
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            conn.exec_driver_sql(f"ANALYZE {', '.join(TABLES)}")
            rows = conn.exec_driver_sql(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = 'links'::regclass"
            )
            links = int(rows.scalar_one())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            log.debug("ANALYZE skipped: another one holds the tables")
        else:
            log.warning(
                "ANALYZE of %s failed (autovacuum will gather the statistics): %s", ", ".join(TABLES), exc
            )
        return False
    except Exception:  # never out of a commit hook: the page is committed already
        log.exception("ANALYZE of %s failed", ", ".join(TABLES))
        return False
    with _LOCK:
        _COUNTS.setdefault(engine, [0, FIRST_AT])[1] = max(FIRST_AT, links)
    log.info(
        "analysed %s as ingest grew them (%d links, %.0f ms)",
        ", ".join(TABLES),
        links,
        (time.monotonic() - started) * 1000,
    )
    return True
