"""Converge passes against the Meetergo simulator: bookings per meeting, exact vs target-precision compare.

Issue 17's probe: meetings whose times fall between whole minutes (a start at :00.250, a length
of 30 min 30 s) are mirrored into Meetergo, which keeps whole minutes. After the first booking,
each later converge pass asks the planner what to do. Compared exactly (the old planner), the
mirror never matches and every pass books again; compared at the target's resolution
(worker/precision.py) the next plan is "nothing". Real HTTP to the in-process simulator; the
bookings are counted in the simulator's own state. The floor is one booking per meeting.

    .venv/bin/python bench/precision.py --n 40 --passes 3
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from bookingsync.adapters.base import BookingRequest, Capability
from bookingsync.adapters.meetergo import MeetergoAdapter
from bookingsync.models.meeting import Meeting
from bookingsync.sandbox import meetergo
from bookingsync.sandbox.server import serve_app
from bookingsync.worker import intents, precision
from bookingsync.worker.intents import Action, Mirror

MOVABLE = frozenset({Capability.CREATE, Capability.CANCEL})


def weekday_slots(now: datetime, n: int) -> list[datetime]:
    """`n` hourly starts from 10:00 UTC (inside the simulator's working hours), weekdays only."""
    out: list[datetime] = []
    day = (now + timedelta(days=2)).date()
    while len(out) < n:
        if day.weekday() < 5:
            out += [datetime(day.year, day.month, day.day, 8 + h, 0, tzinfo=UTC) for h in range(6)]
        day += timedelta(days=1)
    return out[:n]


def run(n: int, passes: int, exact: bool) -> tuple[int, float]:
    state = meetergo.MeetergoState()
    served = serve_app(meetergo.create_app(state))
    adapter = MeetergoAdapter(
        connection_id=f"bench-{'exact' if exact else 'precise'}",
        base_url=served.url,
        token=meetergo.DEFAULT_TOKEN,
        meeting_type_id=meetergo.MEETING_TYPE_ID,
        host_ids=[meetergo.DEFAULT_USER_ID],
        durations=[30, 60],
        requests_per_minute=1e9,
    )
    starts = weekday_slots(datetime.now(UTC), n)
    meetings = [
        Meeting(
            status="scheduled",
            title="Demo",
            start=start + timedelta(milliseconds=250),
            end=start + timedelta(minutes=30, seconds=30, milliseconds=250),
            attendee={"email": f"a{i}@acme.example"},
        )
        for i, start in enumerate(starts)
    ]
    mirrors: dict[int, Mirror] = {}
    started = time.perf_counter()
    try:
        for _ in range(passes):
            for i, meeting in enumerate(meetings):
                mirror = mirrors.get(i)
                if not exact:
                    mirror = precision.as_planned(adapter.shape, mirror, meeting.start, meeting.end)
                action = intents.plan(
                    live=True,
                    start=meeting.start,
                    end=meeting.end,
                    now=datetime.now(UTC),
                    mirror=mirror,
                    capabilities=MOVABLE,
                )
                if action is Action.NOTHING:
                    continue
                old = mirrors.get(i)
                record = adapter.create(
                    BookingRequest(
                        meeting=meeting, reference=f"bsw_{i}", replaces=old.external_id if old else None
                    )
                )
                if old is not None:
                    adapter.cancel(old.external_id)
                mirrors[i] = Mirror(record.external_id, record.meeting.start, record.meeting.end, False)
        elapsed = time.perf_counter() - started
        return len(state.appointments()), elapsed
    finally:
        adapter.close()
        served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="meetings (default 40)")
    parser.add_argument("--passes", type=int, default=3, help="converge passes (default 3)")
    args = parser.parse_args()
    floor = args.n
    for label, exact in (("before: exact compare", True), ("after: at the target's resolution", False)):
        booked, seconds = run(args.n, args.passes, exact)
        print(
            f"{label:36s} {booked:5d} bookings for {args.n} meetings in {args.passes} passes "
            f"({seconds:.2f} s); floor {floor}; ratio {booked / floor:.2f}"
        )


if __name__ == "__main__":
    main()
