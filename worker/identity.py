"""Which canonical meeting a record from a connection belongs to, when its (connection, external_id)
is not linked yet. Called by ingest for every such record, before a new meeting is made.

Rules, in order (the first that gives exactly one meeting wins; two meetings is no match):

    answer        the record's id is one an answer of ours gave (or one a write of ours acted on)
    reference     the record carries a reference we planted (or the provider's alias of a booking
                  we made: HubSpot keeps the calendar event id in `hs_unique_id`)
    open-intent   before the answer: a create or move of ours at this connection, sent and not
                  answered (or held as unknown), for exactly this start and end, and the same
                  attendee where the record names one

Issue 16 adds its identity rules (the same attendee and start, overlapping hosts) after these.
`choose` is pure; `match_unlinked` fetches the candidate intents for a page in one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from bookingsync.models.meeting import SourceRecord
from bookingsync.worker import intent_store
from bookingsync.worker.intents import Intent, State, Step

ANSWER, REFERENCE, OPEN_INTENT = "answer", "reference", "open-intent"


@dataclass(frozen=True)
class Match:
    """The meeting a record belongs to, the rule that said so, and (for the rules above) the write
    of ours it echoes. Issue 16's rules will give matches without an intent: links of the meeting
    at another provider, not mirrors."""

    meeting_id: str
    rule: str
    intent: Intent | None = None


def _one(record: SourceRecord, rule: str, hits: list[Intent]) -> Match | None:
    meetings = {i.meeting_id for i in hits}
    if len(meetings) != 1:
        return None
    # The newest write that names it: the one whose answer (or echo) it is.
    return Match(meeting_id=hits[-1].meeting_id, rule=rule, intent=hits[-1])


def _open(intent: Intent) -> bool:
    sent = intent.attempts > 0 and (intent.state is State.UNKNOWN or (
        intent.state is State.PENDING and intent.step in (Step.CALLING, Step.LOST)))
    return intent.books and sent


def choose(record: SourceRecord, candidates: Sequence[Intent]) -> Match | None:
    """The meeting whose write `record` echoes, by the rules above; None when none or two match."""
    rid = record.external_id
    by_id = [i for i in candidates if rid in (i.external_id, i.subject, i.alias)]
    if by_id:
        return _one(record, ANSWER, by_id)
    if record.reference:
        by_reference = [i for i in candidates if record.reference in (i.reference, i.alias)]
        if by_reference:
            return _one(record, REFERENCE, by_reference)
    m = record.meeting
    email = m.attendee.email
    slot = [i for i in candidates if _open(i) and (i.start, i.end) == (m.start, m.end)
            and (email is None or i.attendee_email is None or email == i.attendee_email)]
    return _one(record, OPEN_INTENT, slot) if slot else None


def match_unlinked(session: Session, connection: str, records: Sequence[SourceRecord]) -> dict[str, Match]:
    """Matches for records of `connection` whose (connection, external_id) is not linked yet,
    keyed by external id. Records without a match are left out (they are new meetings)."""
    if not records or not intent_store.has_any(session, connection):
        return {}
    rows = intent_store.candidates(session, connection, ids={r.external_id for r in records},
                                   references={r.reference for r in records if r.reference},
                                   starts={r.meeting.start for r in records})
    if not rows:
        return {}
    intents = [intent_store.value(row) for row in rows]
    out: dict[str, Match] = {}
    for record in records:
        match = choose(record, intents)
        if match is not None:
            out[record.external_id] = match
    return out
