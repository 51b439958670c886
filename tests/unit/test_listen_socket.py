"""The sockets `web`, `run` and the sandbox serve on: Nagle off on every accepted connection.

uvicorn serves the socket `probes.bind` (or the sandbox's `ServedApp`) took, and
asyncio turns Nagle off only on accepted sockets whose protocol says TCP. With Nagle on, a
response body written after its headers waited for the client's delayed ACK: 40 ms a request on
a keep-alive connection, which held `bookingsync web` to 46 requests/s on two connections.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from bookingsync.sandbox.server import ServedApp
from bookingsync.worker import probes

SOCKETS: dict[str, Callable[[], socket.socket]] = {
    "web and run": lambda: probes.bind("127.0.0.1", 0),
    "sandbox": lambda: ServedApp(FastAPI())._socket,
}


@pytest.mark.parametrize("taken_by", SOCKETS)
def test_connections_accepted_on_the_bound_socket_send_without_waiting_for_acks(taken_by: str) -> None:
    async def accepted_nodelay() -> int:
        sock = SOCKETS[taken_by]()
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted = transport.get_extra_info("socket")
                seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, 5)
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0
