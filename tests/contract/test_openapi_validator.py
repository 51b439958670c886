"""The OpenAPI validator itself: it must flag drift, or the contract's "no violations" means nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.contract import openapi

MEETING = {
    "id": "51",
    "properties": {"hs_object_id": "51"},
    "createdAt": "2030-05-06T11:00:00.000Z",
    "updatedAt": "2030-05-06T11:00:00.000Z",
    "archived": False,
}
ERROR = {
    "status": "error",
    "message": "The access token provided is invalid or has expired.",
    "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
    "category": "INVALID_AUTHENTICATION",
}
BEARER = {"Authorization": "Bearer pat-na1-test"}


def exchange(
    provider: str,
    status: int,
    body,
    method: str = "GET",
    path: str = "/",
    *,
    headers=BEARER,
    content_type: str = "application/json",
    **kwargs,
) -> list[str]:
    def answer(_request: httpx.Request) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return httpx.Response(status, content=body, headers={"content-type": content_type})
        return httpx.Response(status, json=body)

    transport = openapi.for_provider(provider)
    assert transport is not None
    transport.inner = httpx.MockTransport(answer)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:9", headers=headers) as client:
        client.request(method, path, **kwargs)
    assert len(transport.exchanges) == 1
    return transport.violations


def test_conforming_hubspot_exchanges_pass():
    path = "/crm/objects/2026-03/meetings"
    assert (
        exchange("hubspot", 200, {"results": [MEETING]}, path=path, params={"limit": 3, "archived": "false"})
        == []
    )
    assert exchange("hubspot", 401, ERROR, path=path) == []
    assert exchange("hubspot", 204, b"", "DELETE", f"{path}/51", content_type="") == []


@pytest.mark.parametrize(
    ("case", "args", "kwargs", "expected"),
    [
        ("unknown path", (200, {}, "GET", "/crm/objects/2026-03/meetingz"), {}, "unknown path"),
        ("unknown method", (200, {}, "PUT", "/crm/objects/2026-03/meetings"), {}, "unknown method"),
        (
            "response off schema",
            (200, {"results": [{"id": 51}]}, "GET", "/crm/objects/2026-03/meetings"),
            {},
            "response does not match",
        ),
        (
            "error body off schema",
            (500, {"message": "boom"}, "GET", "/crm/objects/2026-03/meetings"),
            {},
            "is not a hubspot/crm-meetings-2026-03.openapi.json Error",
        ),
        (
            "error body not JSON",
            (502, "<html>bad gateway</html>", "GET", "/crm/objects/2026-03/meetings"),
            {},
            "error body is not JSON",
        ),
        (
            "bad query parameter",
            (200, {"results": []}, "GET", "/crm/objects/2026-03/meetings"),
            {"params": {"limit": "ten"}},
            "request does not match",
        ),
        (
            "no bearer token",
            (200, {"results": []}, "GET", "/crm/objects/2026-03/meetings"),
            {"headers": {}},
            "request does not match",
        ),
        (
            "booking body off schema",
            (200, {}, "POST", "/scheduler/2026-03/meetings/meeting-links/book"),
            {"json": {"slug": "x"}},
            "request does not match",
        ),
    ],
)
def test_hubspot_drift_is_a_violation(case, args, kwargs, expected):
    headers = kwargs.pop("headers", BEARER)
    violations = exchange("hubspot", *args, headers=headers, **kwargs)
    assert any(expected in v for v in violations), (case, violations)


def test_leandata_templates_its_postman_paths_and_checks_what_it_documents():
    assert exchange("leandata", 200, [], path="/v1/meetings", params={"prospectEmail": "a@example.com"}) == []
    assert exchange("leandata", 200, {"calendarEvent": {}}, path="/v1/meeting/abc123") == []
    # BookIt documents no error responses: an error is accepted only as a JSON object.
    assert exchange("leandata", 401, {"message": "Unauthorized"}, path="/v1/meetings") == []
    assert any(
        "not a JSON object" in v
        for v in exchange("leandata", 500, "oops", path="/v1/meetings", content_type="text/plain")
    )
    assert any("unknown path" in v for v in exchange("leandata", 200, [], path="/v1/meetingz"))
    assert any("unknown method" in v for v in exchange("leandata", 200, {}, "PUT", "/v1/meeting/abc"))
    assert any(
        "status 201 is not documented" in v
        for v in exchange("leandata", 201, {}, "POST", "/v1/meeting", json={})
    )
    assert any(
        "request does not match" in v
        for v in exchange("leandata", 200, {}, "POST", "/v1/meeting", json=[1, 2])
    )
