"""Keep webhook deliveries away from the server's own network (SSRF protection).

Two checks, because one is not enough:

* ``validate_webhook_url`` runs when an endpoint is created or changed, so an obviously bad
  target is refused with a 422 and a clear message.
* ``make_webhook_client`` builds the HTTP client the worker delivers with. Its connections
  are vetted at connect time: the host name is resolved once, every address is checked, and
  the socket is opened to one of those vetted addresses. A name that resolved to a public
  address at create time and to 127.0.0.1 later (DNS rebinding) is therefore still refused.

``allow_private=True`` (``SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS=1``) switches the address checks
off for development; the scheme and host checks stay.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final

import httpcore
import httpx

__all__ = [
    "IPAddress",
    "Resolver",
    "VettedNetworkBackend",
    "WebhookTargetError",
    "forbidden_reason",
    "is_forbidden_address",
    "make_webhook_client",
    "parse_webhook_url",
    "resolve_host",
    "validate_webhook_url",
]

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves ``(host, port)`` to addresses; raises ``OSError`` when the name does not resolve."""

_HOSTNAME: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
_CGNAT: Final = IPv4Network("100.64.0.0/10")
_NAT64_WELL_KNOWN: Final = IPv6Network("64:ff9b::/96")
_ULA: Final = IPv6Network("fc00::/7")
_METADATA: Final = frozenset({IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")})

USER_AGENT: Final = "slotguard-webhooks/1"


class WebhookTargetError(ValueError):
    """A webhook URL or the address it resolves to is not an allowed delivery target."""


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is a pure translation of one.

    ``::ffff:127.0.0.1`` reaches 127.0.0.1 on a dual-stack socket, NAT64 and 6to4 addresses
    are routed to their embedded IPv4 host; judging them by their IPv6 form would let a
    private IPv4 target through (or, for NAT64 networks, refuse every public one).
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not receive webhooks (``"loopback"``, ``"private"``, …), or None."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return None if reason is None else f"{reason} (IPv4 {embedded} inside {ip})"
        if ip.scope_id is not None:
            ip = IPv6Address(int(ip))
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, IPv4Address) and ip in _CGNAT:
        return "shared address space (CGNAT)"
    if isinstance(ip, IPv6Address) and ip in _ULA:
        return "unique local"
    if isinstance(ip, IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    # Whatever the IANA special-purpose registry does not call global (documentation ranges,
    # benchmarking, protocol assignments) is not a real receiver either.
    if not ip.is_global:
        return "not globally routable"
    return None


def is_forbidden_address(ip: IPAddress) -> bool:
    """True when ``ip`` is loopback, private, link-local, metadata, multicast, reserved, …"""
    return forbidden_reason(ip) is not None


def parse_webhook_url(url: str) -> httpx.URL:
    """Check the shape of a webhook URL (scheme http/https, a host) without any network I/O."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise WebhookTargetError(f"webhook URL is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookTargetError("webhook URL scheme must be http or https")
    if not parsed.host:
        raise WebhookTargetError("webhook URL must include a host")
    host = _host_of(parsed)
    if ":" not in host and not _HOSTNAME.fullmatch(host):
        raise WebhookTargetError(f"webhook URL host {parsed.host!r} is not a valid host name")
    return parsed


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All TCP addresses of ``host`` in resolver order, duplicates removed."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _check_addresses(host: str, addresses: Iterable[IPAddress]) -> None:
    for ip in addresses:
        reason = forbidden_reason(ip)
        if reason is not None:
            shown = host if host == ip.compressed else f"{host} ({ip.compressed})"
            raise WebhookTargetError(
                f"webhook target {shown} is a {reason} address; only public addresses "
                "may receive webhooks"
            )


def _host_of(url: httpx.URL) -> str:
    # raw_host is the IDNA (ASCII) form, which is what the resolver and the connection use.
    return url.raw_host.decode("ascii")


def _port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def validate_webhook_url(
    url: str, *, allow_private: bool, resolver: Resolver | None = None
) -> None:
    """Refuse a webhook URL the worker must never call; raise ``WebhookTargetError`` if so.

    An IP literal is checked as is; a host name is resolved and *every* address it resolves
    to must be public (a name that also points inside the network is refused).
    """
    parsed = parse_webhook_url(url)
    if allow_private:
        return
    host = _host_of(parsed)
    try:
        literal: IPAddress | None = ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        _check_addresses(host, [literal])
        return
    try:
        addresses = await (resolver or resolve_host)(host, _port_of(parsed))
    except OSError as exc:
        raise WebhookTargetError(f"webhook host {host} could not be resolved: {exc}") from None
    if not addresses:
        raise WebhookTargetError(f"webhook host {host} has no addresses")
    _check_addresses(host, addresses)


class VettedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that only opens TCP connections to vetted addresses.

    httpcore hands ``connect_tcp`` the URL's host; this backend resolves it, refuses the
    connection (``WebhookTargetError``) when any address is forbidden, and connects the socket
    to the vetted IP itself. TLS is unaffected: httpcore calls ``start_tls`` with
    ``server_hostname`` taken from the request's origin, not from the address connected to,
    so SNI and certificate checks still use the host name, as does the ``Host`` header.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver | None = None,
        trusted: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._allow_private = allow_private
        # (host, port) origins the operator configured (calendar provider base URLs):
        # connections to them skip the address checks, whatever they resolve to.
        self._trusted = frozenset((h.lower(), p) for h, p in trusted)
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()
        self._resolver = resolver or resolve_host

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no addresses")
        if not self._allow_private and (host.lower(), port) not in self._trusted:
            _check_addresses(host, addresses)

        last_error: httpcore.ConnectError | None = None
        for ip in addresses:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                # e.g. "localhost" gives ::1 and 127.0.0.1 and the receiver listens on one.
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise WebhookTargetError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _VettedTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self, *, backend: httpcore.AsyncNetworkBackend, verify: ssl.SSLContext | bool
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)
        # Keep-alive for as many connections as may be open: the outbox worker runs dozens
        # of deliveries at once, and closing and reopening connections beyond a smaller
        # keep-alive pool cost more than the requests themselves.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        super().__init__(verify=ssl_context, limits=limits)
        # httpx offers no public way to choose httpcore's network backend, so the pool is
        # rebuilt with the same settings plus ours (tests cover that connections go through it).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )


def make_webhook_client(
    *,
    allow_private: bool,
    timeout: float = 15.0,
    verify: ssl.SSLContext | bool = True,
    resolver: Resolver | None = None,
    trusted: Iterable[tuple[str, int]] = (),
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for webhook delivery whose every connection is vetted.

    Redirects are not followed (a 3xx is a failed delivery) and proxy settings from the
    environment are ignored, so no request can leave through a path the checks do not see.
    ``verify`` is passed to ``httpx.create_ssl_context`` (tests pass an ``ssl.SSLContext``).
    """
    backend = VettedNetworkBackend(allow_private=allow_private, resolver=resolver, trusted=trusted)
    return httpx.AsyncClient(
        transport=_VettedTransport(backend=backend, verify=verify),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )
