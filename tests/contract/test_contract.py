"""The contract every provider adapter keeps, run against every provider's simulator.

Each test takes the `driver` fixture (one parametrisation per provider) and speaks only the
driver's uniform interface. A test skips only when the adapter's `capabilities` say it cannot do
what the test needs, and says why. LeanData and HubSpot exchanges are also checked against the
published OpenAPI files (see openapi.py and conftest.py).
"""

from __future__ import annotations


import pytest

from bookingsync.adapters.base import Capability, RawRecord, WebhookReceiver
from bookingsync.models.errors import ProviderAuthError, WebhookError, WebhookUnauthorized
from bookingsync.models.meeting import ACTIVE_STATUSES
from tests.contract.drivers import NOW, STALE, Driver, all_ids, records

READ = {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}


def need(driver: Driver, *capabilities: Capability, what: str) -> None:
    """Skip unless the adapter declares at least one of `capabilities`."""
    if not set(capabilities) & driver.capabilities:
        names = " or ".join(c.name for c in capabilities)
        have = ", ".join(sorted(c.name for c in driver.capabilities))
        pytest.skip(f"{driver.name} cannot {what}: its capabilities lack {names} (it has {have})")


def newest(driver: Driver, pages_in_order: list[list], external_id: str) -> RawRecord:
    found = [r for pages in pages_in_order for r in records(pages) if r.external_id == external_id]
    assert found, f"{external_id} was never read"
    return found[-1]


def do_primary(driver: Driver, adapter) -> None:
    """The adapter's main job, asserted done: read the seeded meetings, or (write-only) book one."""
    if driver.can_read:
        seeded = driver.seed(2)
        assert set(seeded) <= set(all_ids(driver.read(adapter)))
    else:
        request = driver.booking_request()
        record = adapter.create(request)
        booked = driver.booked(record.external_id)
        assert booked is not None and (booked.start, booked.end) == (
            request.meeting.start,
            request.meeting.end,
        )


# -- normalise ---------------------------------------------------------------------------------


def read_seeded(driver: Driver, adapter, seeded: list[str]) -> list[RawRecord]:
    """The seeded records as the adapter reads them (write-only: the simulator's own wire form)."""
    if not driver.can_read:
        return [driver.raw_record(i) for i in seeded]
    read = {r.external_id: r for r in records(driver.read(adapter))}
    return [read[i] for i in seeded]


def test_normalise_round_trips(driver):
    seeded = driver.seed(3)
    adapter = driver.adapter()
    for raw in read_seeded(driver, adapter, seeded):
        first, second = adapter.normalise(raw), adapter.normalise(raw)
        assert first == second
        assert first.meeting.content_hash() == second.meeting.content_hash()
        expected = driver.expected[raw.external_id]
        assert first.external_id == raw.external_id
        assert (first.meeting.start, first.meeting.end) == (expected.start, expected.end)
        assert first.meeting.status in ACTIVE_STATUSES
        # Re-reading the same record changes nothing: the store's content hash stays put.
        again = adapter.normalise(driver.raw_record(raw.external_id))
        assert again.meeting.content_hash() == first.meeting.content_hash()


def test_normalised_attendee_is_the_seeded_one(driver):
    seeded = driver.seed(3)
    adapter = driver.adapter()
    for raw in read_seeded(driver, adapter, seeded):
        assert adapter.normalise(raw).meeting.attendee.email == driver.expected[raw.external_id].email


# -- paging --------------------------------------------------------------------------------------


def small_pages(driver: Driver) -> dict:
    """A page size of 3 where the adapter takes one (LeanData pages per prospect email instead)."""
    return {"page_size": 3} if "page_size" in driver.adapter_class.settings_model.model_fields else {}


def test_paging_reaches_the_end(driver):
    need(driver, *READ, what="page through a listing")
    seeded = driver.seed(8)
    adapter = driver.adapter(**small_pages(driver))
    pages = driver.read(adapter)

    seen = all_ids(pages)
    assert len(pages) > 1, "the seed should span more than one page"
    assert all(seen.count(i) == 1 for i in seeded), "every seeded record exactly once"
    assert set(seeded) <= set(seen)


@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "ties"])
def test_updates_while_paging_lose_nothing(driver, tied):
    need(driver, *READ, what="page through a listing")
    seeded = driver.seed(8, tied=tied)
    adapter = driver.adapter(**small_pages(driver))
    mutation = driver.mutate_after_first_page(seeded[0])

    first = driver.read(adapter)
    assert mutation.created, "the simulator should have run the mutation between pages"
    second = driver.read(adapter, first[-1].cursor)

    seen = set(all_ids(first)) | set(all_ids(second))
    missing = (set(seeded) | set(mutation.created)) - seen
    assert not missing, f"lost across this read and the next: {sorted(missing)}"
    moved = adapter.normalise(newest(driver, [first, second], mutation.changed_id))
    assert moved.meeting.start == mutation.new_start


# -- transient failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "500"], ids=["429", "5xx"])
def test_transient_failure_then_success(driver, kind):
    adapter = driver.adapter()
    driver.fail_next(kind, times=2)
    do_primary(driver, adapter)
    assert len(driver.sleeps) == 2 and all(s > 0 for s in driver.sleeps), driver.sleeps
    assert driver.sleeps[1] >= driver.sleeps[0]  # backing off (exponential, jittered), not hammering
    statuses = [e.status for e in driver.requests() if e.path == driver.fault_path]
    assert statuses[:3] == [int(kind), int(kind), 200]


def test_429_retry_after_is_honoured(driver):
    adapter = driver.adapter()
    driver.fail_next("429", times=1, retry_after=3)
    do_primary(driver, adapter)
    assert driver.sleeps == [3.0]


# -- fatal errors ----------------------------------------------------------------------------------


def test_wrong_credential_is_an_auth_error_with_the_providers_message(driver):
    adapter = driver.adapter(**driver.wrong_credential())
    with pytest.raises(ProviderAuthError) as caught:
        if driver.can_read:
            driver.seed(1)
            driver.read(adapter)
        else:
            adapter.create(driver.booking_request())
    assert caught.value.status == 401
    assert driver.auth_error_text in caught.value.message
    sent = [(r.method, r.path) for r in driver.requests()]
    assert driver.sleeps == [] and len(sent) == len(set(sent)), sent  # fatal: never retried


def test_rejected_write_is_surfaced_with_the_providers_message(driver):
    need(driver, Capability.CREATE, what="write")
    rejection = driver.write_rejection()
    adapter = driver.adapter(**rejection.overrides)
    if rejection.arrange is not None:
        rejection.arrange()
    with pytest.raises(rejection.error) as caught:
        adapter.create(rejection.request)
    assert rejection.provider_text in caught.value.message
    assert not isinstance(caught.value, ProviderAuthError)
    assert 400 <= (caught.value.status or 0) < 500
    assert driver.sleeps == []


# -- auth header -------------------------------------------------------------------------------------


def test_auth_header_is_on_every_request(driver):
    do_primary(driver, driver.adapter())
    header, value = driver.auth_header()
    sent = driver.requests()
    assert sent, "the adapter should have called the provider"
    assert all(r.headers.get(header) == value for r in sent), [(r.path, r.headers) for r in sent]


# -- writes ------------------------------------------------------------------------------------------


def test_create_books_at_the_provider_and_round_trips(driver):
    need(driver, Capability.CREATE, what="create bookings")
    adapter = driver.adapter()
    request = driver.booking_request()
    record = adapter.create(request)

    assert (record.meeting.start, record.meeting.end) == (request.meeting.start, request.meeting.end)
    assert record.meeting.status in ACTIVE_STATUSES
    booked = driver.booked(record.external_id)
    assert booked is not None, f"{record.external_id} is not at the provider"
    assert (booked.start, booked.end) == (request.meeting.start, request.meeting.end)
    assert booked.email in (None, request.meeting.attendee.email)
    # The provider's own record of the booking normalises to what create() returned.
    again = adapter.normalise(driver.created_record(record.external_id))
    assert (again.meeting.start, again.meeting.end) == (record.meeting.start, record.meeting.end)
    assert again.meeting.attendee.email in (None, record.meeting.attendee.email)
    assert again.meeting.status == record.meeting.status


# -- webhooks ----------------------------------------------------------------------------------------


def parse(adapter, delivery, now=NOW):
    return adapter.parse_webhook(
        delivery.headers, delivery.body, now, method=delivery.method, url=delivery.url
    )


def test_signed_webhook_is_accepted_and_a_redelivery_is_recognised(driver):
    need(driver, Capability.RECEIVE_WEBHOOKS, what="receive webhooks")
    adapter = driver.adapter()
    delivery = driver.signed_webhook()

    accepted = parse(adapter, delivery)
    assert accepted.delivery_id and accepted.handled
    if accepted.records:  # providers whose deliveries carry the record, not only its id
        assert [r.external_id for r in accepted.records] == [delivery.external_id]
        meeting = adapter.normalise(accepted.records[0]).meeting
        expected = driver.expected[delivery.external_id]
        assert (meeting.start, meeting.end, meeting.attendee.email) == (
            expected.start,
            expected.end,
            expected.email,
        )

    again = parse(adapter, driver.redelivered(delivery))
    assert again.delivery_id == accepted.delivery_id  # a replay is detectable by its id


def test_forged_webhook_is_refused(driver):
    need(driver, Capability.RECEIVE_WEBHOOKS, what="receive webhooks")
    adapter = driver.adapter()
    with pytest.raises(WebhookUnauthorized):
        parse(adapter, driver.forged_webhook())


def test_stale_webhook_is_refused(driver):
    need(driver, Capability.RECEIVE_WEBHOOKS, what="receive webhooks")
    adapter = driver.adapter()
    stale = driver.stale_webhook()
    if stale is None:
        pytest.skip(
            f"{driver.name} cannot refuse a stale webhook: its deliveries carry no timestamp "
            "or signature (only the secret token in the URL), so age is not knowable"
        )
    with pytest.raises(WebhookUnauthorized, match="5 minutes"):
        parse(adapter, stale)
    # The same delivery is fresh for a clock that agrees with it: only the age was refused.
    assert parse(adapter, stale, now=NOW - STALE).delivery_id


def test_unsigned_delivery_is_refused(driver):
    # Every adapter: a delivery without its provider's proof is never accepted. One that receives
    # no webhooks has no parse_webhook to accept it with (the web layer answers 404 for it:
    # tests/unit/test_web.py), and says so in its capabilities.
    adapter = driver.adapter()
    if not isinstance(adapter, WebhookReceiver):
        assert Capability.RECEIVE_WEBHOOKS not in driver.capabilities
        assert not hasattr(adapter, "parse_webhook")
        return
    body = b'[{"eventId": 1, "subscriptionType": "object.creation", "objectTypeId": "0-47"}]'
    with pytest.raises(WebhookError) as caught:
        adapter.parse_webhook(
            {"Content-Type": "application/json"}, body, NOW, url="https://bookingsync.example/webhooks/x"
        )
    assert isinstance(caught.value, WebhookUnauthorized) and caught.value.status == 401
