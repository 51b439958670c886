"""Where bookingsync may send requests: public addresses only, unless the config allows private ones.

Subscription URLs and connection base URLs come from a config file, so a typo or a malicious
edit could point deliveries (with their signed meeting data) at the cloud metadata service or at
an internal admin port. Every target must resolve to public (globally routable) addresses;
loopback, private, link-local (the metadata address 169.254.169.254 among them), shared,
multicast and reserved ranges are refused unless `allow_private_targets = true`.

The check runs twice:

* at load (`check_url`), so `config check` and start-up name the key before anything starts;
  a name that does not resolve yet is let through (DNS may not be reachable from where the
  config is checked) and is checked at send time;
* at send time, inside the connection itself (`guarded_transport`): the name is resolved once,
  every address checked, and the socket opened to one of exactly those addresses, so a DNS
  answer that changes between the check and the connection (rebinding) cannot slip past. TLS
  still verifies the certificate against the host name.

A client built here does not use proxy settings from the environment: a proxy would be the
only address checked, not the target.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

# A config check must not hang on a resolver that does not answer.
RESOLVE_TIMEOUT_SECONDS = 3.0
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
FIX = "point it at a public address, or set allow_private_targets = true (top of the file) if it is meant to be internal"

Resolver = Callable[[str, int], list[str]]
_lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="egress-dns")


class PrivateTarget(httpx.ConnectError):
    """A request whose target resolves to an address bookingsync does not send to.

    An httpx.ConnectError, so the delivery path's existing handling of unreachable endpoints
    (retry with backoff, then dead letter) applies, with this sentence as the error.
    """


def forbidden(address: str) -> str | None:
    """Why `address` (an IP literal) is not a public target, or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, hit in (
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata lives here)", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return f"{ip} is a {kind} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def problem(
    url: str, *, resolver: Resolver | None = None, timeout: float = RESOLVE_TIMEOUT_SECONDS
) -> str | None:
    """Why `url` is not an allowed target, or None. An unresolvable name is not a problem here."""
    resolver = resolver or resolve
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return None  # the URL validator reports a missing host
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return f"{host} is this machine (loopback)"
    literal = _literal(host)
    if literal is not None:
        return forbidden(literal)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = _lookups.submit(resolver, host, port).result(timeout=timeout)
    except (OSError, FutureTimeout, UnicodeError):
        return None  # checked again when we connect
    reasons = [f"{host} resolves to {reason}" for address in addresses if (reason := forbidden(address))]
    return reasons[0] if reasons else None


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address only."""

    def __init__(self, resolver: Resolver | None) -> None:
        self._inner = httpcore.SyncBackend()
        self._resolver = resolver or (lambda host, port: resolve(host, port))

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        for address in addresses:
            reason = forbidden(address)
            if reason is not None:
                raise PrivateTarget(f"refused to connect to {host}: {reason}; {FIX}")
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} resolves to no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise PrivateTarget(f"refused to connect to the unix socket {path}; {FIX}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class OneWrite(httpcore.NetworkStream):
    """A connection whose writes wait for its next read, then go out in one send.

    httpcore writes a request's head and its body apart: two sends, two TCP segments (it sets
    TCP_NODELAY) and two reads at the other end, for a delivery of a few hundred bytes. A request is
    complete when its response is read, so nothing waits longer than that (issue 6: a tenth of a
    delivery's CPU, its own and the subscriber's)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._pending: list[bytes] = []
        self._timeout: float | None = None

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._inner.write(data, self._timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        return self._inner.read(max_bytes, timeout)

    def close(self) -> None:
        self._pending.clear()
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._flush()
        return OneWrite(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _OneWriteBackend(httpcore.NetworkBackend):
    """Connects through `inner`, each connection a `OneWrite`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return OneWrite(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return OneWrite(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(backend: httpcore.NetworkBackend, limits: httpx.Limits | None) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(limits=limits or httpx.Limits())
    # httpx builds its connection pool without a way to pass a network backend; the pool
    # hands this attribute to every connection it opens, and it holds none yet.
    transport._pool._network_backend = backend
    return transport


def guarded_transport(
    *, resolver: Resolver | None = None, limits: httpx.Limits | None = None
) -> httpx.HTTPTransport:
    """An httpx transport that connects only to public addresses, checked at connect time."""
    return _transport(_GuardedBackend(resolver), limits)


def delivery_transport(*, allow_private: bool, limits: httpx.Limits | None = None) -> httpx.BaseTransport:
    """The transport outbound deliveries are sent through (worker/delivery.py `send`): guarded
    unless private targets are allowed, each request in one write (`OneWrite`). `limits` bounds
    its connection pool (a delivery lane keeps one pool per subscription)."""
    inner = httpcore.SyncBackend() if allow_private else _GuardedBackend(None)
    return _transport(_OneWriteBackend(inner), limits)


def delivery_client(
    *, timeout: float, allow_private: bool, limits: httpx.Limits | None = None
) -> httpx.Client:
    """A client over `delivery_transport`, for code that wants an `httpx.Client`."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        transport=delivery_transport(allow_private=allow_private, limits=limits),
    )
