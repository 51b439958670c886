"""HubSpot simulator over real HTTP: auth, CRM paging, booking, signed webhooks, faults.

Every provider response a test reads goes through `conform`, which validates it with openapi-core
against HubSpot's published OpenAPI file (see `tests/provider_docs.py` for where it is found).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from bookingsync.sandbox import hubspot
from bookingsync.sandbox.hubspot import (
    DEFAULT_CLIENT_SECRET,
    DEFAULT_LINK_SLUG,
    DEFAULT_TOKEN,
    HubSpotState,
)
from bookingsync.sandbox.server import serve_app

from tests.provider_docs import provider_doc

from .conftest import START, Clock, Receiver, Served

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
MEETINGS = "/crm/objects/2026-03/meetings"
LINKS = "/scheduler/2026-03/meetings/meeting-links"
SPEC_FILES = {
    "/crm/": "crm-meetings-2026-03.openapi.json",
    "/scheduler/": "scheduler-meetings-2026-03.openapi.json",
    "/webhooks/": "webhooks-2026-03.openapi.json",
}
_apis: dict[str, Any] = {}


def conform(response: httpx.Response) -> httpx.Response:
    """Validate `response` against HubSpot's published OpenAPI file for its path.

    The files are HubSpot's 2026-03 API reference (https://developers.hubspot.com/docs/api-reference),
    found through `tests/provider_docs.py`: without them the test skips with that reason (fails
    under CI=true). A path no file covers is a failure, never a silent pass.
    """
    path = urlsplit(str(response.request.url)).path
    name = next((f for prefix, f in SPEC_FILES.items() if path.startswith(prefix)), None)
    assert name is not None, f"no HubSpot OpenAPI file documents {path}"
    spec = provider_doc("hubspot", name)
    if name not in _apis:
        _apis[name] = OpenAPI.from_file_path(str(spec))
    if response.status_code == 204:  # the spec gives 204 no content
        assert response.content == b""
        return response
    if response.status_code >= 400:
        # The spec's error media type is */*, which openapi-core does not decode: check the
        # JSON body against the Error schema of the same file instead.
        document = json.loads(spec.read_text())
        schema = {"$ref": "#/components/schemas/Error", "components": document["components"]}
        errors = list(
            OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER).iter_errors(response.json())
        )
        assert not errors, errors
        for key in ("message", "correlationId", "category"):
            assert isinstance(response.json()[key], str)
        return response
    request = MockRequest(
        "https://api.hubapi.com",
        response.request.method.lower(),
        path,
        args=dict(response.request.url.params),
    )
    _apis[name].validate_response(
        request,
        MockResponse(
            response.content,
            status_code=response.status_code,
            content_type=response.headers.get("content-type", "application/json").split(";")[0],
            headers=dict(response.headers),
        ),
    )
    return response


@pytest.fixture
def hubspot_sandbox(clock: Clock) -> Iterator[Served]:
    state = HubSpotState(now=clock)
    server = serve_app(hubspot.create_app(state))
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Served(state, server.url, client)
    server.stop()
    state.close()


def st(sandbox: Served) -> HubSpotState:
    assert isinstance(sandbox.state, HubSpotState)
    return sandbox.state


def get(sandbox: Served, path: str, **params: Any) -> httpx.Response:
    return conform(sandbox.client.get(path, headers=AUTH, params=params))


def post(sandbox: Served, path: str, body: Any) -> httpx.Response:
    return conform(sandbox.client.post(path, headers=AUTH, json=body))


def make_meetings(state: HubSpotState, count: int) -> list[str]:
    return [
        state.create_meeting(
            f"Meeting {i}",
            START + timedelta(days=1, hours=i),
            START + timedelta(days=1, hours=i, minutes=30),
            attendee_email=f"p{i}@example.com",
        )
        for i in range(count)
    ]


def test_missing_or_wrong_token_gets_the_error_envelope(hubspot_sandbox: Served) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": DEFAULT_TOKEN}):
        response = conform(hubspot_sandbox.client.get(MEETINGS, headers=headers))
        body = response.json()
        assert response.status_code == 401
        assert body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
        assert len(body["correlationId"]) == 36 and body["message"]
    st(hubspot_sandbox).add_token("scheduler-only", ["scheduler.meetings.meeting-link.read"])
    refused = conform(
        hubspot_sandbox.client.get(MEETINGS, headers={"Authorization": "Bearer scheduler-only"})
    )
    assert (refused.status_code, refused.json()["category"]) == (403, "MISSING_SCOPES")


def test_list_pages_with_after_to_the_end(hubspot_sandbox: Served) -> None:
    ids = make_meetings(st(hubspot_sandbox), 7)
    seen, after, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after is not None:
            params["after"] = after
        body = get(hubspot_sandbox, MEETINGS, **params).json()
        pages += 1
        seen += [r["id"] for r in body["results"]]
        if "paging" not in body:
            break
        after = body["paging"]["next"]["after"]
        assert f"after={after}" in body["paging"]["next"]["link"]
    assert seen == ids and pages == 3
    # Default properties only: the three system properties.
    first = get(hubspot_sandbox, MEETINGS, limit=1).json()["results"][0]
    assert set(first["properties"]) == {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"}
    bad = get(hubspot_sandbox, MEETINGS, limit=101)
    assert (bad.status_code, bad.json()["category"]) == (400, "VALIDATION_ERROR")


def test_property_selection_and_associations(hubspot_sandbox: Served) -> None:
    [meeting_id] = make_meetings(st(hubspot_sandbox), 1)
    response = hubspot_sandbox.client.get(
        f"{MEETINGS}/{meeting_id}",
        headers=AUTH,
        params=[
            ("properties", "hs_meeting_title,hs_meeting_start_time"),
            ("properties", "hs_meeting_outcome"),
            ("properties", "hs_meeting_external_url"),
            ("associations", "contacts"),
        ],
    )
    body = conform(response).json()
    props = body["properties"]
    assert props["hs_meeting_title"] == "Meeting 0"
    assert props["hs_meeting_start_time"] == "2030-05-07T12:00:00.000Z"
    assert props["hs_meeting_outcome"] == "SCHEDULED"
    assert "hs_meeting_external_url" not in props  # unset: left out, never null
    assert "hs_meeting_end_time" not in props  # not asked for
    [assoc] = body["associations"]["contacts"]["results"]
    assert assoc["type"] == "meeting_event_to_contact"
    contact = hubspot_sandbox.client.get(f"/crm/objects/2026-03/contacts/{assoc['id']}", headers=AUTH).json()
    assert contact["properties"]["email"] == "p0@example.com"
    missing = get(hubspot_sandbox, f"{MEETINGS}/999")
    assert (missing.status_code, missing.json()["category"]) == (404, "OBJECT_NOT_FOUND")


def test_patch_archive_and_search(hubspot_sandbox: Served, clock: Clock) -> None:
    ids = make_meetings(st(hubspot_sandbox), 3)
    clock.advance(minutes=5)
    patched = conform(
        hubspot_sandbox.client.patch(
            f"{MEETINGS}/{ids[1]}", headers=AUTH, json={"properties": {"hs_meeting_outcome": "COMPLETED"}}
        )
    )
    assert patched.json()["properties"]["hs_meeting_outcome"] == "COMPLETED"
    assert patched.json()["updatedAt"] == "2030-05-06T12:05:00.000Z"
    for props, code in (
        ({"nope": "x"}, "PROPERTY_DOESNT_EXIST"),
        ({"hs_meeting_outcome": "MAYBE"}, "INVALID_OPTION"),
        ({"hs_object_id": "1"}, "READ_ONLY_VALUE"),
    ):
        refused = conform(
            hubspot_sandbox.client.patch(f"{MEETINGS}/{ids[1]}", headers=AUTH, json={"properties": props})
        )
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == code
    since = str(int((START + timedelta(minutes=1)).timestamp() * 1000))
    search = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": since}]}
        ],
        "sorts": ["hs_lastmodifieddate"],
        "properties": ["hs_meeting_outcome"],
        "limit": 10,
        "after": "",
    }
    found = post(hubspot_sandbox, f"{MEETINGS}/search", search).json()
    assert found["total"] == 1 and found["results"][0]["id"] == ids[1]
    incomplete = post(hubspot_sandbox, f"{MEETINGS}/search", {"filterGroups": []})
    assert incomplete.status_code == 400
    assert conform(hubspot_sandbox.client.delete(f"{MEETINGS}/{ids[0]}", headers=AUTH)).status_code == 204
    assert get(hubspot_sandbox, f"{MEETINGS}/{ids[0]}").status_code == 404
    archived = get(hubspot_sandbox, MEETINGS, archived="true").json()["results"]
    assert [r["id"] for r in archived] == [ids[0]] and archived[0]["archived"] is True
    everything = post(
        hubspot_sandbox,
        f"{MEETINGS}/search",
        search | {"filterGroups": [], "limit": 1, "sorts": ["-hs_object_id"]},
    ).json()
    assert everything["total"] == 2 and everything["results"][0]["id"] == ids[2]
    assert everything["paging"]["next"]["after"] == "1"


def first_slot(sandbox: Served, duration: str = "1800000") -> dict[str, int]:
    page = get(
        sandbox, f"{LINKS}/book/availability-page/{DEFAULT_LINK_SLUG}", timezone="Europe/Berlin"
    ).json()
    return page["linkAvailability"]["linkAvailabilityByDuration"][duration]["availabilities"][0]


def booking(slot: dict[str, int], **extra: Any) -> dict[str, Any]:
    start = datetime.fromtimestamp(slot["startMillisUtc"] / 1000, UTC)
    return {
        "slug": DEFAULT_LINK_SLUG,
        "duration": 1_800_000,
        "email": "pat@example.com",
        "firstName": "Pat",
        "lastName": "Prospect",
        "formFields": [],
        "legalConsentResponses": [],
        "likelyAvailableUserIds": [],
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "timezone": "Europe/Berlin",
        **extra,
    }


def test_booking_flow_validation_and_slot_taken(hubspot_sandbox: Served) -> None:
    links = get(hubspot_sandbox, LINKS).json()
    assert links["total"] == 1 and links["results"][0]["slug"] == DEFAULT_LINK_SLUG
    info = get(hubspot_sandbox, f"{LINKS}/book/{DEFAULT_LINK_SLUG}", timezone="UTC").json()
    assert info["customParams"]["durations"] == [1_800_000, 3_600_000]
    assert get(hubspot_sandbox, f"{LINKS}/book/{DEFAULT_LINK_SLUG}").status_code == 400
    slot = first_slot(hubspot_sandbox)
    # 2030-05-06 is a Monday; 08:00 in New York, so the first slot is 09:00 New York time.
    assert slot["startMillisUtc"] == int(datetime(2030, 5, 6, 13, tzinfo=UTC).timestamp() * 1000)

    invalid = post(hubspot_sandbox, f"{LINKS}/book", {"slug": DEFAULT_LINK_SLUG, "email": "pat@example.com"})
    assert invalid.status_code == 400 and invalid.json()["category"] == "VALIDATION_ERROR"
    assert {e["in"] for e in invalid.json()["errors"]} >= {"duration", "startTime", "legalConsentResponses"}

    booked = post(hubspot_sandbox, f"{LINKS}/book", booking(slot))
    assert booked.status_code == 200, booked.text
    answer = booked.json()
    assert answer["start"] == "2030-05-06T13:00:00.000Z" and answer["duration"] == 1_800_000
    assert answer["end"] == "2030-05-06T13:30:00.000Z"
    found = post(
        hubspot_sandbox,
        f"{MEETINGS}/search",
        {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "hs_unique_id", "operator": "EQ", "value": answer["calendarEventId"]}
                    ]
                }
            ],
            "sorts": [],
            "properties": ["hs_meeting_start_time", "hs_meeting_outcome"],
            "limit": 10,
            "after": "",
        },
    ).json()
    assert found["total"] == 1
    assert found["results"][0]["properties"]["hs_meeting_outcome"] == "SCHEDULED"

    taken = post(hubspot_sandbox, f"{LINKS}/book", booking(slot, email="other@example.com"))
    assert taken.status_code == 400
    assert taken.json()["subCategory"] == "MeetingsBookingError.TIME_SLOT_UNAVAILABLE"
    assert first_slot(hubspot_sandbox)["startMillisUtc"] > slot["startMillisUtc"]
    wrong_duration = post(hubspot_sandbox, f"{LINKS}/book", booking(first_slot(hubspot_sandbox), duration=30))
    assert wrong_duration.status_code == 400


def test_busy_times_remove_slots(hubspot_sandbox: Served) -> None:
    slot = first_slot(hubspot_sandbox)
    start = datetime.fromtimestamp(slot["startMillisUtc"] / 1000, UTC)
    st(hubspot_sandbox).add_busy(start, start + timedelta(hours=1))
    assert first_slot(hubspot_sandbox)["startMillisUtc"] == slot["startMillisUtc"] + 3_600_000
    page = get(hubspot_sandbox, f"{LINKS}/book/availability-page/{DEFAULT_LINK_SLUG}", timezone="UTC").json()
    assert page["allUsersBusyTimes"][0]["busyTimes"] == [
        {"start": slot["startMillisUtc"], "end": slot["startMillisUtc"] + 3_600_000}
    ]


def expected_v3(secret: str, url: str, body: bytes, timestamp: str) -> str:
    source = b"POST" + url.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def setup_webhooks(sandbox: Served, receiver: Receiver) -> None:
    sandbox.client.put("/_sandbox/webhooks", json={"target_url": receiver.url})
    made = sandbox.client.post("/_sandbox/subscriptions", json={"meetings": True})
    assert made.status_code == 201, made.text


def test_webhooks_are_signed_v3_and_v1(hubspot_sandbox: Served, receiver: Receiver) -> None:
    state = st(hubspot_sandbox)
    setup_webhooks(hubspot_sandbox, receiver)
    slot = first_slot(hubspot_sandbox)
    post(hubspot_sandbox, f"{LINKS}/book", booking(slot))
    [meeting] = state.meetings()
    hubspot_sandbox.client.post(f"/_sandbox/meetings/{meeting.id}/cancel")
    hubspot_sandbox.client.post(f"/_sandbox/meetings/{meeting.id}/archive")
    assert state.flush_deliveries(timeout=10)

    batches = []
    for headers, body in receiver.received:
        timestamp = headers["x-hubspot-request-timestamp"]
        assert timestamp == str(int(START.timestamp() * 1000))
        assert hmac.compare_digest(
            headers["x-hubspot-signature-v3"],
            expected_v3(DEFAULT_CLIENT_SECRET, receiver.url, body, timestamp),
        )
        assert headers["x-hubspot-signature-version"] == "v1"
        assert (
            headers["x-hubspot-signature"]
            == hashlib.sha256(DEFAULT_CLIENT_SECRET.encode() + body).hexdigest()
        )
        batches.append(json.loads(body))
    created, cancelled, deleted = batches
    assert created[0]["subscriptionType"] == "object.creation"
    assert created[0]["objectId"] == int(meeting.id) and created[0]["objectTypeId"] == "0-47"
    assert created[0]["changeSource"] == "MEETINGS" and created[0]["attemptNumber"] == 0
    assert {e["propertyName"] for e in created[1:]} == set(hubspot.DEFAULT_SUBSCRIBED_PROPERTIES)
    assert [(e["propertyName"], e["propertyValue"]) for e in cancelled] == [
        ("hs_meeting_outcome", "CANCELED")
    ]
    assert cancelled[0]["changeSource"] == "CRM_UI"
    assert deleted[0]["subscriptionType"] == "object.deletion"
    for event in (e for batch in batches for e in batch):
        assert {
            "eventId",
            "subscriptionId",
            "portalId",
            "appId",
            "occurredAt",
            "subscriptionType",
            "attemptNumber",
            "objectId",
            "changeSource",
        } <= set(event)
    assert len({e["eventId"] for batch in batches for e in batch}) == sum(map(len, batches))


def test_duplicates_and_resend_bump_attempt_number(hubspot_sandbox: Served, receiver: Receiver) -> None:
    state = st(hubspot_sandbox)
    setup_webhooks(hubspot_sandbox, receiver)
    hubspot_sandbox.client.put("/_sandbox/settings", json={"duplicate_deliveries": 1})
    hubspot_sandbox.client.post(
        "/_sandbox/meetings",
        json={"title": "Demo", "start": "2030-05-07T10:00:00Z", "end": "2030-05-07T11:00:00Z"},
    )
    assert state.flush_deliveries(timeout=10)
    first, second = (json.loads(body) for _, body in receiver.received)
    assert [e["eventId"] for e in first] == [e["eventId"] for e in second]
    assert {e["attemptNumber"] for e in first} == {0}
    assert {e["attemptNumber"] for e in second} == {1}
    deliveries = hubspot_sandbox.client.get("/_sandbox/deliveries?wait=true").json()["deliveries"]
    assert [d["attempt_number"] for d in deliveries] == [0, 1]
    resent = hubspot_sandbox.client.post(f"/_sandbox/deliveries/{deliveries[0]['delivery_id']}/resend")
    assert resent.status_code == 202
    assert state.flush_deliveries(timeout=10)
    third = json.loads(receiver.received[2][1])
    assert {e["attemptNumber"] for e in third} == {2}


def test_failed_delivery_is_retried_when_asked(hubspot_sandbox: Served, receiver: Receiver) -> None:
    state = st(hubspot_sandbox)
    receiver.status = 503
    setup_webhooks(hubspot_sandbox, receiver)
    hubspot_sandbox.client.put("/_sandbox/settings", json={"retry_failed": 2})
    state.create_meeting("Demo", START + timedelta(days=1), START + timedelta(days=1, hours=1))
    assert state.flush_deliveries(timeout=10)
    attempts = state.deliveries()
    assert [a.attempt_number for a in attempts] == [0, 1, 2]
    assert not any(a.succeeded for a in attempts) and attempts[0].status_code == 503


def test_rate_limit_and_server_error_faults(hubspot_sandbox: Served) -> None:
    client = hubspot_sandbox.client
    client.post("/_sandbox/faults", json={"kind": "429", "path": MEETINGS, "times": 2})
    for _ in range(2):
        limited = conform(client.get(MEETINGS, headers=AUTH))
        assert limited.status_code == 429
        assert limited.json()["category"] == "RATE_LIMITS"
        assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
        assert limited.headers["x-hubspot-ratelimit-remaining"] == "0"
        assert "retry-after" not in limited.headers
    assert get(hubspot_sandbox, MEETINGS).status_code == 200
    client.post("/_sandbox/faults", json={"kind": "429", "retry_after": 3})
    assert get(hubspot_sandbox, LINKS).headers["retry-after"] == "3"
    client.post("/_sandbox/faults", json={"kind": "500", "method": "POST"})
    failed = post(hubspot_sandbox, f"{LINKS}/book", {})
    assert (failed.status_code, failed.json()["category"]) == (500, "INTERNAL_ERROR")
    logged = client.get("/_sandbox/requests").json()["requests"]
    assert [r["status"] for r in logged] == [429, 429, 200, 429, 500]


def test_real_rate_limit_window(hubspot_sandbox: Served, clock: Clock) -> None:
    hubspot_sandbox.client.put("/_sandbox/settings", json={"rate_limit_per_ten_seconds": 2})
    codes = [get(hubspot_sandbox, MEETINGS).status_code for _ in range(3)]
    clock.advance(seconds=11)
    assert codes + [get(hubspot_sandbox, MEETINGS).status_code] == [200, 200, 429, 200]


def test_mutate_fault_between_pages(hubspot_sandbox: Served) -> None:
    ids = make_meetings(st(hubspot_sandbox), 4)
    hubspot_sandbox.client.post(
        "/_sandbox/faults", json={"kind": "mutate", "offset": 0, "action": {"op": "archive", "id": ids[2]}}
    )
    page = get(hubspot_sandbox, MEETINGS, limit=2).json()
    rest = get(hubspot_sandbox, MEETINGS, limit=2, after=page["paging"]["next"]["after"]).json()
    assert [r["id"] for r in page["results"] + rest["results"]] == [ids[0], ids[1], ids[3]]


def test_webhook_settings_and_subscriptions_api(hubspot_sandbox: Served) -> None:
    base = f"/webhooks/2026-03/{hubspot.DEFAULT_APP_ID}"
    created = conform(
        hubspot_sandbox.client.post(
            f"{base}/subscriptions",
            headers=AUTH,
            json={
                "eventType": "object.propertyChange",
                "propertyName": "hs_meeting_outcome",
                "objectTypeId": "0-47",
                "active": True,
            },
        )
    )
    assert created.status_code == 201
    sub_id = created.json()["id"]
    listed = get(hubspot_sandbox, f"{base}/subscriptions").json()["results"]
    assert [s["id"] for s in listed] == [sub_id]
    paused = conform(
        hubspot_sandbox.client.patch(f"{base}/subscriptions/{sub_id}", headers=AUTH, json={"active": False})
    )
    assert paused.json()["active"] is False
    settings = conform(
        hubspot_sandbox.client.put(
            f"{base}/settings",
            headers=AUTH,
            json={"targetUrl": "https://example.com/hook", "throttling": {"maxConcurrentRequests": 5}},
        )
    )
    assert settings.json()["targetUrl"] == "https://example.com/hook"
    assert (
        conform(hubspot_sandbox.client.delete(f"{base}/subscriptions/{sub_id}", headers=AUTH)).status_code
        == 204
    )
