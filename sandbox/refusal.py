"""How every simulator's handlers answer early, in that provider's own envelope.

A handler that finds the request wanting (no token, a bad parameter, an injected 429) raises
`Refused` carrying the finished response; `install_refusals` has the app return it as it is. The
before-answer faults (`delay`, `429`, `500`) and the after-page `mutate` faults run the same way in
every simulator; only the error response differs, so each passes its own `fault_response`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bookingsync.sandbox.faults import Fault, FaultQueue


class Refused(Exception):
    """Raised by a handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def install_refusals(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Response:
        return exc.response


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other or no header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def fault_before(
    faults: FaultQueue,
    request: Request,
    fault_response: Callable[[Fault], Response | None],
    *,
    listing: bool = False,
) -> Fault | None:
    """Apply the next before-answer fault for this request: sleep out a `delay`, refuse with
    `fault_response(fault)` where it gives one (a 429, a 500), and return any other fault
    (`malformed`) for the listing to honour."""
    fault = faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if (response := fault_response(fault)) is not None:
        raise Refused(response)
    return fault


def run_page_mutations(faults: FaultQueue, request: Request, offset: int) -> None:
    """Run the `mutate` faults due after the listing page at `offset` was read, before it is sent."""
    for mutation in faults.take_after_page(request.method, request.url.path, offset):
        assert mutation.action is not None  # Fault refuses a mutate without one
        mutation.action()


async def json_object(request: Request, refusal: Callable[[], Response]) -> dict[str, Any]:
    """The request's body as a JSON object, or `Refused` with `refusal()`."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(refusal())
    return body
