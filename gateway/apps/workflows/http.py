"""The HTTP client of `http_request` nodes, guarded against SSRF.

Only http and https URLs. Every address a host resolves to is checked when the
connection is made (a resolver wrapped around aiohttp's), so neither a DNS
answer that changes between check and use nor a redirect reaches what the
check refuses: loopback, private (RFC 1918, fc00::/7), link-local (the cloud
metadata address 169.254.169.254 among them), unspecified, multicast, reserved
and other non-public addresses, and IPv6 forms that embed one (::ffff:a.b.c.d,
64:ff9b::/96, 2002::/16). Literal IP hosts, which aiohttp does not resolve, are
checked on every hop. `allow_private` lifts the check; `allowed_networks`
(CIDRs) lifts it for the addresses inside them.

Redirects are followed here (at most 5), each hop checked; one to another
origin drops the caller's headers, which may carry secrets. Cookies are never
kept. The body is read in chunks and refused once past `max_bytes`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.apps.workflows.nodes.base import NodeFailed

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 << 10
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class Guard:
    """Which addresses may be reached."""

    def __init__(self, allow_private: bool, allowed_networks: Sequence[str]) -> None:
        self.allow_private = allow_private
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def check(self, host: str, address: str) -> None:
        """NodeFailed when `address` (what `host` resolved to) may not be reached."""
        if self.allow_private:
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        inner = _embedded(ip)
        if any(a in n for a in (ip, inner) if a is not None for n in self.networks):
            return
        why = _kind(inner) if inner is not None else None
        why = why or _kind(ip)
        if why is None:
            return
        where = f"{address} is" if host == address else f"{host} resolves to {address},"
        raise NodeFailed(
            f"http_request: {where} {why} address; set apps.workflows.http_allow_private "
            "(or list its network in apps.workflows.http_allowed_networks) to allow it"
        )


def _embedded(ip: IP) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _kind(ip: IP) -> str | None:
    """Why `ip` is refused ("a loopback", ...), or None for a public address."""
    for refused, why in (
        (ip.is_unspecified, "an unspecified"),
        (ip.is_loopback, "a loopback"),
        (ip.is_link_local, "a link-local"),
        (ip.is_multicast, "a multicast"),
        (ip.is_reserved, "a reserved"),
        (ip.is_private, "a private"),
        (not ip.is_global, "a non-public"),
    ):
        if refused:
            return why
    return None


class _GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then refuses the host when any address is refused."""

    def __init__(self, guard: Guard, inner: AbstractResolver) -> None:
        self._guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            self._guard.check(host, result["host"])
        return found

    async def close(self) -> None:
        await self._inner.close()


class GuardedHttp:
    """`HttpClient` over one shared aiohttp session (made on first use).

    `max_timeout_s` and `max_response_bytes` cap what a request asks for;
    `resolver` replaces aiohttp's default one (tests)."""

    def __init__(
        self,
        allow_private: bool = False,
        allowed_networks: Sequence[str] = (),
        *,
        max_timeout_s: float = 30,
        max_response_bytes: int = 1 << 20,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._guard = Guard(allow_private, allowed_networks)
        self._max_timeout_s = max_timeout_s
        self._max_bytes = max_response_bytes
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = _GuardedResolver(self._guard, self._resolver or aiohttp.DefaultResolver())
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # request() bounds each call
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
        timeout_s: float, max_bytes: int,
    ) -> tuple[int, Mapping[str, str], bytes]:  # fmt: skip
        """(status, headers, body); NodeFailed for a refused address, a body past
        `max_bytes`, a timeout or a failed connection."""
        timeout_s = min(timeout_s, self._max_timeout_s)
        max_bytes = min(max_bytes, self._max_bytes)
        target = self._vet(url)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._follow(method, target, dict(headers), body, max_bytes)
        except TimeoutError:
            raise NodeFailed(
                f"http_request: {method} {target.host} timed out after {timeout_s:g} s"
            ) from None
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: e.g. a bad header
            raise NodeFailed(f"http_request: {method} {target.host}: {exc}") from None

    def _vet(self, url: str | URL) -> URL:
        """`url` parsed, its scheme checked, and its host when an IP literal."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise NodeFailed(f"http_request: not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise NodeFailed(
                f"http_request: only http and https URLs, got {parsed.scheme or 'none'!r}"
            )
        host = parsed.host
        if not host:
            raise NodeFailed("http_request: the URL has no host")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return parsed  # a name: checked when resolved
        self._guard.check(host, host)
        return parsed

    async def _follow(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None, max_bytes: int
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = self._client()
        for hop in range(MAX_REDIRECTS + 1):
            async with session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status not in _REDIRECTS or location is None:
                    return resp.status, _headers(resp), await _read(resp, max_bytes)
            if hop == MAX_REDIRECTS:
                break
            target = self._vet(url.join(URL(location)))
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
            if target.origin() != url.origin():
                headers = {}
            url = target
        raise NodeFailed(f"http_request: more than {MAX_REDIRECTS} redirects")


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """The response's headers, names in lower case, repeated ones joined by ", "."""
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def _read(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_big = NodeFailed(f"http_request: the response is larger than {max_bytes} bytes")
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)
