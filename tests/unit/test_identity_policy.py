"""Property tests of the identity rules and the conflict policy (pure: no database, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, MeetingStatus, SourceRecord
from bookingsync.worker import identity, policy
from bookingsync.worker.identity import Ambiguity, Candidate, Match, Rules
from bookingsync.worker.policy import Read, Role, Verdict

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAILS = ["a@x.com", "b@x.com"]
HOSTS = ["h1@us.com", "h2@us.com"]

candidates_st = st.lists(
    st.builds(
        Candidate,
        meeting_id=st.sampled_from([f"m{i}" for i in range(6)]),
        attendee_email=st.sampled_from(EMAILS),
        start=st.sampled_from([T0 + timedelta(minutes=m) for m in (0, 1, 5, 30)]),
        hosts=st.lists(st.sampled_from(HOSTS), max_size=2, unique=True).map(lambda h: tuple(sorted(h))),
        status=st.sampled_from(["scheduled", "pending", "cancelled"]),
        here=st.lists(st.sampled_from(["e1", "e2"]), max_size=2, unique=True).map(tuple),
    ),
    max_size=6,
    unique_by=lambda c: c.meeting_id,
)


def _record(email: str | None, minutes: int, hosts: list[str], status: str) -> SourceRecord:
    return SourceRecord(
        external_id="r1",
        meeting=Meeting(
            status=status,
            start=T0 + timedelta(minutes=minutes),
            end=T0 + timedelta(minutes=minutes + 30),
            attendee={"email": email},
            hosts=hosts,
        ),
    )


@settings(max_examples=150, deadline=None)
@given(
    candidates=candidates_st,
    email=st.sampled_from([*EMAILS, None]),
    minutes=st.sampled_from([0, 1, 5]),
    hosts=st.lists(st.sampled_from(HOSTS), max_size=2, unique=True),
    status=st.sampled_from(["scheduled", "confirmed", "pending", "cancelled"]),
    tolerance=st.sampled_from([0, 60, 600]),
    overlap=st.booleans(),
)
def test_a_record_joins_exactly_the_one_meeting_the_rules_name_or_none(
    candidates: list[Candidate],
    email: str | None,
    minutes: int,
    hosts: list[str],
    status: str,
    tolerance: int,
    overlap: bool,
) -> None:
    record = _record(email, minutes, hosts, status)
    rules = Rules(tolerance=timedelta(seconds=tolerance), host_overlap=overlap)
    found = identity.choose_by_rules(record, candidates, rules)

    def same(c: Candidate) -> bool:
        m = record.meeting
        return (
            c.attendee_email == m.attendee.email
            and abs(c.start - m.start) <= rules.tolerance
            and c.status != "cancelled"
            and (not overlap or not c.hosts or not m.hosts or bool(set(c.hosts) & set(m.hosts)))
        )

    def joinable(c: Candidate) -> bool:
        return same(c) and (
            not c.here or (c.status == "pending" and record.meeting.active and len(c.here) == 1)
        )

    expected = sorted(c.meeting_id for c in candidates if joinable(c))
    if email is None or not expected:
        assert found is None
    elif len(expected) > 1:
        assert isinstance(found, Ambiguity) and list(found.meeting_ids) == expected
    else:
        assert isinstance(found, Match) and found.meeting_id == expected[0]
        [c] = [c for c in candidates if c.meeting_id == expected[0]]
        assert (found.rule == identity.DOUBLE_OPT_IN) == bool(c.here)
        assert found.supersedes == (c.here[0] if c.here else None)


# -- the policy ----------------------------------------------------------------------------------

stamps = st.one_of(st.none(), st.integers(0, 5).map(lambda h: T0 + timedelta(hours=h)))


@settings(max_examples=200, deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    stamp=stamps,
    link_stamp=stamps,
    meeting_stamp=stamps,
    edits=st.lists(st.sampled_from(policy.COMPARED), max_size=3, unique=True).map(tuple),
    both=st.booleans(),
    ours=st.booleans(),
)
def test_the_policy_never_goes_backwards_and_a_one_way_target_never_wins(
    role: Role,
    stamp: datetime | None,
    link_stamp: datetime | None,
    meeting_stamp: datetime | None,
    edits: tuple[str, ...],
    both: bool,
    ours: bool,
) -> None:
    verdict = policy.decide(
        Read(
            role=role,
            stamp=stamp,
            link_stamp=link_stamp,
            meeting_stamp=meeting_stamp,
            edits=edits,
            bidirectional=both,
            ours=ours,
        )
    )
    if stamp is not None and link_stamp is not None and stamp < link_stamp:
        assert verdict is Verdict.STALE  # older than what this end said before: never overwrites
        return
    if verdict in (Verdict.APPLY, Verdict.MERGE) and stamp is not None and meeting_stamp is not None:
        # What changes the meeting is never older than what it holds, except the origin of a one-way route.
        assert stamp >= meeting_stamp or (role is Role.ORIGIN and not both)
    if role is Role.MIRROR and not both:
        assert verdict in (Verdict.OBSERVE, Verdict.CONFLICT)
    if role is not Role.ORIGIN and (ours or not edits):
        assert verdict is Verdict.OBSERVE  # our own echo, or nothing changed there
    if role is Role.MIRROR and both and edits and not ours and verdict is Verdict.CONFLICT:
        assert stamp is None or meeting_stamp is None or stamp <= meeting_stamp  # ties: the origin wins


@settings(max_examples=100, deadline=None)
@given(
    reads=st.lists(
        st.tuples(st.sampled_from(["origin", "target"]), st.integers(0, 3)), min_size=1, max_size=14
    ),
    origin_stamps=st.lists(st.integers(0, 40), min_size=4, max_size=4, unique=True).map(sorted),
    target_stamps=st.lists(st.integers(0, 40), min_size=4, max_size=4, unique=True).map(sorted),
)
def test_bidirectional_reads_in_any_order_converge_to_the_newest_change(
    reads: list[tuple[str, int]], origin_stamps: list[int], target_stamps: list[int]
) -> None:
    """Each end has versions 0..3 (a move each, stamped in order); reads arrive in any order,
    stale ones included, then the newest of each end once more. The meeting ends at the start of
    the newest version by stamp (the origin's on a tie), whatever the order."""

    def version(end: str, v: int) -> tuple[Meeting, datetime]:
        stamp = (origin_stamps if end == "origin" else target_stamps)[v]
        start = T0 + timedelta(days=1, hours=v if end == "origin" else 10 + v)
        return Meeting(
            status=MeetingStatus.SCHEDULED, start=start, end=start + timedelta(minutes=30)
        ), T0 + timedelta(minutes=stamp)

    meeting, meeting_stamp = version("origin", 0)
    seen: dict[str, tuple[Meeting | None, datetime | None]] = {
        "origin": (meeting, meeting_stamp),
        "target": (meeting, None),
    }
    for end, v in [*reads, ("origin", 3), ("target", 3)]:
        record, stamp = version(end, v)
        before, link_stamp = seen[end]
        role = Role.ORIGIN if end == "origin" else Role.MIRROR
        edits = policy.edits(before, record, meeting)
        verdict = policy.decide(
            Read(
                role=role,
                stamp=stamp,
                link_stamp=link_stamp,
                meeting_stamp=meeting_stamp,
                edits=edits,
                bidirectional=True,
            )
        )
        if verdict is Verdict.STALE:
            continue
        seen[end] = (record, stamp)
        if verdict is Verdict.APPLY or verdict is Verdict.MERGE:
            meeting = record if verdict is Verdict.APPLY else policy.merge(meeting, record, edits)
            meeting_stamp = stamp
    newest_origin, o_stamp = version("origin", 3)
    newest_target, t_stamp = version("target", 3)
    assert meeting.start == (newest_target.start if t_stamp > o_stamp else newest_origin.start)
    assert meeting_stamp == max(o_stamp, t_stamp)


@given(fields=st.lists(st.sampled_from(policy.COMPARED), unique=True).map(tuple))
def test_merge_takes_exactly_the_fields_and_is_idempotent(fields: tuple[str, ...]) -> None:
    a = Meeting(
        status="scheduled", title="A", start=T0, end=T0 + timedelta(minutes=30), attendee={"email": "a@x.com"}
    )
    b = Meeting(
        status="cancelled",
        title="B",
        start=T0 + timedelta(hours=1),
        end=T0 + timedelta(hours=1, minutes=30),
        attendee={"email": "b@x.com", "name": "Bee"},
        hosts=["h1@us.com"],
    )
    merged = policy.merge(a, b, fields)
    assert policy.merge(merged, b, fields) == merged
    va, vb, vm = policy.view(a), policy.view(b), policy.view(merged)
    for name in policy.COMPARED:
        if name in ("start", "end") and ("start" in fields) != ("end" in fields):
            continue  # one end moved alone keeps the length when it would invert the meeting
        assert vm[name] == (vb[name] if name in fields else va[name])


def _at(start: datetime, minutes: int = 30) -> Meeting:
    return Meeting(status="scheduled", start=start, end=start + timedelta(minutes=minutes))


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(min_value=1, max_value=59),
    hand=st.sampled_from([0, 60, 3600]),
    step=st.sampled_from([timedelta(minutes=1), timedelta(milliseconds=1)]),
)
def test_times_are_compared_at_the_resolution_of_the_end_that_was_read(
    seconds: int, hand: int, step: timedelta
) -> None:
    """A target that keeps whole minutes holds a meeting at 09:00:ss as 09:00. Read back there after
    any change (the answer said 09:00:ss, or a person moved it away and back), it is the meeting as
    that target keeps it: no edit, so no conflict and no re-push. A move of a whole step or more
    is an edit at every resolution."""
    meeting = _at(T0 + timedelta(seconds=seconds))
    floored = _at(T0)
    for before in (meeting, _at(T0 + timedelta(seconds=hand + seconds))):
        found = policy.edits(before, floored, meeting, policy.MIRRORED, step)
        if step == timedelta(minutes=1):
            assert found == ()
        else:  # a millisecond target shows the seconds: 09:00 is a real move there
            assert found == (("start", "end") if before != floored else ())
    moved = _at(T0 + timedelta(seconds=seconds + hand + 60))
    assert policy.edits(meeting, moved, meeting, policy.MIRRORED, step) == ("start", "end")


def test_the_exact_comparison_is_what_a_minute_target_cannot_satisfy() -> None:
    """The table the fix is for: the same reads, compared exactly (the old rule) and at a minute."""
    meeting = _at(T0 + timedelta(seconds=20))
    rows = [
        # (last read there, this read, edits exactly, edits at a minute)
        (meeting, _at(T0), ("start", "end"), ()),  # our answer had the seconds; the target keeps 09:00
        (_at(T0 + timedelta(hours=1)), _at(T0), ("start", "end"), ()),  # moved by hand, then back
        (_at(T0), _at(T0 + timedelta(hours=1)), ("start", "end"), ("start", "end")),  # a real move
        (_at(T0), _at(T0, 31), ("end",), ()),  # 09:30:20 read as 09:31 (a rounding end): within the minute
    ]
    for before, read, exact, minute in rows:
        assert policy.edits(before, read, meeting, policy.MIRRORED) == exact
        assert policy.edits(before, read, meeting, policy.MIRRORED, timedelta(minutes=1)) == minute
