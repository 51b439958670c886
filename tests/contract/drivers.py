"""One `Driver` per provider: the same small interface over five adapters and their simulators.

A driver builds its provider's adapter against the running simulator (with a recording `sleep`
and, for LeanData and HubSpot, the OpenAPI-validating transport), seeds meetings through the
simulator's own Python state API, injects faults, and reads back what the simulator holds. The
contract tests speak only this interface, so every test runs unchanged against every provider;
what an adapter cannot do is decided by its `capabilities`, never by its name.

The sandbox is shared by the whole session (starting five servers per test would cost a second
each), so every driver keeps its data apart: unique attendee emails, unique booking times, the
fault queue and request log cleared before each test, and every setting it changes restored by
`close()`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

from bookingsync.adapters.base import (
    BookingRequest,
    Capability,
    Page,
    RawRecord,
    ReadContext,
)
from bookingsync.adapters.hubspot import PROPERTIES, HubSpotAdapter
from bookingsync.adapters.leandata import LeanDataAdapter
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.adapters.meetergo import MeetergoAdapter
from bookingsync.adapters.rocketlead import RocketLeadAdapter
from bookingsync.models.errors import ProviderNotFound, ProviderRejected
from bookingsync.models.meeting import Meeting, MeetingStatus, Person
from bookingsync.sandbox import hubspot as hubspot_sim
from bookingsync.sandbox import leandata as leandata_sim
from bookingsync.sandbox import leezy as leezy_sim
from bookingsync.sandbox import meetergo as meetergo_sim
from bookingsync.sandbox import rocketlead as rocketlead_sim
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.meetergo.webhooks import BOOKING_CREATED
from bookingsync.sandbox.request_log import RecordedRequest
from bookingsync.sandbox.server import RunningSandbox
from tests.contract import openapi

# The simulators' clock and ours. A Monday, so every provider's working hours lie ahead.
NOW = datetime(2030, 5, 6, 11, 0, tzinfo=UTC)
# Seeded meetings take place on the Saturday after: away from every bookable slot used below.
SEED_START = datetime(2030, 5, 11, 9, 0, tzinfo=UTC)
SEED_LENGTH = timedelta(minutes=30)
STALE = timedelta(minutes=10)  # beyond every provider's 5-minute signature window
WEBHOOK_SECRET = "contract-suite-webhook-secret"
SINK_PATH = "/_sandbox/contract-webhook-sink"  # under the control prefix: never in a request log

_unique = itertools.count(1)
_SLOTS: dict[str, Iterator[int]] = {}


class Sleeps(list[float]):
    """A fake `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclass(frozen=True)
class Expected:
    """What the canonical meeting of a seeded record must say."""

    start: datetime
    end: datetime
    email: str | None  # None where the provider's record carries no attendee email


@dataclass(frozen=True)
class Delivery:
    """One inbound webhook request as our HTTP server would receive it."""

    headers: dict[str, str]
    body: bytes
    url: str
    method: str = "POST"
    external_id: str | None = None


@dataclass(frozen=True)
class WriteRejection:
    """How to make the provider refuse a write, and what our error must then say."""

    overrides: dict[str, Any]
    request: BookingRequest
    error: type[Exception]
    provider_text: str
    arrange: Callable[[], None] | None = None


@dataclass(frozen=True)
class Mutation:
    """A change made at the provider between two pages of a read, and a record created there."""

    changed_id: str
    new_start: datetime
    created: list[str] = field(default_factory=list)  # filled when the mutation runs


def tag() -> str:
    return f"c{next(_unique):04d}"


class Driver:
    name: ClassVar[str]
    adapter_class: ClassVar[type]
    # What `wrong_credential()` must produce: the provider's own words in the error message.
    auth_error_text: ClassVar[str]

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.sleeps = Sleeps()
        self.transport = openapi.for_provider(self.name)
        self.expected: dict[str, Expected] = {}
        self.emails: set[str] = set()
        self._adapters: list[Any] = []
        self._cleanups: list[Callable[[], None]] = []
        self._slot = _SLOTS.setdefault(self.name, itertools.count())  # unique across the session
        self.state.faults.clear()
        self.state.requests.clear()

    # -- the simulator --------------------------------------------------------------------------

    @property
    def state(self) -> Any:
        return getattr(self.sandbox, self.name)

    @property
    def url(self) -> str:
        return getattr(self.sandbox, f"{self.name}_url")

    def requests(self) -> list[RecordedRequest]:
        return self.state.requests.entries()

    # -- the adapter ----------------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.adapter_class.capabilities

    @property
    def can_read(self) -> bool:
        return bool({Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL} & self.capabilities)

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def adapter(self, **overrides: Any) -> Any:
        kwargs = {
            "connection_id": f"contract-{self.name}",
            "base_url": self.url,
            "sleep": self.sleeps,
            **self.settings(),
            **overrides,
        }
        if self.transport is not None:
            kwargs.setdefault("transport", self.transport)
        built = self.adapter_class(**kwargs)
        self._adapters.append(built)
        return built

    def context(self) -> ReadContext:
        return ReadContext(now=NOW, watch_emails=frozenset(self.emails))

    def read(self, adapter: Any, cursor: dict[str, Any] | None = None) -> list[Page]:
        return list(adapter.read(cursor, self.context()))

    def close(self) -> None:
        for adapter in self._adapters:
            adapter.close()
        for cleanup in reversed(self._cleanups):
            cleanup()
        self.state.faults.clear()
        if self.transport is not None:
            self.transport.inner.close()

    # -- seeding ----------------------------------------------------------------------------------

    def new_email(self) -> str:
        email = f"{tag()}.{self.name}@example.com"
        self.emails.add(email)
        return email

    def seed(self, count: int, *, tied: bool = False) -> list[str]:
        """`count` meetings made at the provider; `tied` gives them one shared sort key."""
        ids = []
        base = SEED_START + timedelta(minutes=next(_unique) % 7 * 5)
        for i in range(count):
            start = base if tied else base + timedelta(minutes=10 * i)
            email = self.new_email()
            external_id = self._seed_one(f"Contract {i}", start, start + SEED_LENGTH, email, tied=tied)
            self.expected[external_id] = Expected(start, start + SEED_LENGTH, self._expected_email(email))
            ids.append(external_id)
        return ids

    def _seed_one(self, title: str, start: datetime, end: datetime, email: str, *, tied: bool) -> str:
        raise NotImplementedError

    def _expected_email(self, email: str) -> str | None:
        return email

    def raw_record(self, external_id: str) -> RawRecord:
        """The simulator's own wire form of one record (for adapters that cannot read)."""
        raise NotImplementedError

    # -- faults -----------------------------------------------------------------------------------

    fault_path: ClassVar[str]  # the endpoint a read (or, for write-only providers, a write) needs

    def fail_next(self, kind: str, times: int = 1, retry_after: int | None = None) -> None:
        self.state.add_fault(Fault(kind=kind, path=self.fault_path, times=times, retry_after=retry_after))

    def mutate_after_first_page(self, changed_id: str) -> Mutation:
        raise NotImplementedError

    # -- auth ---------------------------------------------------------------------------------------

    def auth_header(self) -> tuple[str, str]:
        raise NotImplementedError

    def wrong_credential(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- writes -------------------------------------------------------------------------------------

    def booking_time(self) -> datetime:
        raise NotImplementedError

    def booking_request(self, minutes: int = 30) -> BookingRequest:
        start = self.booking_time()
        email = self.new_email()
        meeting = Meeting(
            status=MeetingStatus.SCHEDULED,
            title=f"Mirror {email}",
            start=start,
            end=start + timedelta(minutes=minutes),
            timezone="Europe/Berlin",
            attendee=Person(email=email, name="Ada Lovelace"),
        )
        return BookingRequest(meeting=meeting, reference=f"ref-{email}")

    def booked(self, external_id: str) -> Expected | None:
        """What the provider now holds under `external_id`, or None."""
        raise NotImplementedError

    def created_record(self, external_id: str) -> RawRecord:
        """The provider's own record of a booking create() made, as its API would return it."""
        return self.raw_record(external_id)

    def write_rejection(self) -> WriteRejection:
        raise NotImplementedError

    # -- webhooks -----------------------------------------------------------------------------------

    def signed_webhook(self) -> Delivery:
        raise NotImplementedError

    def redelivered(self, delivery: Delivery) -> Delivery:
        raise NotImplementedError

    def forged_webhook(self) -> Delivery:
        raise NotImplementedError

    def stale_webhook(self) -> Delivery | None:
        """None when the provider's deliveries carry no time (nothing can be stale)."""
        raise NotImplementedError


def _tamper(body: bytes) -> bytes:
    """The same delivery with one attendee address changed: what an attacker would forge."""
    text = body.decode()
    forged = text.replace("@example.com", "@attacker.example", 1)
    assert forged != text, "the delivery should name the attendee"
    return forged.encode()


# -- Leezy ----------------------------------------------------------------------------------------


class LeezyDriver(Driver):
    name = "leezy"
    adapter_class = LeezyAdapter
    auth_error_text = "Missing or invalid access token"
    fault_path = leezy_sim.MEETINGS_PATH

    def __init__(self, sandbox: RunningSandbox) -> None:
        super().__init__(sandbox)
        self._stamp = itertools.count()

    def settings(self) -> dict[str, Any]:
        return {
            "token": self.sandbox.leezy_token,
            "webhook_secret": WEBHOOK_SECRET,
            "requests_per_minute": 1e9,
        }

    def _seed_one(self, title: str, start: datetime, end: datetime, email: str, *, tied: bool) -> str:
        # updated_at orders the list: distinct seconds, or one shared second for ties.
        stamp = NOW - timedelta(hours=1) + timedelta(seconds=0 if tied else next(self._stamp))
        return self.state.book(
            title, start, end, "Europe/Berlin", email, attendee_name="Ada Lovelace", updated_at=stamp
        )

    def raw_record(self, external_id: str) -> RawRecord:
        return RawRecord(payload=self.state.get(external_id).resource(), external_id=external_id)

    def mutate_after_first_page(self, changed_id: str) -> Mutation:
        old = self.state.get(changed_id)
        mutation = Mutation(changed_id, old.start_time + timedelta(hours=2))

        def act() -> None:  # the first page's record moves to the end; a new one is booked
            self.state.reschedule(changed_id, mutation.new_start, mutation.new_start + SEED_LENGTH)
            email = self.new_email()
            new_id = self.state.book(
                "Contract late", SEED_START, SEED_START + SEED_LENGTH, "Europe/Berlin", email
            )
            self.expected[new_id] = Expected(SEED_START, SEED_START + SEED_LENGTH, email)
            mutation.created.append(new_id)

        self.state.after_page(0, act)
        return mutation

    def auth_header(self) -> tuple[str, str]:
        return "authorization", f"Bearer {self.sandbox.leezy_token}"

    def wrong_credential(self) -> dict[str, Any]:
        return {"token": "lzy_at_not_a_real_token"}

    # webhooks: the simulator's own signed deliveries, captured where they were sent
    def _subscribe(self) -> None:
        sub = self.state.subscribe(f"{self.url}{SINK_PATH}", ["meeting.scheduled"], secret=WEBHOOK_SECRET)
        self._cleanups.append(lambda: self.state.unsubscribe(sub.id))

    def _delivery_for(self, external_id: str) -> Delivery:
        assert self.state.flush_deliveries(5.0)
        [attempt] = [a for a in self.state.deliveries() if json.loads(a.body)["data"]["id"] == external_id]
        return Delivery(
            dict(attempt.headers),
            attempt.body.encode(),
            "https://bookingsync.example/webhooks/lz",
            external_id=external_id,
        )

    def signed_webhook(self) -> Delivery:
        self._subscribe()
        [external_id] = self.seed(1)
        return self._delivery_for(external_id)

    def redelivered(self, delivery: Delivery) -> Delivery:
        # The simulator does not retry; a redelivery (or a replay) is the same request again.
        return Delivery(dict(delivery.headers), delivery.body, delivery.url, external_id=delivery.external_id)

    def forged_webhook(self) -> Delivery:
        real = self.signed_webhook()
        return Delivery(real.headers, _tamper(real.body), real.url, external_id=real.external_id)

    def stale_webhook(self) -> Delivery | None:
        self.state.timestamp_offset_seconds = -int(STALE.total_seconds())
        self._cleanups.append(lambda: setattr(self.state, "timestamp_offset_seconds", 0))
        return self.signed_webhook()


# -- LeanData -------------------------------------------------------------------------------------


class LeanDataDriver(Driver):
    name = "leandata"
    adapter_class = LeanDataAdapter
    auth_error_text = "Unauthorized"
    fault_path = leandata_sim.LIST_PATH

    def settings(self) -> dict[str, Any]:
        return {
            "api_key": self.sandbox.leandata_api_key,
            "requests_per_second": 1e9,
            "trigger_node": "New Webform Prospect",
            "routing_inputs": {"Email": "{email}", "FirstName": "{first_name}", "LastName": "{last_name}"},
        }

    def context(self) -> ReadContext:
        # LeanData's watch list is a schedule (adapters/leandata_watch.py): an email read at `now` is
        # due again one interval later, so a second read at the same instant reads nothing. Each
        # read here is the next poll, one (short) interval after the last, as the service runs it.
        self._polls = getattr(self, "_polls", 0) + 1
        return ReadContext(
            now=NOW + timedelta(seconds=self._polls),
            watch_emails=frozenset(self.emails),
            interval_seconds=1.0,
        )

    def seed(self, count: int, *, tied: bool = False) -> list[str]:
        # Pages are per prospect email: three prospects, so the read spans several pages.
        ids = []
        emails = [self.new_email() for _ in range(min(count, 3))]
        base = SEED_START + timedelta(minutes=next(_unique) % 7 * 5)
        for i in range(count):
            start = base if tied else base + timedelta(minutes=10 * i)
            email = emails[i % len(emails)]
            external_id = self.state.book(f"Contract {i}", start, start + SEED_LENGTH, email)
            self.expected[external_id] = Expected(start, start + SEED_LENGTH, email)
            ids.append(external_id)
        return ids

    def raw_record(self, external_id: str) -> RawRecord:
        meeting = self.state.get(external_id)
        return RawRecord(
            payload=self.state.wire(meeting), external_id=external_id, scope=meeting.prospect_email
        )

    def mutate_after_first_page(self, changed_id: str) -> Mutation:
        old = self.state.get(changed_id)
        new_start = datetime.fromtimestamp(old.start_ms / 1000, UTC) + timedelta(hours=2)
        mutation = Mutation(changed_id, new_start)

        def act() -> None:
            self.state.reschedule(changed_id, new_start, new_start + SEED_LENGTH)
            new_id = self.state.book(
                "Contract late", SEED_START, SEED_START + SEED_LENGTH, old.prospect_email
            )
            self.expected[new_id] = Expected(SEED_START, SEED_START + SEED_LENGTH, old.prospect_email)
            mutation.created.append(new_id)

        self.state.after_listing(act)
        return mutation

    def auth_header(self) -> tuple[str, str]:
        return "x-api-key", self.sandbox.leandata_api_key

    def wrong_credential(self) -> dict[str, Any]:
        return {"api_key": "ld_not_a_real_key"}

    def booking_time(self) -> datetime:
        # BookIt offers 30-minute slots from the first boundary an hour after now.
        return NOW + timedelta(hours=1, minutes=30 * next(self._slot))

    def booked(self, external_id: str) -> Expected | None:
        try:
            meeting = self.state.get(external_id)
        except Exception:  # noqa: BLE001 - the simulator's UnknownMeetingError
            return None
        return Expected(
            datetime.fromtimestamp(meeting.start_ms / 1000, UTC),
            datetime.fromtimestamp(meeting.end_ms / 1000, UTC),
            meeting.prospect_email,
        )

    def write_rejection(self) -> WriteRejection:
        return WriteRejection(
            {"trigger_node": "No Such Node"},
            self.booking_request(),
            ProviderRejected,
            "Invalid Node name provided",
        )


# -- RocketLead -----------------------------------------------------------------------------------


class RocketLeadDriver(Driver):
    name = "rocketlead"
    adapter_class = RocketLeadAdapter
    auth_error_text = "Unauthorized"
    # Nothing is read: the write path's first provider call is the availability lookup (a GET,
    # so the HTTP policy may replay it; the booking POST itself is never replayed after a 5xx).
    fault_path = rocketlead_sim.AVAILABILITY_PATH

    def settings(self) -> dict[str, Any]:
        return {
            "token": self.sandbox.rocketlead_token,
            "calendar_id": rocketlead_sim.DEFAULT_CALENDAR_ID,
            "appointment_type_id": rocketlead_sim.DEFAULT_APPOINTMENT_TYPE_ID,
        }

    def _seed_one(self, title: str, start: datetime, end: datetime, email: str, *, tied: bool) -> str:
        lead = self.state.add_lead(email, first_name="Ada", last_name="Lovelace")
        resource = rocketlead_sim.DEFAULT_RESOURCE_IDS[next(_unique) % 2]
        return self.state.book(start, end, name=title, table_entry_id=lead, resource_id=resource).id

    def raw_record(self, external_id: str) -> RawRecord:
        # What POST /connect/calendar_bookings/ answers for this booking (no list endpoint exists).
        with self.state.lock:
            return RawRecord(payload=self.state.wire(self.state.get(external_id)), external_id=external_id)

    def auth_header(self) -> tuple[str, str]:
        return "authorization", f"Bearer {self.sandbox.rocketlead_token}"

    def wrong_credential(self) -> dict[str, Any]:
        return {"token": "rocketlead_live_" + "0" * 64}

    def booking_time(self) -> datetime:
        # On the 30-minute grid (from midnight Berlin), the day after now, one slot per booking.
        return datetime(2030, 5, 7, 6, 0, tzinfo=UTC) + timedelta(minutes=30 * next(self._slot))

    def booked(self, external_id: str) -> Expected | None:
        try:
            booking = self.state.get(external_id)
        except Exception:  # noqa: BLE001 - the simulator's UnknownRecordError
            return None
        return Expected(booking.start, booking.end, None)

    def write_rejection(self) -> WriteRejection:
        # The appointment type's length changes between availability and booking: the booking's
        # validation refuses the (now wrong) length with a 400 that is not the slot race.
        def arrange() -> None:
            self.state.after_availability(lambda: self.state.set_grid(booking_length=45))
            self._cleanups.append(lambda: self.state.set_grid(booking_length=30))

        return WriteRejection(
            {},
            self.booking_request(),
            ProviderRejected,
            "Validation failed: endDateTime must be startDateTime plus the appointment "
            "type's bookingLength (45 minutes)",
            arrange,
        )


# -- Meetergo -------------------------------------------------------------------------------------


class MeetergoDriver(Driver):
    name = "meetergo"
    adapter_class = MeetergoAdapter
    auth_error_text = "Invalid API key"
    fault_path = meetergo_sim.LIST_PATH

    def settings(self) -> dict[str, Any]:
        return {
            "token": meetergo_sim.DEFAULT_TOKEN,
            "webhook_secret": WEBHOOK_SECRET,
            "meeting_type_id": meetergo_sim.MEETING_TYPE_ID,
            "host_ids": [meetergo_sim.DEFAULT_USER_ID],
            "requests_per_minute": 1e9,
        }

    def _seed_one(self, title: str, start: datetime, end: datetime, email: str, *, tied: bool) -> str:
        return self.state.create_appointment(
            start, email, end=end, attendee_name="Ada Lovelace", title=title
        ).id

    def raw_record(self, external_id: str) -> RawRecord:
        return RawRecord(
            payload=self.state.appointment_resource(self.state.get(external_id)), external_id=external_id
        )

    def mutate_after_first_page(self, changed_id: str) -> Mutation:
        old = self.state.get(changed_id)
        mutation = Mutation(changed_id, old.start + timedelta(hours=2))

        def act() -> None:  # moved in place (same id) to the end of the start-ordered list
            self.state.reschedule(changed_id, mutation.new_start)
            email = self.new_email()
            new_id = self.state.create_appointment(SEED_START - timedelta(hours=1), email).id
            self.expected[new_id] = Expected(
                SEED_START - timedelta(hours=1), SEED_START - timedelta(minutes=30), email
            )
            mutation.created.append(new_id)

        self.state.after_page(0, act)
        return mutation

    def auth_header(self) -> tuple[str, str]:
        return "authorization", f"Bearer {meetergo_sim.DEFAULT_TOKEN}"

    def wrong_credential(self) -> dict[str, Any]:
        return {"token": "rgo-not-a-real-token"}

    def booking_time(self) -> datetime:
        # Tuesday 09:00 Berlin onwards, on the meeting type's 30-minute grid.
        return datetime(2030, 5, 7, 7, 0, tzinfo=UTC) + timedelta(minutes=30 * next(self._slot))

    def booked(self, external_id: str) -> Expected | None:
        try:
            appointment = self.state.get(external_id)
        except Exception:  # noqa: BLE001 - the simulator's UnknownMeetingError
            return None
        return Expected(appointment.start, appointment.end, appointment.attendees[0].email)

    def write_rejection(self) -> WriteRejection:
        # 45 minutes is not a duration the meeting type offers (30 or 60).
        return WriteRejection(
            {}, self.booking_request(minutes=45), ProviderRejected, "duration must be one of 30, 60"
        )

    # webhooks: registered with the URL token; deliveries captured where they were sent
    def _hook_url(self, token: str) -> str:
        return f"{self.url}{SINK_PATH}?{urlencode({'token': token})}"

    def _delivery(self, url: str) -> Delivery:
        hook = self.state.add_webhook(url, [BOOKING_CREATED])
        self._cleanups.append(lambda: self.state.remove_webhook(hook.id))
        [external_id] = self.seed(1)
        assert self.state.flush_deliveries(5.0)
        [attempt] = [
            a
            for a in self.state.deliveries()
            if a.webhook_id == hook.id and a.payload().get("id") == external_id
        ]
        self._last_attempt = attempt
        return Delivery(
            dict(attempt.headers), attempt.body.encode(), attempt.target_url, external_id=external_id
        )

    def signed_webhook(self) -> Delivery:
        return self._delivery(self._hook_url(WEBHOOK_SECRET))

    def redelivered(self, delivery: Delivery) -> Delivery:
        again = self.state.redeliver(self._last_attempt.delivery_id)
        assert self.state.flush_deliveries(5.0)
        return Delivery(
            dict(again.headers), again.body.encode(), again.target_url, external_id=delivery.external_id
        )

    def forged_webhook(self) -> Delivery:
        return self._delivery(self._hook_url("guessed-token"))

    def stale_webhook(self) -> Delivery | None:
        return None


# -- HubSpot --------------------------------------------------------------------------------------


class HubSpotDriver(Driver):
    name = "hubspot"
    adapter_class = HubSpotAdapter
    auth_error_text = "The access token provided is invalid or has expired."
    fault_path = hubspot_sim.MEETINGS_PATH

    def settings(self) -> dict[str, Any]:
        return {
            "token": self.sandbox.hubspot_token,
            "webhook_secret": self.sandbox.hubspot_client_secret,
            "meeting_slug": hubspot_sim.DEFAULT_LINK_SLUG,
            "requests_per_second": 1e9,
        }

    def _seed_one(self, title: str, start: datetime, end: datetime, email: str, *, tied: bool) -> str:
        return self.state.create_meeting(
            title, start, end, attendee_email=email, external_url="https://meet.example.com/contract"
        )

    def _expected_email(self, email: str) -> str | None:
        return None  # a CRM meeting names its attendee by contact association only (adapter docstring)

    def raw_record(self, external_id: str) -> RawRecord:
        return RawRecord(payload=self.state.get(external_id).resource(PROPERTIES), external_id=external_id)

    def mutate_after_first_page(self, changed_id: str) -> Mutation:
        old = self.state.get(changed_id).span()
        assert old is not None
        mutation = Mutation(changed_id, old[0] + timedelta(hours=2))

        def act() -> None:
            self.state.reschedule(changed_id, mutation.new_start, mutation.new_start + SEED_LENGTH)
            new_id = self.state.create_meeting("Contract late", SEED_START, SEED_START + SEED_LENGTH)
            self.expected[new_id] = Expected(SEED_START, SEED_START + SEED_LENGTH, None)
            mutation.created.append(new_id)

        self.state.add_fault(Fault(kind="mutate", path=hubspot_sim.MEETINGS_PATH, offset=0, action=act))
        return mutation

    def auth_header(self) -> tuple[str, str]:
        return "authorization", f"Bearer {self.sandbox.hubspot_token}"

    def wrong_credential(self) -> dict[str, Any]:
        return {"token": "pat-na1-not-a-real-token"}

    def booking_time(self) -> datetime:
        # Tuesday 10:00 New York onwards, on the link's 30-minute grid.
        return datetime(2030, 5, 7, 14, 0, tzinfo=UTC) + timedelta(minutes=30 * next(self._slot))

    def _by_calendar_event(self, external_id: str) -> Any:
        # A mirror is linked under its CRM meeting's id, or under `calendar-event:<id>` until HubSpot
        # has made the CRM record (which keeps that id in hs_unique_id).
        if not external_id.startswith("calendar-event:"):
            found = [m for m in self.state.meetings() if m.id == external_id]
        else:
            event = external_id.removeprefix("calendar-event:")
            found = [m for m in self.state.meetings() if m.properties.get("hs_unique_id") == event]
        return found[0] if found else None

    def booked(self, external_id: str) -> Expected | None:
        meeting = self._by_calendar_event(external_id)
        if meeting is None:
            return None
        start, end = meeting.span()
        contact = self.state.contact(meeting.contact_ids[0]) if meeting.contact_ids else None
        return Expected(start, end, contact.email if contact else None)

    def created_record(self, external_id: str) -> RawRecord:
        # The booking answer has no CRM id; the CRM meeting it made keeps the calendar event id.
        meeting = self._by_calendar_event(external_id)
        return RawRecord(payload=meeting.resource(PROPERTIES), external_id=meeting.id)

    def write_rejection(self) -> WriteRejection:
        return WriteRejection(
            {"meeting_slug": "no-such-link"},
            self.booking_request(),
            ProviderNotFound,
            "No meeting link with id no-such-link exists.",
        )

    # webhooks: v3-signed batches from the simulator's sender, captured where they were sent
    def _target(self) -> str:
        return f"{self.url}{SINK_PATH}?portal={self.state.portal_id}"

    def _subscribe(self) -> None:
        subs = self.state.subscribe_meetings()
        self.state.webhook_target_url = self._target()

        def undo() -> None:
            self.state.webhook_target_url = None
            for sub in subs:
                self.state.unsubscribe(sub.id)

        self._cleanups.append(undo)

    def _delivery_for(self, external_id: str, attempt_number: int = 0) -> Delivery:
        assert self.state.flush_deliveries(5.0)
        [attempt] = [
            a
            for a in self.state.deliveries()
            if a.attempt_number == attempt_number
            and any(str(e["objectId"]) == external_id for e in json.loads(a.body))
        ]
        self._last_delivery_id = attempt.delivery_id
        return Delivery(
            dict(attempt.headers), attempt.body.encode(), attempt.target_url, external_id=external_id
        )

    def signed_webhook(self) -> Delivery:
        self._subscribe()
        [external_id] = self.seed(1)
        return self._delivery_for(external_id)

    def redelivered(self, delivery: Delivery) -> Delivery:
        self.state.resend(self._last_delivery_id)  # attemptNumber + 1, fresh timestamp and signature
        assert delivery.external_id is not None
        return self._delivery_for(delivery.external_id, attempt_number=1)

    def forged_webhook(self) -> Delivery:
        real = self.signed_webhook()
        body = json.loads(real.body)
        body[0]["objectId"] += 1  # another meeting, signature kept
        return Delivery(
            real.headers,
            json.dumps(body, separators=(",", ":")).encode(),
            real.url,
            external_id=real.external_id,
        )

    def stale_webhook(self) -> Delivery | None:
        self.state.timestamp_offset_ms = -int(STALE.total_seconds() * 1000)
        self._cleanups.append(lambda: setattr(self.state, "timestamp_offset_ms", 0))
        return self.signed_webhook()


DRIVERS: dict[str, type[Driver]] = {
    d.name: d for d in (LeezyDriver, LeanDataDriver, RocketLeadDriver, MeetergoDriver, HubSpotDriver)
}


def all_ids(pages: list[Page]) -> list[str]:
    return [r.external_id for page in pages for r in page.records if r.external_id is not None]


def records(pages: list[Page]) -> Iterator[RawRecord]:
    for page in pages:
        yield from page.records
