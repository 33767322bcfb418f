"""The lean HTTP/1.1 client (adapters/http1.py) against raw asyncio servers
that answer exactly as each test scripts them: framing, keep-alive, limits,
failures, TLS and a CONNECT proxy."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme

from adapters import http1

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
Reader, Writer = asyncio.StreamReader, asyncio.StreamWriter
Serve = Callable[..., Awaitable["Server"]]
Pools = Callable[..., http1.Pool]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@dataclass
class Server:
    """Each connection runs `script`; `heads` keeps every request head read."""

    script: Script
    ssl: ssl.SSLContext | None = None
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self.script(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return await reader.readexactly(length)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


def answering(*answers: bytes, then_close: bool = False) -> Script:
    """Answer each request on a connection with the next of `answers` (the last repeats)."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        for i in range(1000):
            await server.read_request(reader)
            writer.write(answers[min(i, len(answers) - 1)])
            await writer.drain()
            if then_close:
                return

    return script


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    started: list[Server] = []

    async def start(script: Script, tls: ssl.SSLContext | None = None) -> Server:
        server = await Server(script, tls).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., http1.Pool]]:
    made: list[http1.Pool] = []

    def make(url: str, **options: object) -> http1.Pool:
        pool = http1.Pool(url, **options)  # type: ignore[arg-type]
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.aclose()


async def post(pool: http1.Pool, body: bytes = b"{}", **limits: float) -> tuple[int, bytes]:
    async with await pool.request("POST", "/v1/x", body, {"X-Key": "k"}, **limits) as reply:
        return reply.status, await reply.read()


async def test_requests_reuse_one_keep_alive_connection(serve: Serve, pools: Pools) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url)
    for _ in range(3):
        assert await post(pool, b'{"a": 1}') == (200, b"hello")
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/x HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "X-Key: k\r\n" in head and "Content-Length: 8\r\n" in head
    assert "Accept-Encoding: identity\r\n" in head


async def test_chunked_and_read_to_the_end_bodies(serve: Serve, pools: Pools) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    until_eof = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    server = await serve(answering(chunked))
    assert await post(pools(server.url)) == (200, b"abcde")
    server = await serve(answering(until_eof, then_close=True))
    pool = pools(server.url)
    assert await post(pool) == (200, b"all of it")
    assert await post(pool) == (200, b"all of it")  # a new connection: that one ended
    assert server.connections == 2


async def test_an_answer_that_says_close_does_not_go_back_to_the_pool(
    serve: Serve, pools: Pools
) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(closing)
        await writer.drain()
        await asyncio.sleep(1)  # it closes late: a client that reused it would wait here

    server = await serve(script)
    pool = pools(server.url)
    assert await post(pool) == (200, b"hello")
    assert await post(pool, read_timeout=0.5) == (200, b"hello")
    assert server.connections == 2


async def test_interim_answers_are_skipped_and_headers_kept(serve: Serve, pools: Pools) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-A: 1\r\nx-a: 2\r\n"
        b"Content-Length: 2\r\n\r\nno"
    )
    server = await serve(answering(answer))
    pool = pools(server.url)
    async with await pool.request("POST", "/", b"", {}) as reply:
        assert reply.status == 429
        assert reply.headers["retry-after"] == "7" and reply.headers["x-a"] == "1, 2"
        assert "link" not in reply.headers
        assert await reply.read() == b"no"


async def test_a_body_is_read_as_it_arrives(serve: Serve, pools: Pools) -> None:
    release = asyncio.Event()

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await serve(script)
    async with await pools(server.url).request("POST", "/", b"", {}) as reply:
        pieces = reply.chunks()
        assert await anext(pieces) == b"first"  # before the server sends the rest
        release.set()
        assert [p async for p in pieces] == [b"second"]


async def test_a_body_cut_short_yields_what_came_then_fails(serve: Serve, pools: Pools) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
    server = await serve(answering(answer, then_close=True))
    async with await pools(server.url).request("POST", "/", b"", {}) as reply:
        got = []
        with pytest.raises(http1.Disconnected):
            async for piece in reply.chunks():
                got.append(piece)
        assert got == [b"partial"]


async def test_a_malformed_answer_is_disconnected(serve: Serve, pools: Pools) -> None:
    server = await serve(answering(b"SPDY/9 nonsense\r\n\r\n"))
    with pytest.raises(http1.Disconnected, match="malformed"):
        await post(pools(server.url))


async def test_nothing_listening_is_disconnected(pools: Pools) -> None:
    with pytest.raises(http1.Disconnected, match="could not connect"):
        await post(pools("http://127.0.0.1:9"))


async def test_the_deadline_bounds_the_wait_and_drops_its_connection(
    serve: Serve, pools: Pools
) -> None:
    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            await asyncio.sleep(5)  # the first connection never answers in time
        writer.write(OK)
        await writer.drain()
        await reader.read()

    server = await serve(script)
    pool = pools(server.url)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await post(pool, deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 2
    assert await post(pool, read_timeout=2) == (200, b"hello")
    assert server.connections == 2  # the timed-out exchange's connection was not reused


async def test_the_deadline_also_ends_a_body_read_slower_than_it_comes(
    serve: Serve, pools: Pools
) -> None:
    """A reader slower than the upstream always finds data waiting, so it
    never waits: the deadline must still end it."""

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(400):
            writer.write(b"1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        await reader.read()

    server = await serve(script)
    started = time.monotonic()
    deadline = started + 0.3
    async with await pools(server.url).request("POST", "/", b"", {}, deadline=deadline) as reply:
        with pytest.raises(TimeoutError):
            async for _ in reply.chunks():
                await asyncio.sleep(0.02)  # slower than the 5 ms the upstream takes
    assert time.monotonic() - started < 1.0  # not the 2 s the whole body takes


async def test_read_timeout_bounds_each_wait_for_the_body(serve: Serve, pools: Pools) -> None:
    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    server = await serve(script)
    async with await pools(server.url).request("POST", "/", b"", {}, read_timeout=0.2) as reply:
        with pytest.raises(TimeoutError):
            await reply.read()


async def test_leaving_a_reply_early_closes_its_connection(serve: Serve, pools: Pools) -> None:
    long = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(long if server.connections == 1 else OK)
        await writer.drain()
        await server.read_request(reader)  # the first connection: closed before this

    server = await serve(script)
    pool = pools(server.url)
    async with await pool.request("POST", "/", b"", {}) as reply:
        assert reply.status == 200
    assert await post(pool) == (200, b"hello")
    assert server.connections == 2


async def test_the_pool_holds_callers_beyond_its_size(serve: Serve, pools: Pools) -> None:
    gate = asyncio.Event()

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        while True:
            await server.read_request(reader)
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    server = await serve(script)
    pool = pools(server.url, max_connections=1)
    first = asyncio.create_task(post(pool))
    second = asyncio.create_task(post(pool))
    await asyncio.sleep(0.1)
    with pytest.raises(TimeoutError):  # a third gives up at its deadline, still waiting
        await post(pool, deadline=time.monotonic() + 0.1)
    assert len(server.heads) == 1  # the second waits for the only connection
    gate.set()
    assert await first == await second == (200, b"hello")
    assert server.connections == 1


async def test_an_idle_connection_past_keepalive_is_not_reused(serve: Serve, pools: Pools) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url, keepalive_s=0.05)
    await post(pool)
    await asyncio.sleep(0.1)
    await post(pool)
    assert server.connections == 2


async def test_a_connection_the_server_closed_is_not_reused(serve: Serve, pools: Pools) -> None:
    server = await serve(answering(OK, then_close=True))
    pool = pools(server.url)
    await post(pool)
    await asyncio.sleep(0.05)  # the close reaches the client
    assert await post(pool) == (200, b"hello")
    assert server.connections == 2


async def test_a_large_body_arrives_whole_through_backpressure(serve: Serve, pools: Pools) -> None:
    size = 5 * (1 << 20)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    server = await serve(answering(answer))
    async with await pools(server.url).request("POST", "/", b"y" * 200_000, {}) as reply:
        body = b""
        async for piece in reply.chunks():
            body += piece
            await asyncio.sleep(0)  # a slow reader
    assert len(body) == size


async def test_a_header_with_a_line_break_is_refused(pools: Pools) -> None:
    pool = pools("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="line break"):
        await pool.request("POST", "/", b"", {"X-A": "1\r\nX-Injected: 2"})


def test_only_http_urls_and_http_proxies() -> None:
    with pytest.raises(ValueError, match="not an http"):
        http1.Pool("ftp://example.com")
    with pytest.raises(ValueError, match="https:// proxies"):
        http1.Pool("https://example.com", proxy=http1.Proxy("https://proxy:3128"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_verifies_the_upstream(serve: Serve, pools: Pools, ca: trustme.CA) -> None:
    server = await serve(answering(OK), tls_server(ca))
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    assert await post(pools(server.url, ssl_context=trusting)) == (200, b"hello")
    with pytest.raises(http1.Disconnected, match="CERTIFICATE_VERIFY_FAILED"):
        await post(pools(server.url, ssl_context=ssl.create_default_context()))


async def test_https_through_a_connect_proxy(serve: Serve, pools: Pools, ca: trustme.CA) -> None:
    upstream = await serve(answering(OK), tls_server(ca))
    tunnels: list[bytes] = []

    async def proxy(reader: Reader, writer: Writer, server: Server) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.append(head)
        if b"Proxy-Authorization: Basic " + base64.b64encode(b"u:p w") not in head:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            return
        to_reader, to_writer = await asyncio.open_connection("127.0.0.1", upstream.port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, to_writer), pipe(to_reader, writer))
        finally:
            to_writer.close()

    via = await serve(proxy)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    good = http1.Proxy(f"http://u:p%20w@127.0.0.1:{via.port}")
    pool = pools(upstream.url, ssl_context=trusting, proxy=good)
    assert await post(pool) == (200, b"hello")
    assert await post(pool) == (200, b"hello")  # through the same tunnel
    assert tunnels[0].startswith(f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1".encode())
    assert len(tunnels) == 1 and upstream.connections == 1
    anonymous = http1.Proxy(f"http://127.0.0.1:{via.port}")
    refused = pools(upstream.url, ssl_context=trusting, proxy=anonymous)
    with pytest.raises(http1.Disconnected, match="HTTP 407"):
        await post(refused)
    given = http1.Proxy(f"http://127.0.0.1:{via.port}", auth=("u", "p w"))  # as httpx2 hands it
    assert await post(pools(upstream.url, ssl_context=trusting, proxy=given)) == (200, b"hello")


async def test_a_failed_connect_frees_its_slot_for_a_waiting_caller(pools: Pools) -> None:
    pool = pools("http://127.0.0.1:9", max_connections=1)  # nothing listens there
    started = time.monotonic()
    results = await asyncio.gather(
        *(post(pool, deadline=time.monotonic() + 3) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, http1.Disconnected) for r in results), results
    assert time.monotonic() - started < 1.5  # the second did not sit out its deadline


async def test_a_body_to_the_end_cut_by_a_reset_is_not_complete(serve: Serve, pools: Pools) -> None:
    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart")
        await writer.drain()
        await asyncio.sleep(0.05)
        linger = struct.pack("ii", 1, 0)  # close with a reset, not a clean FIN
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    server = await serve(script)
    async with await pools(server.url).request("POST", "/", b"", {}) as reply:
        with pytest.raises(http1.Disconnected):
            await reply.read()


async def test_bodiless_answers_keep_the_connection(serve: Serve, pools: Pools) -> None:
    server = await serve(answering(b"HTTP/1.1 204 No Content\r\n\r\n"))
    pool = pools(server.url)
    for _ in range(3):
        assert await post(pool) == (204, b"")
    assert server.connections == 1


async def test_a_compressed_answer_is_refused(serve: Serve, pools: Pools) -> None:
    gzipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"
    server = await serve(answering(gzipped))
    with pytest.raises(http1.Disconnected, match="gzip"):
        await post(pools(server.url))


async def test_head_and_non_latin1_headers_are_refused(pools: Pools) -> None:
    pool = pools("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="HEAD"):
        await pool.request("HEAD", "/", b"", {})
    with pytest.raises(ValueError, match="Latin-1"):
        await pool.request("POST", "/", b"", {"X-A": "日本"})


async def test_callers_waiting_on_a_closed_pool_fail(serve: Serve, pools: Pools) -> None:
    gate = asyncio.Event()

    async def script(reader: Reader, writer: Writer, server: Server) -> None:
        await server.read_request(reader)
        await gate.wait()

    server = await serve(script)
    pool = pools(server.url, max_connections=1)
    first = asyncio.create_task(post(pool))
    waiting = asyncio.create_task(post(pool))
    await asyncio.sleep(0.1)
    await pool.aclose()
    for task in (first, waiting):
        with pytest.raises(http1.Disconnected):
            await asyncio.wait_for(task, 2)
    gate.set()
