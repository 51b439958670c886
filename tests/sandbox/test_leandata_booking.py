"""The LeanData BookIt booking flow: availability, the pool flag, one-shot tokens, slot races."""

from __future__ import annotations

from typing import Any

from bookingsync.sandbox.leandata import LeanDataState
from bookingsync.sandbox.leandata.booking import TRIGGER_NODE

from .conftest import Served

PROSPECT = {"FirstName": "Pat", "LastName": "Prospect", "Email": "pat@example.com"}
USER_FIELDS = [
    {"name": "First Name", "type": "text", "value": "Pat"},
    {"name": "Last Name", "type": "text", "value": "Prospect"},
    {"name": "Email", "type": "text", "value": "pat@example.com"},
]


def route(sandbox: Served) -> dict[str, Any]:
    response = sandbox.client.post(
        "/v1/scheduling/route-and-fetch-availability",
        json={
            "triggerNode": TRIGGER_NODE,
            "uid": "c149cd78-377c-4549-ae62-3910ebe3b6ed",
            "prospect": PROSPECT,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def booking(token: str, slot: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "token": token,
        "userFields": USER_FIELDS,
        "scheduledTime": {
            "start_time": slot["start_time"],
            "end_time": slot["end_time"],
            "timezone": "America/Los_Angeles",
            **extra,
        },
    }


def test_single_host_booking_and_one_shot_token(leandata_sandbox: Served) -> None:
    client = leandata_sandbox.client
    routed = route(leandata_sandbox)
    token = routed["routing"]["token"]
    page = routed["scheduling"]["pageInfo"]
    assert page["displayAllPoolAvailability"] is False and len(page["userIds"]) == 1
    assert page["prefillFields"]["Email"] == "pat@example.com"
    slot = routed["scheduling"]["availability"]["timeSlots"][0]

    wrong = client.post("/v1/round-robin-meeting", json=booking(token, slot, users=page["userIds"]))
    assert wrong.status_code == 400
    booked = client.post("/v1/meeting", json=booking(token, slot))
    assert booked.status_code == 200, booked.text
    meeting_id = booked.json()["meetingId"]
    assert len(meeting_id) == 52 and booked.json()["organizerEmail"]

    again = client.post("/v1/meeting", json=booking(token, slot))
    assert again.json() == {"error": "This link only allows one booking and has already been used."}
    refetch = client.post("/v1/scheduling/fetch-availability", json={"token": token})
    assert refetch.status_code == 400 and refetch.json()["error"].startswith(
        "Meeting has already been booked."
    )
    by_meeting = client.post("/v1/scheduling/fetch-availability", json={"meetingId": meeting_id})
    assert by_meeting.json()["calendarEvent"]["id"] == meeting_id
    listed = client.get("/v1/meetings", params={"prospectEmail": "pat@example.com"}).json()
    assert [m["calendarEvent"]["id"] for m in listed] == [meeting_id]

    second = route(leandata_sandbox)
    taken = client.post("/v1/meeting", json=booking(second["routing"]["token"], slot))
    assert taken.json() == {"error": "The selected time is no longer available."}
    assert slot not in second["scheduling"]["availability"]["timeSlots"]


def test_pool_booking_needs_round_robin(leandata_sandbox: Served) -> None:
    state: LeanDataState = leandata_sandbox.state  # type: ignore[assignment]
    state.display_all_pool_availability = True
    routed = route(leandata_sandbox)
    scheduling = routed["scheduling"]
    assert scheduling["pageInfo"]["userIds"] == []
    slot = scheduling["availability"]["timeSlots"][0]
    users = [scheduling["availability"]["indexToUserIdMap"][str(i)] for i in slot["users"]]
    token = routed["routing"]["token"]
    assert leandata_sandbox.client.post("/v1/meeting", json=booking(token, slot)).status_code == 400
    booked = leandata_sandbox.client.post(
        "/v1/round-robin-meeting", json=booking(token, slot, users=users[::-1])
    )
    assert booked.status_code == 200, booked.text
    assert booked.json()["selectedUserId"] == users[-1]


def test_booking_validation_errors(leandata_sandbox: Served) -> None:
    client = leandata_sandbox.client
    missing = client.post(
        "/v1/scheduling/route-and-fetch-availability",
        json={"triggerNode": TRIGGER_NODE, "prospect": PROSPECT},
    )
    assert missing.json() == {"error": "Validation Error: Missing required input: uid"}
    node = client.post(
        "/v1/scheduling/route-and-fetch-availability",
        json={"triggerNode": "Nope", "uid": "u", "prospect": PROSPECT},
    )
    assert node.json() == {"error": "Invalid Node name provided"}
    none = client.post("/v1/scheduling/fetch-availability", json={})
    assert none.json() == {
        "error": "Validation Error: Missing required parameter: linkId, meetingId or token"
    }
    assert client.post("/v1/scheduling/fetch-availability", json={"linkId": "Lw5mjKK"}).json() == {
        "error": "link not found"
    }
    routed = route(leandata_sandbox)
    slot = dict(routed["scheduling"]["availability"]["timeSlots"][0])
    slot["start_time"] += 60_000
    off_grid = client.post("/v1/meeting", json=booking(routed["routing"]["token"], slot))
    assert off_grid.json() == {"error": "The selected time is no longer available."}
