"""Meetergo titles: one rule for the webhook shape and the listing shape, so the same appointment
read both ways is the same meeting (no false `meeting.updated` at every poll)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bookingsync.adapters.meetergo import normalise_appointment
from bookingsync.sandbox.meetergo import MeetergoState

ATTENDEE = {"email": "customer@example.com", "firstname": "Jane", "lastname": "Doe", "fullname": "Jane Doe"}


def webhook_shape() -> dict[str, Any]:
    """booking_created as meetergo's webhook page documents it."""
    return {
        "webhookType": "booking_created",
        "id": "appt-1",
        "start": "2030-01-15T09:00:00+01:00",
        "end": "2030-01-15T09:30:00+01:00",
        "isCancelled": False,
        "meetingInfo": {"channel": "zoom", "meetingLink": "https://zoom.us/j/123456789"},
        "attendees": [ATTENDEE],
        "hosts": [{"email": "john@example.com"}],
        "meetingType": {"id": "mt-1", "meetingInfo": {"name": "Discovery Call", "duration": 30}},
    }


def listing_shape(title: str = "Discovery Call - Jane Doe") -> dict[str, Any]:
    """The same appointment as `GET /v4/appointment/paginated` lists it: no meetingType object."""
    return {
        "id": "appt-1",
        "meetingTypeId": "mt-1",
        "meetingInfo": {
            "start": "2030-01-15T09:00:00+01:00",
            "end": "2030-01-15T09:30:00+01:00",
            "title": title,
            "attendees": [ATTENDEE],
            "meetingLink": "https://zoom.us/j/123456789",
        },
        "hostingInfo": {"mainHost": {"email": "john@example.com"}},
    }


def test_both_shapes_give_the_meeting_type_name() -> None:
    from_webhook = normalise_appointment(webhook_shape()).meeting
    from_listing = normalise_appointment(listing_shape()).meeting
    assert from_webhook.title == from_listing.title == "Discovery Call"
    assert from_webhook.content_hash() == from_listing.content_hash()


def test_a_listing_item_that_names_its_type_uses_that_name() -> None:
    item = listing_shape(title="Something else") | {"meetingType": {"name": "Discovery Call"}}
    assert normalise_appointment(item).meeting.title == "Discovery Call"


def test_a_custom_title_without_the_attendee_suffix_is_kept() -> None:
    assert (
        normalise_appointment(listing_shape(title="Renewal with ACME")).meeting.title == "Renewal with ACME"
    )


def test_a_title_that_is_only_the_attendee_suffix_is_not_emptied() -> None:
    assert normalise_appointment(listing_shape(title=" - Jane Doe")).meeting.title == "- Jane Doe"


def test_the_simulator_s_webhook_and_listing_of_one_appointment_are_one_meeting() -> None:
    state = MeetergoState()
    start = state.now() + timedelta(days=1)
    appointment = state.create_appointment(
        start, "jane@acme.example", attendee_name="Jane Doe", end=start + timedelta(minutes=30)
    )
    from_webhook = normalise_appointment(state.webhook_data(appointment)).meeting
    from_listing = normalise_appointment(state.appointment_resource(appointment)).meeting
    assert from_webhook.title and from_webhook == from_listing
