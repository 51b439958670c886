"""Mirror throughput: N meetings through a route into the Meetergo simulator, echoes on.

The source meetings are applied to the store as a poll would; every route delivery runs the
real `delivery.deliver` → `reconcile.converge` → `MeetergoAdapter` over HTTP to the Meetergo
simulator (`bookingsync.sandbox.meetergo`, served on loopback). The simulator sends its
`booking_created` / `booking_rescheduled` / `booking_cancelled` webhooks for our own bookings
to bookingsync's real web app (`worker.web`), and the stored receipts are ingested between
rounds: every one is an echo to recognise. A complete poll of the simulator at the end reads
every appointment back once more.

Figures:
  mirror      meetings/s booked through the route (intent, call, answer, link; echoes ingested)
  bare        the Meetergo adapter's `create` alone against the same simulator, no database
  ratio       mirror ÷ bare: the price of intents, links, the outbox and echo recognition
Then `--moves` meetings are moved (a Meetergo move is a new booking plus a cancel of the old)
and `--cancels` cancelled, and the writes the simulator received are checked against what the
source asked for: creates + moves (POST /v4/booking) and move-cancels + cancels (DELETE) exactly,
with one live appointment per live meeting and no meeting born of an echo.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common import Timer, backends_of, database, parse_args
from sqlalchemy import Engine, func
from sqlmodel import select

from bookingsync.adapters.base import BookingRequest, ReadContext
from bookingsync.adapters.meetergo import MeetergoAdapter
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import IntentRow, LinkRow, MeetingRow, ReceiptRow
from bookingsync.sandbox import meetergo
from bookingsync.sandbox.server import serve_app
from bookingsync.worker import delivery, ingest, store
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.web import create_app

GRACE = timedelta(seconds=300)
TYPE_ID = "mt-bench-all-day"
WEBHOOK_TOKEN = "bench-webhook-token"
# The adapter paces itself at meetergo's documented 100 requests/min; the simulator does not
# limit, so the bench lifts the pacing to measure bookingsync rather than the rate limit.
REQUESTS_PER_MINUTE = 600_000.0
BATCH = 100


def slots(count: int, skip: int = 0) -> list[datetime]:
    """Bookable Meetergo slots of the bench meeting type: weekdays, on the half hour, 00:00-23:00 UTC."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    out: list[datetime] = []
    while len(out) < count + skip:
        if day.weekday() < 5:
            out += [day + timedelta(minutes=30 * k) for k in range(46)]
        day += timedelta(days=1)
    return out[skip : skip + count]


def source_record(i: int, start: datetime, *, cancelled: bool = False) -> SourceRecord:
    return SourceRecord(
        external_id=f"lz_{i:06d}",
        meeting=Meeting(
            status="cancelled" if cancelled else "scheduled",
            title=f"Demo call #{i}",
            start=start,
            end=start + timedelta(minutes=30),
            timezone="Europe/Berlin",
            attendee={"email": f"prospect.{i}@example.com", "name": f"Prospect {i}"},
        ),
    )


class Bench:
    def __init__(self, engine: Engine, state: meetergo.MeetergoState, sim_url: str) -> None:
        cfg = parse_config(
            {
                "allow_private_targets": True,  # the simulator is on loopback
                "connections": [
                    {
                        "id": "leezy",
                        "provider": "leezy",
                        "base_url": "http://127.0.0.1:9",
                        "token": "lzy_at_bench",
                    },
                    {
                        "id": "meetergo",
                        "provider": "meetergo",
                        "base_url": sim_url,
                        "token": meetergo.DEFAULT_TOKEN,
                        "webhook_secret": WEBHOOK_TOKEN,
                        "options": {
                            "meeting_type_id": TYPE_ID,
                            "host_ids": [meetergo.DEFAULT_USER_ID],
                            "requests_per_minute": REQUESTS_PER_MINUTE,
                        },
                    },
                ],
                "routes": [{"sources": ["leezy"], "targets": ["meetergo"]}],
                "events": {"console": False},
                "delivery": {"max_attempts": 50, "min_backoff_seconds": 0.1, "max_backoff_seconds": 1},
            },
            environ={},
        )
        self.rt = Runtime(config=cfg, engine=engine)
        self.state = state
        self.web = serve_app(create_app(self.rt))
        state.add_webhook(
            f"{self.web.url}/webhooks/meetergo?token={WEBHOOK_TOKEN}",
            ["booking_created", "booking_cancelled", "booking_rescheduled"],
        )

    def apply(self, records: list[SourceRecord]) -> None:
        now = datetime.now(UTC)
        for first in range(0, len(records), BATCH):
            with transaction(self.rt.engine) as session:
                for rec in records[first : first + BATCH]:
                    store.apply_record(
                        session,
                        connection="leezy",
                        provider="leezy",
                        record=rec,
                        raw={"id": rec.external_id},
                        now=now,
                        grace=GRACE,
                    )

    def ingest_echoes(self) -> int:
        with transaction(self.rt.engine) as session:
            ids = list(session.exec(select(ReceiptRow.id).where(ReceiptRow.status == "leased")))
        for receipt_id in ids:
            ingest.ingest_receipt(self.rt, receipt_id)
        return len(ids)

    def drain(self) -> tuple[int, int]:
        """Publish and deliver until nothing is due; echoes ingested between rounds."""
        delivered = echoes = 0
        for _ in range(200):
            claimed = claim(self.rt.engine, datetime.now(UTC), lease_seconds=30, limit=500)
            ids = list(claimed.deliveries)
            for event_id in claimed.events:
                published = publish(self.rt, event_id)
                if published is not None:
                    ids += published.deliveries
            for delivery_id in ids:
                delivery.deliver(self.rt, delivery_id)
            delivered += len(ids)
            self.state.flush_deliveries(30)
            echoes += self.ingest_echoes()
            if not ids and not claimed.events:
                break
        return delivered, echoes

    def close(self) -> None:
        self.web.stop()
        self.rt.close()


def writes(state: meetergo.MeetergoState) -> dict[str, int]:
    counts = {"POST /v4/booking": 0, "DELETE /v4/appointment": 0}
    for entry in state.requests.entries():
        if entry.method == "POST" and entry.path == "/v4/booking":
            counts["POST /v4/booking"] += 1
        elif entry.method == "DELETE" and entry.path.startswith("/v4/appointment/"):
            counts["DELETE /v4/appointment"] += 1
    return counts


def bare_rate(sim_url: str, count: int, skip: int) -> float:
    adapter = MeetergoAdapter(
        connection_id="bare",
        base_url=sim_url,
        token=meetergo.DEFAULT_TOKEN,
        meeting_type_id=TYPE_ID,
        host_ids=[meetergo.DEFAULT_USER_ID],
        requests_per_minute=REQUESTS_PER_MINUTE,
    )
    try:
        with Timer() as t:
            for i, start in enumerate(slots(count, skip)):
                meeting = source_record(900_000 + i, start).meeting
                adapter.create(BookingRequest(meeting=meeting, reference=f"bare-{i}"))
        return count / t.seconds
    finally:
        adapter.close()


def run(backend: str, n: int, moves: int, cancels: int, bare: int) -> None:
    state = meetergo.MeetergoState()
    state.add_meeting_type(
        meetergo.MeetergoMeetingType(
            TYPE_ID,
            "bench-all-day",
            "Bench (all day)",
            30,
            timezone="UTC",
            day_start_hour=0,
            day_end_hour=23,
            min_notice_minutes=0,
        )
    )
    sim = serve_app(meetergo.create_app(state))
    try:
        with database(backend) as engine:
            bench = Bench(engine, state, sim.url)
            try:
                starts = slots(n)
                bench.apply([source_record(i, s) for i, s in enumerate(starts)])
                with Timer() as booked:
                    delivered, echoes = bench.drain()
                mirror = n / booked.seconds
                later = slots(moves, skip=n)
                bench.apply([source_record(i, later[i]) for i in range(moves)])
                bench.apply(
                    [source_record(i, starts[i], cancelled=True) for i in range(moves, moves + cancels)]
                )
                with Timer() as changed:
                    more, more_echoes = bench.drain()
                echoes += more_echoes
                raws = [
                    raw
                    for page in bench.rt.adapter("meetergo").read(None, ReadContext(now=datetime.now(UTC)))
                    for raw in page.records
                ]
                with transaction(engine) as session:
                    result = ingest.IngestResult()
                    ingest.ingest_records(
                        session,
                        bench.rt.adapter("meetergo"),
                        "meetergo",
                        raws,
                        source="poll",
                        now=datetime.now(UTC),
                        grace=GRACE,
                        result=result,
                    )
                counts = writes(state)
                with transaction(engine) as session:
                    meetings = session.exec(select(func.count()).select_from(MeetingRow)).one()
                    echo_born = session.exec(
                        select(func.count())
                        .select_from(LinkRow)
                        .where(LinkRow.connection == "meetergo", LinkRow.mirrored.is_(False))
                    ).one()
                    intents = dict(
                        session.exec(select(IntentRow.state, func.count()).group_by(IntentRow.state)).all()
                    )
            finally:
                bench.close()
        live = [a for a in state.appointments() if not a.is_cancelled]
        bare_per_second = bare_rate(sim.url, bare, skip=n + moves)
    finally:
        sim.stop()
        state.close()

    expected = {"POST /v4/booking": n + moves, "DELETE /v4/appointment": moves + cancels}
    print(
        f"== {backend}: {n} meetings through leezy → meetergo (echoes on), {moves} moved, {cancels} cancelled =="
    )
    print(
        f"  mirror      {mirror:8.1f} meetings/s  ({n} in {booked.seconds:.1f}s, {delivered} route deliveries)"
    )
    print(f"  bare        {bare_per_second:8.1f} creates/s   (MeetergoAdapter.create alone, {bare} bookings)")
    print(f"  ratio       {mirror / bare_per_second:8.2f} mirror/bare")
    print(f"  changes     {(moves + cancels) / changed.seconds:8.1f} moves+cancels/s ({more} deliveries)")
    print(
        f"  echoes      {echoes} webhook receipts ingested, {len(raws)} appointments read back by a complete poll"
    )
    print(f"  writes      {counts}  expected {expected}  -> {'EXACT' if counts == expected else 'MISMATCH'}")
    print(
        f"  state       {meetings} canonical meetings (expected {n}), {echo_born} echo-born links, "
        f"{len(live)} live appointments (expected {n - cancels}), intents {intents}"
    )


def main() -> None:
    args = parse_args(
        __doc__,
        1000,
        backends="sqlite",
        moves=(100, "meetings moved after booking (default: 100)"),
        cancels=(100, "meetings cancelled after booking (default: 100)"),
        bare=(200, "bookings for the bare create rate (default: 200)"),
    )
    for backend in backends_of(args):
        run(backend, args.n, args.moves, args.cancels, args.bare)


if __name__ == "__main__":
    main()
