"""The consumer and operator HTTP API (`/v1`, described at `/openapi.json` and `/docs`) and the
status page (`/`), mounted on the process's FastAPI app by `mount`.

    /v1/meetings        canonical meetings, filtered and paged; one with links, events, deliveries
    /v1/events          the event feed in commit order (`?after=<cursor>`); one event
    /v1/deliveries      deliveries and dead letters; replay one
    /v1/subscriptions   state and backlog; re-enable with what was missed; replay from a time
    /v1/quarantine      records that could not be normalised; replay one
    /v1/connections     last poll, lag, error, next due poll
    /                   the status page (worker/api/status_page.py)

Every `/v1` route takes an API key (`Authorization: Bearer <key>`, worker/api/auth.py); errors
are `{"error": "…"}` with the status the route documents.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from bookingsync.models.errors import RequestRefused
from bookingsync.worker.api import (
    connections,
    deliveries,
    events,
    meetings,
    quarantine,
    status_page,
    subscriptions,
)
from bookingsync.worker.api.answers import single_values
from bookingsync.worker.api.auth import Keys, Unauthorized
from bookingsync.worker.api.schemas import ErrorOut
from bookingsync.worker.runtime import Runtime

DESCRIPTION = """Meetings, the event feed, deliveries, subscriptions, quarantine and connections of a
bookingsync deployment. Authenticate with an API key from the config's `[[api_keys]]` as
`Authorization: Bearer <key>`: `read` for GET, `write` for replays and re-enabling."""
AUTH_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API key, or one that is not configured"},
    403: {"model": ErrorOut, "description": "The key lacks the scope this route needs"},
    # FastAPI's own shape for invalid parameters (declared by every route that takes any).
    422: {
        "description": "A parameter is not valid (or given twice)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    },
}


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRefused)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


def mount(app: FastAPI, rt: Runtime) -> None:
    keys = Keys(rt.config)
    app.description = DESCRIPTION
    app.add_exception_handler(RequestRefused, _refused)
    for module in (meetings, events, deliveries, subscriptions, quarantine, connections):
        router = module.routes(rt, keys)
        app.include_router(router, responses=AUTH_ANSWERS, dependencies=[Depends(single_values)])
    app.include_router(status_page.routes(rt, keys))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="bookingsync API")
