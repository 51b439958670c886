"""Every LeanData and HubSpot exchange, checked against the providers' published OpenAPI files.

`ValidatingTransport` wraps a real `httpx.HTTPTransport`. Each request an adapter sends and each
response the simulator returns is validated with openapi-core against the providers' published files, found through
`tests/provider_docs.py` (the `BOOKINGSYNC_PROVIDER_DOCS` setting; LeanData's BookIt OpenAPI
file, https://developer.leandata.com/, as `leandata/bookit-openapi.yml`; HubSpot's three 2026-03
OpenAPI files, https://developers.hubspot.com/docs/api-reference, as `hubspot/*.openapi.json`).
Without them the tests that use this module skip with that reason, and fail under `CI=true`, so neither the adapter nor the simulator can drift into a private
dialect. Problems are collected in `violations` (the suite asserts there are none) rather than
raised, so the adapter under test sees exactly what the simulator said.

How the published files are read (each adjustment is made to a copy of the spec dict):

* The simulator's origin (http://127.0.0.1:<port>) is replaced by the spec's first server URL
  before matching, so the paths are matched as the provider documents them.
* LeanData writes Postman-style `/v1/meeting/:meetingId`; it becomes the OpenAPI template
  `/v1/meeting/{meetingId}` with the path parameter declared (a string).
* HubSpot secures every operation with an `oauth2` scheme, which openapi-core cannot check (it
  only warns, and warnings are errors here). OAuth 2 access tokens and private-app tokens travel
  as `Authorization: Bearer <token>` (RFC 6750, and how HubSpot's docs say to call the API), so
  the copy declares that scheme as HTTP bearer: a request without the header is a violation.
* HubSpot error responses are the `default` response with media type `*/*`, which openapi-core
  cannot decode. A response whose status has no explicit entry is therefore checked by hand:
  it must be JSON valid against `components/schemas/Error` (schema validator, OAS 3.0 dialect).
* The LeanData file documents only `200` answers, all `application/json` with an empty schema,
  and no error responses at all. A non-2xx answer to an operation that documents no error
  response cannot be checked against a schema; it must still be a JSON object (the only media
  type the file uses). A 2xx status the operation does not document is a violation, and so is
  any status for an operation that does document its errors (HubSpot's `default`).
* A response declared with `content: {}` (HubSpot's `204 No content`) is read as having no body;
  openapi-core would otherwise demand one.
* A path or a method the spec does not have is a violation ("unknown path").
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.provider_docs import provider_doc, provider_docs

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# -- loading the published files --------------------------------------------------------------


def _leandata_dict() -> dict[str, Any]:
    spec = copy.deepcopy(yaml.safe_load(provider_doc("leandata", "bookit-openapi.yml").read_text()))
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        names = re.findall(r":(\w+)", path)
        templated = re.sub(r":(\w+)", r"{\1}", path)
        if names:
            item = dict(item)
            declared = {p.get("name") for p in item.get("parameters", []) if p.get("in") == "path"}
            item["parameters"] = list(item.get("parameters", [])) + [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in names
                if n not in declared
            ]
        paths[templated] = item
    spec["paths"] = paths
    return spec


def _without_empty_content(spec: dict[str, Any]) -> dict[str, Any]:
    # `content: {}` ("No content", HubSpot's 204s) means no body; openapi-core would demand one.
    for item in spec["paths"].values():
        for method in METHODS:
            for response in item.get(method, {}).get("responses", {}).values():
                if response.get("content") == {}:
                    del response["content"]
    return spec


def _hubspot_dict(path: Path) -> dict[str, Any]:
    spec = _without_empty_content(copy.deepcopy(json.loads(path.read_text())))
    schemes = spec.get("components", {}).get("securitySchemes", {})
    if "oauth2" in schemes:
        schemes["oauth2"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "OAuth 2 / private app access token (RFC 6750 bearer)",
        }
    return spec


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    spec: dict[str, Any]

    @property
    def definition(self) -> dict[str, Any]:
        return self.spec["paths"][self.template][self.method]


class Spec:
    """One published OpenAPI document, loaded once, with a path matcher of its own."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.dict = spec
        self.server = spec["servers"][0]["url"].rstrip("/")
        self.openapi = OpenAPI.from_dict(spec)
        self._patterns = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"), t)
            for t in spec["paths"]
        ]
        # The most literal template wins (`/meetings/search` before `/meetings/{meetingId}`).
        self._patterns.sort(key=lambda p: (p[1].count("{"), -len(p[1])))

    def template_for(self, path: str) -> str | None:
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return None

    def error_schema_errors(self, body: Any) -> list[str]:
        root = {"$ref": "#/components/schemas/Error", "components": self.dict["components"]}
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
            for e in OAS30Validator(root).iter_errors(body)
        ]


@cache
def leandata_specs() -> tuple[Spec, ...]:
    return (Spec("leandata/bookit-openapi.yml", _leandata_dict()),)


@cache
def hubspot_specs() -> tuple[Spec, ...]:
    return tuple(
        Spec(f"hubspot/{p.name}", _hubspot_dict(p)) for p in provider_docs("hubspot", "*.openapi.json")
    )


# -- openapi-core's request/response protocols over httpx -------------------------------------


class _Request:
    def __init__(self, request: httpx.Request, host_url: str) -> None:
        self._request = request
        self.host_url = host_url
        self.path = request.url.path
        self.method = request.method.lower()
        self.full_url_pattern = host_url + self.path
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.items()))
        self.data = response.content


def _describe(exc: Exception) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__ or exc.__context__
    seen = 0
    while cause is not None and seen < 3:
        parts.append(f"{type(cause).__name__}: {cause}")
        for inner in getattr(cause, "schema_errors", None) or []:
            parts.append(f"  - {getattr(inner, 'message', inner)}")
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return " <- ".join(parts)


# -- the transport ----------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    spec: str | None
    template: str | None


@dataclass
class ValidatingTransport(httpx.BaseTransport):
    """An `httpx.HTTPTransport` whose every exchange is checked against `specs`."""

    provider: str
    specs: tuple[Spec, ...]
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    exchanges: list[Exchange] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.inner.handle_request(request)
        response.read()
        try:
            self._check(request, response)
        except Exception as exc:  # noqa: BLE001 - a validator crash is itself a finding
            self._violation(request, response, f"the validator failed: {_describe(exc)}")
        return response

    def close(self) -> None:
        # Closing an adapter closes its client's transport; this one outlives each adapter of a
        # test (they share it, so every exchange is counted) and the driver shuts `inner` down.
        pass

    # -- checks ---------------------------------------------------------------------------------

    def _violation(self, request: httpx.Request, response: httpx.Response | None, text: str) -> None:
        status = f" -> {response.status_code}" if response is not None else ""
        with self._lock:
            self.violations.append(f"{self.provider} {request.method} {request.url.path}{status}: {text}")

    def _check(self, request: httpx.Request, response: httpx.Response) -> None:
        path = request.url.path
        matches = [(s, s.template_for(path)) for s in self.specs]
        spec, template = next(((s, t) for s, t in matches if t is not None), (None, None))
        with self._lock:
            self.exchanges.append(
                Exchange(request.method, path, response.status_code, spec.name if spec else None, template)
            )
        if spec is None or template is None:
            self._violation(
                request,
                response,
                "unknown path: no published spec documents it "
                f"(searched {', '.join(s.name for s in self.specs)})",
            )
            return
        method = request.method.lower()
        if method not in spec.dict["paths"][template]:
            self._violation(
                request,
                response,
                f"unknown method: {spec.name} documents {template} without {request.method}",
            )
            return
        operation = Operation(template, method, spec.dict)
        ours = _Request(request, spec.server)
        try:
            spec.openapi.validate_request(ours)
        except Exception as exc:  # noqa: BLE001 - every openapi-core error is a violation
            self._violation(request, None, f"request does not match {spec.name} {template}: {_describe(exc)}")
        self._check_response(request, response, spec, operation, ours)

    def _check_response(
        self,
        request: httpx.Request,
        response: httpx.Response,
        spec: Spec,
        operation: Operation,
        ours: _Request,
    ) -> None:
        documented = operation.definition.get("responses", {})
        status = str(response.status_code)
        if status in documented or f"{status[0]}XX" in documented:
            try:
                spec.openapi.validate_response(ours, _Response(response))
            except Exception as exc:  # noqa: BLE001
                self._violation(
                    request,
                    response,
                    f"response does not match {spec.name} {operation.template}: {_describe(exc)}",
                )
            return
        if "default" in documented:
            try:
                body = json.loads(response.content)
            except ValueError:
                self._violation(request, response, f"error body is not JSON: {response.text[:120]!r}")
                return
            for problem in spec.error_schema_errors(body):
                self._violation(request, response, f"error body is not a {spec.name} Error: {problem}")
            return
        documents_errors = any(not code.startswith("2") for code in documented)
        if response.is_success or documents_errors:
            self._violation(
                request,
                response,
                f"status {status} is not documented for "
                f"{request.method} {operation.template} (documented: "
                f"{', '.join(documented) or 'none'})",
            )
            return
        # An error answer to an operation whose spec documents no error response at all.
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._violation(
                request, response, f"undocumented error answer is not a JSON object: {response.text[:120]!r}"
            )


def for_provider(provider: str) -> ValidatingTransport | None:
    """The validating transport for a provider with a published OpenAPI file, else None."""
    if provider == "leandata":
        return ValidatingTransport(provider, leandata_specs())
    if provider == "hubspot":
        return ValidatingTransport(provider, hubspot_specs())
    return None
