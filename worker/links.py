"""A meeting's links, as a person sees and changes them: `bookingsync meetings show | link | unlink`.

* `show` — the meeting, every link with how it was linked (the rule, or `hand`), whether it is a
  mirror we booked, missing, when first and last seen; its audit trail (links made and split,
  ambiguous matches, conflicts at targets), including ambiguities about the records of its links.
* `link` — join the booking LINK (`connection:external_id`, linked to another meeting now) to
  this meeting. The other meeting, left without any link, was the same real meeting counted
  twice: it is retired (cancelled, with its `deleted` event when it had been booked).
* `unlink` — split LINK off into a meeting of its own (made from what that provider last said),
  announced like any new meeting. The meeting's last link, and a mirror (our own booking: the
  route cancels or moves it), cannot be split off.

Each change is one transaction with a `meeting.linked` / `meeting.unlinked` event on the meeting
and an audit entry naming the person (`cli:<user>`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, or_, select

from bookingsync.models.errors import Conflict, NotFound
from bookingsync.models.meeting import Meeting, MeetingStatus
from bookingsync.models.tables import AuditRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker import identity, store
from bookingsync.worker.lifecycle import Backfill, EventType
from bookingsync.worker.payloads import iso, meeting_json

LINK_COLUMNS = [
    "connection",
    "external_id",
    "provider",
    "linked by",
    "mirror",
    "missing",
    "start",
    "first seen",
    "last seen",
]
AUDIT_COLUMNS = ["at", "action", "actor", "connection", "external_id", "detail"]


def note_event(
    session: Session,
    row: MeetingRow,
    kind: EventType,
    occurrence: str,
    now: datetime,
    details: dict[str, Any],
) -> bool:
    """An event about the meeting's identity or mirrors (not a lifecycle change), once per key."""
    key = f"{row.id}:{kind.value}:{occurrence}"
    if session.exec(select(EventRow.id).where(EventRow.dedupe_key == key)).first() is not None:
        return False
    session.flush()
    snapshot = meeting_json(row, store.links_of(session, [row.id])[row.id])
    session.execute(
        insert(EventRow),
        [
            {
                "event_id": store.new_id("evt"),
                "meeting_id": row.id,
                "type": kind.value,
                "dedupe_key": key,
                "generation": row.generation,
                "set_for": None,
                "occurred_at": now,
                "due_at": now,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "payload": {"meeting": snapshot, **details},
                "sequence": row.next_sequence,
            }
        ],
    )  # numbered at commit, like every event due now (issue 13)
    row.next_sequence += 1
    return True


def parse_link(value: str) -> tuple[str, str]:
    connection, sep, external_id = value.partition(":")
    if not sep or not connection or not external_id:
        raise NotFound(
            f"{value!r} does not name a link; give CONNECTION:EXTERNAL_ID as `meetings show` lists them"
        )
    return connection, external_id


def _link_row(link: LinkRow) -> dict[str, Any]:
    return {
        "connection": link.connection,
        "external_id": link.external_id,
        "provider": link.provider,
        "linked by": link.rule or "origin",
        "mirror": link.mirrored,
        "missing": link.missing,
        "start": iso(link.start),
        "first seen": iso(link.first_seen_at),
        "last seen": iso(link.last_seen_at),
    }


def show(session: Session, meeting_id: str) -> dict[str, Any]:
    row = session.get(MeetingRow, meeting_id)
    if row is None:
        raise NotFound(f"no meeting {meeting_id}; `bookingsync meetings list` shows them")
    links = sorted(store.links_of(session, [meeting_id])[meeting_id], key=lambda link: link.id or 0)
    records = [(link.connection, link.external_id) for link in links]
    about_records = [(AuditRow.connection == c) & (AuditRow.external_id == e) for c, e in records]
    query = (
        select(AuditRow)
        .where(or_(AuditRow.meeting_id == meeting_id, *about_records))
        .order_by(col(AuditRow.id))
    )
    audit = [
        {
            "at": iso(a.at),
            "action": a.action,
            "actor": a.actor,
            "connection": a.connection,
            "external_id": a.external_id,
            "meeting": a.meeting_id,
            "detail": a.detail,
        }
        for a in session.exec(query)
    ]
    return {
        "meeting": meeting_json(row, links) | {"booked": row.booked, "deleted": row.deleted},
        "links": [_link_row(link) for link in links],
        "audit": audit,
        "ambiguous": [a for a in audit if a["action"] == identity.AMBIGUOUS],
    }


def _locked_meeting(session: Session, meeting_id: str) -> MeetingRow:
    row = session.exec(select(MeetingRow).where(MeetingRow.id == meeting_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"no meeting {meeting_id}; `bookingsync meetings list` shows them")
    return row


def _locked_link(session: Session, connection: str, external_id: str) -> LinkRow:
    link = session.exec(
        select(LinkRow)
        .where(LinkRow.connection == connection, LinkRow.external_id == external_id)
        .with_for_update()
    ).first()
    if link is None:
        raise NotFound(
            f"no link {connection}:{external_id}; `bookingsync meetings show` lists a meeting's links"
        )
    return link


def link(
    session: Session, meeting_id: str, target: str, now: datetime, *, actor: str, grace: timedelta
) -> str:
    """Join the booking `target` (CONNECTION:EXTERNAL_ID) to meeting `meeting_id`."""
    connection, external_id = parse_link(target)
    row = _locked_meeting(session, meeting_id)
    moved = _locked_link(session, connection, external_id)
    if moved.meeting_id == meeting_id:
        raise Conflict(f"{target} is already a link of meeting {meeting_id}")
    clash = [
        other
        for other in store.links_of(session, [meeting_id])[meeting_id]
        if other.connection == connection
        and not other.missing
        and other.content_hash != store.SUPERSEDED_HASH
    ]
    if clash:
        raise Conflict(
            f"meeting {meeting_id} already has a live booking at {connection} ({clash[0].external_id}); "
            f"unlink it first"
        )
    old = _locked_meeting(session, moved.meeting_id)
    moved.meeting_id, moved.rule = meeting_id, identity.HAND
    if moved.observed is None and not moved.mirrored:
        moved.observed = store.meeting_of(old).model_dump(mode="json")
    session.flush()
    retired = ""
    if not store.links_of(session, [old.id])[old.id]:
        gone = store.meeting_of(old).model_copy(update={"status": MeetingStatus.CANCELLED})
        store.write_plan(session, old, store.state_of(old), gone, now, grace)
        retired = f"; meeting {old.id} had no other link and is retired as a duplicate"
        identity.audit(
            session,
            meeting_id=old.id,
            action="retired",
            actor=actor,
            now=now,
            connection=connection,
            external_id=external_id,
            into=meeting_id,
        )
    identity.audit(
        session,
        meeting_id=meeting_id,
        action="linked",
        actor=actor,
        now=now,
        connection=connection,
        external_id=external_id,
        rule=identity.HAND,
        previous_meeting=old.id,
    )
    details = {
        "link": {
            "connection": connection,
            "external_id": external_id,
            "rule": identity.HAND,
            "previous_meeting": old.id,
        }
    }
    note_event(session, row, EventType.LINKED, f"{connection}:{external_id}:{iso(now)}", now, details)
    return f"{target} is now a link of meeting {meeting_id} (linked by hand){retired}"


def unlink(
    session: Session,
    meeting_id: str,
    target: str,
    now: datetime,
    *,
    actor: str,
    grace: timedelta,
    backfill: Backfill = Backfill.UPCOMING,
) -> str:
    """Split the booking `target` off meeting `meeting_id` into a meeting of its own."""
    connection, external_id = parse_link(target)
    row = _locked_meeting(session, meeting_id)
    split = _locked_link(session, connection, external_id)
    if split.meeting_id != meeting_id:
        raise Conflict(f"{target} is a link of meeting {split.meeting_id}, not of {meeting_id}")
    if split.mirrored:
        raise Conflict(
            f"{target} is the booking a route made for meeting {meeting_id}; it follows the meeting "
            "(the route moves or cancels it) and cannot be split off"
        )
    others = [other for other in store.links_of(session, [meeting_id])[meeting_id] if other.id != split.id]
    if not others:
        raise Conflict(
            f"{target} is the only link of meeting {meeting_id}; there is nothing to split it from"
        )
    content = (
        Meeting.model_validate(split.observed)
        if split.observed
        else store.meeting_of(row).model_copy(
            update={"start": split.start or row.start, "end": split.end or row.end}
        )
    )
    new = MeetingRow(
        id=store.new_id("mtg"),
        status=content.status.value,
        start=content.start,
        end=content.end,
        hosts=list(content.hosts),
        content_hash=content.content_hash(),
        created_at=now,
        updated_at=now,
        source_updated_at=split.source_updated_at,
    )
    session.add(new)
    session.flush()
    split.meeting_id, split.rule = new.id, identity.ORIGIN
    session.flush()
    store.write_plan(session, new, None, content, now, grace, [split], backfill)
    identity.audit(
        session,
        meeting_id=meeting_id,
        action="unlinked",
        actor=actor,
        now=now,
        connection=connection,
        external_id=external_id,
        new_meeting=new.id,
    )
    identity.audit(
        session,
        meeting_id=new.id,
        action="split",
        actor=actor,
        now=now,
        connection=connection,
        external_id=external_id,
        from_meeting=meeting_id,
    )
    details = {"link": {"connection": connection, "external_id": external_id, "new_meeting": new.id}}
    note_event(session, row, EventType.UNLINKED, f"{connection}:{external_id}:{iso(now)}", now, details)
    return f"{target} split off meeting {meeting_id} into meeting {new.id}"
