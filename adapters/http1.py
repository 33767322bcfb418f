"""A lean HTTP/1.1 client for the adapters' hot path: one upstream, pooled
keep-alive connections, answers parsed by httptools (the C parser uvicorn
runs), bodies as bytes.

Why not aiohttp there: on the same request to the same local server, an
aiohttp session cost 278-295 µs of client CPU per call and this client
104-106 µs (`python -m bench.http_client`; bench/RESULTS.md, issue 24):
aiohttp builds a request, a response, a stream reader, timers and trace
hooks per call, and the gateway's whole overhead is a few hundred
microseconds.

What it does: a request with a byte body and the given headers; answers with
Content-Length, chunked, or read to the connection's end; keep-alive reuse
(most recently used first), idle connections dropped after `keepalive_s`; at
most `max_connections` open, callers beyond that wait (bounded by their
deadline); TLS; an http:// proxy (absolute-form requests for http:// targets,
a CONNECT tunnel for https:// ones); limits as TimeoutError; a connection
that fails, or ends before the whole answer, as `Disconnected`. Nothing is
retried here: a POST may have reached the upstream, so the router decides.

What it does not do: redirects, compressed answers (it asks for identity and
refuses others), HEAD, HTTP/2, cookies, streamed request bodies, https://
proxies.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools

# Past this much unread body the socket stops being read until the reader catches up.
_READ_HIGH = 1 << 20


class Disconnected(ConnectionError):
    """The connection failed, or ended before the whole answer came."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An http:// proxy: its URL, headers for it, and credentials (`auth`, or
    the URL's own), sent as Proxy-Authorization."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class _Place:
    host: str
    port: int
    tls: bool

    @classmethod
    def of(cls, url: str) -> _Place:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls)

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        """What the Host header says: the port only where it is not the default."""
        default = 443 if self.tls else 80
        return self.hostport if self.port != default else self.hostport.rsplit(":", 1)[0]


class _Connection(asyncio.Protocol):
    """One socket and its parser; one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None  # the reader waits on it
        self.status = 0  # 0 until the answer's head is in
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.complete = False
        self.until_eof = False  # no length, not chunked: the body ends with the connection
        self.keep_alive = False  # the answer lets the connection serve another request
        self.failed: Exception | None = None
        self.closed = False
        self.interim = False
        self.idle_since = 0.0

    def send(self, data: bytes) -> None:
        self.expect_answer()
        assert self.transport is not None
        self.transport.write(data)

    def expect_answer(self) -> None:
        """Forget the last answer: what the parser says next is a new one."""
        self.status, self.headers, self.complete, self.failed = 0, {}, False, None
        self.body, self.buffered, self.until_eof = [], 0, False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"a malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if self.status and self.until_eof and exc is None:  # a clean close ends it
                self.on_message_complete()
            else:
                reason = f": {exc}" if exc else ""
                self._fail(Disconnected(f"the upstream closed the connection{reason}"))
        self.pool._lost(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        seen = self.headers.get(key)
        self.headers[key] = text if seen is None else f"{seen}, {text}"

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.interim = status < 200
        if self.interim:  # 100 Continue, 103 Early Hints: the real answer follows
            self.headers = {}
            return
        self.status = status
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        bodiless = status in (204, 304)
        self.until_eof = not (chunked or bodiless or "content-length" in self.headers)
        coding = self.headers.get("content-encoding", "identity").lower()
        if coding != "identity":
            self._fail(Disconnected(f"a compressed answer ({coding}); identity was asked for"))
            self.close()
            return
        self.keep_alive = self.parser.should_keep_alive()  # Connection: close, HTTP/1.0
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self.failed is not None:  # refused at its head: the rest is not read
            return
        self.body.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.failed is not None:
            return
        self.complete = True
        self._wake()

    # the reader's side
    def take(self) -> bytes:
        data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, limit_at: float | None) -> None:
        """Until the parser has news (or the connection failed), at most until
        `limit_at` (loop time): then TimeoutError."""
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = None if limit_at is None else loop.call_at(limit_at, _expire, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: a timeout that lost the race to a cancel

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.failed = self.failed or exc
        self._wake()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Reply:
    """An answer whose head is in: `status`, `headers` (lower-case names), then
    the body by `read()` or `chunks()`. Leaving `async with` (or `close()`)
    before the body's end closes the connection; after it, the connection
    goes back to the pool."""

    def __init__(
        self, pool: Pool, conn: _Connection, deadline: float | None, read_timeout: float | None
    ) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._pool, self._conn = pool, conn
        self._deadline, self._read_timeout = deadline, read_timeout
        self._done = False

    async def read(self) -> bytes:
        return b"".join([data async for data in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received since the last read, at
        once. Past the deadline it raises TimeoutError, also when the body is
        there already (a reader slower than the upstream never waits)."""
        conn = self._conn
        while True:
            if conn.body:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    raise TimeoutError("the deadline passed while the body was read")
                yield conn.take()
            elif conn.complete:
                break
            elif conn.failed is not None:
                raise conn.failed
            else:
                await conn.wait(self._pool._limit(self._deadline, self._read_timeout))
        self.close()

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        reusable = conn.keep_alive and not conn.until_eof and conn.failed is None
        if conn.complete and not conn.body and reusable:
            self._pool._release(conn)
        else:
            conn.close()

    async def __aenter__(self) -> Reply:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Pool:
    """Keep-alive connections to the upstream at `url` (scheme, host, port;
    requests name their own path)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        keepalive_s: float = 4.0,
        connect_timeout_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self.place = _Place.of(url)
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self._ssl = (ssl_context or ssl.create_default_context()) if self.place.tls else None
        self._proxy = _Place.of(proxy.url) if proxy else None
        if self._proxy is not None and self._proxy.tls:
            raise ValueError("https:// proxies are not supported; use an http:// proxy")
        self._proxy_headers = dict(proxy.headers) if proxy else {}
        if proxy is not None:
            parts = urlsplit(proxy.url)
            auth = proxy.auth
            if auth is None and parts.username is not None:
                auth = (unquote(parts.username), unquote(parts.password or ""))
            if auth is not None:
                basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                self._proxy_headers.setdefault("Proxy-Authorization", f"Basic {basic}")
        # http:// through a proxy: absolute-form targets and the proxy's headers on each request
        self._absolute = self._proxy is not None and not self.place.tls
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closing = False

    async def request(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        deadline: float | None = None,
        read_timeout: float | None = None,
    ) -> Reply:
        """Send the request and wait for the answer's head. `deadline`
        (time.monotonic()) bounds the whole exchange, body included;
        `read_timeout` each wait for more of the answer (and the connect)."""
        if method == "HEAD":  # the parser cannot tell a HEAD answer has no body
            raise ValueError("HEAD requests are not supported")
        head = self._head(method, path, len(body), headers)
        conn = await self._acquire(self._limit(deadline, read_timeout))
        try:
            conn.send(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                assert conn.transport is not None
                conn.transport.write(body)
            while not conn.status:
                if conn.failed is not None:
                    raise conn.failed
                await conn.wait(self._limit(deadline, read_timeout))
            if conn.failed is not None and not conn.complete:
                raise conn.failed
        except BaseException:
            conn.close()
            raise
        return Reply(self, conn, deadline, read_timeout)

    def _head(self, method: str, path: str, length: int, headers: Mapping[str, str]) -> bytes:
        place = self.place
        target = f"http://{place.authority}{path}" if self._absolute else path
        lines = [f"{method} {target} HTTP/1.1", f"Host: {place.authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self._absolute:
            lines += [f"{name}: {value}" for name, value in self._proxy_headers.items()]
        if any("\n" in line or "\r" in line for line in lines):
            raise ValueError("a header name or value holds a line break")
        lines += ["Accept-Encoding: identity", f"Content-Length: {length}", "", ""]
        try:
            return "\r\n".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("a header name or value is not Latin-1 text") from None

    def _limit(self, deadline: float | None, read_timeout: float | None) -> float | None:
        """The loop time at which the next wait gives up."""
        if deadline is None and read_timeout is None:
            return None
        left = min(
            deadline - time.monotonic() if deadline is not None else float("inf"),
            read_timeout if read_timeout is not None else float("inf"),
        )
        return asyncio.get_running_loop().time() + left

    async def _acquire(self, limit_at: float | None) -> _Connection:
        while True:
            if self._closing:
                raise Disconnected("the client is closed")
            conn = self._reuse()
            if conn is not None:
                return conn
            if len(self._open) + self._connecting < self.max_connections:
                return await self._connect(limit_at)
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            timer = None if limit_at is None else loop.call_at(limit_at, _expire, waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()  # woken, but leaving: pass the turn on
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.failed is not None:
                continue
            if conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.close()
                continue
            return conn
        return None

    async def _connect(self, limit_at: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait = self.connect_timeout_s if limit_at is None else min(
            self.connect_timeout_s, limit_at - now
        )  # fmt: skip
        place, first = self.place, self._proxy or self.place
        self._connecting += 1
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(max(wait, 0)):
                tunnel = self._proxy is not None and place.tls
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), first.host, first.port,
                    ssl=None if tunnel or self._proxy else self._ssl,
                    server_hostname=None if tunnel or self._proxy or not place.tls else place.host,
                )  # fmt: skip
                if tunnel:
                    await self._tunnel(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._connecting -= 1
            self._wake_one()  # the slot this connect held is free again
            if isinstance(exc, OSError):
                raise Disconnected(f"could not connect to {first.authority}: {exc}") from exc
            raise
        self._connecting -= 1
        if self._closing:
            conn.close()
            raise Disconnected("the client is closed")
        self._open.add(conn)
        return conn

    async def _tunnel(self, conn: _Connection) -> None:
        """CONNECT through the proxy, then TLS to the upstream inside it."""
        target = self.place.hostport
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        lines += [f"{name}: {value}" for name, value in self._proxy_headers.items()]
        conn.send(("\r\n".join([*lines, "", ""])).encode("latin-1"))
        while not conn.status:
            if conn.failed is not None:
                raise conn.failed
            await conn.wait(None)
        if conn.status != 200:
            raise Disconnected(f"the proxy refused the tunnel: HTTP {conn.status}")
        conn.parser = httptools.HttpResponseParser(conn)  # the next bytes are the upstream's
        conn.expect_answer()
        loop = asyncio.get_running_loop()
        assert conn.transport is not None and self._ssl is not None
        tls = await loop.start_tls(conn.transport, conn, self._ssl, server_hostname=self.place.host)
        conn.transport = cast(asyncio.Transport, tls)

    def _release(self, conn: _Connection) -> None:
        if self._closing or conn.closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._wake_one()

    def _lost(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Close every connection; requests after this fail with Disconnected."""
        self._closing = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        for waiter in self._waiters:  # each wakes, sees the pool closed, and fails
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports finish closing
