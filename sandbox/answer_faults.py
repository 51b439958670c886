"""Faults that strike after a simulator has handled a request: the provider acted, the client
never hears about it (or hears late).

Kinds (queued like any `Fault`, see `faults`; ``path``/``method`` pick the endpoint):

* ``"lost_504"``    the request is handled (a booking is stored, its webhooks go out) and the
                    answer is replaced by a gateway's ``504 Gateway Time-out`` page, as a proxy in
                    front of the provider answers when the provider was slow.
* ``"lost_drop"``   handled, then the connection is closed after the status line, before the body:
                    the client sees a connection closed mid-answer.
* ``"slow_answer"`` handled, then the answer waits ``seconds`` before it is sent, so webhooks
                    about it reach their receiver first (an echo before the answer).

This is a plain ASGI middleware around the simulator's app; the control API under
``/_sandbox/`` is never affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from bookingsync.sandbox.faults import FaultQueue
from bookingsync.sandbox.request_log import CONTROL_PREFIX

Message = MutableMapping[str, Any]
GATEWAY_TIMEOUT_PAGE = (
    b"<html><head><title>504 Gateway Time-out</title></head>"
    b"<body><center><h1>504 Gateway Time-out</h1></center></body></html>"
)


class ConnectionDropped(Exception):
    """Raised after the status line went out: the server closes the connection, no body follows."""


class AnswerFaults:
    def __init__(self, app: Callable[..., Awaitable[None]], faults: FaultQueue) -> None:
        self.app = app
        self.faults = faults

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.faults.take_after_answer(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)  # the provider acts in full
        if fault.kind == "slow_answer":
            await asyncio.sleep(fault.seconds)
            for message in held:
                await send(message)
        elif fault.kind == "lost_504":
            await send(
                {
                    "type": "http.response.start",
                    "status": 504,
                    "headers": [
                        (b"content-type", b"text/html"),
                        (b"content-length", str(len(GATEWAY_TIMEOUT_PAGE)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": GATEWAY_TIMEOUT_PAGE})
        else:
            await send(next(m for m in held if m["type"] == "http.response.start"))
            raise ConnectionDropped(
                f"lost_drop fault: {scope['method']} {scope['path']} was handled and its answer dropped"
            )


def install_answer_faults(app: FastAPI, faults: FaultQueue) -> None:
    app.add_middleware(AnswerFaults, faults=faults)  # type: ignore[arg-type]
