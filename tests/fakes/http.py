"""A small HTTP/1.1 server on asyncio's Protocol API, for the vendor fakes.

Keep-alive, Content-Length request bodies, JSON replies and chunked SSE
streams. When the client drops a connection while its response is still
being produced, the handler is cancelled and `Observed.disconnected()` runs,
so tests can see that cancelling a call really closed the upstream request.
Plain asyncio (no framework) keeps the fake far cheaper than the SDK clients
it serves, so it never dominates a benchmark.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from tests.fakes.script import Observed, Script

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 422: "Unprocessable Entity", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    529: "Site Overloaded",
}  # fmt: skip


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Reply:
    """Writes one response on the connection."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._head(status, {"content-type": "application/json", **(headers or {})}, len(data))
        self._transport.write(data)

    def start_stream(self, headers: dict[str, str] | None = None) -> None:
        self._head(200, {"content-type": "text/event-stream", **(headers or {})}, None)

    def send(self, data: bytes) -> None:
        """One chunk of a streamed body."""
        self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        self._transport.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Drop the connection mid-response, as a crashed upstream would."""
        self._transport.abort()

    def _head(self, status: int, headers: dict[str, str], length: int | None) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(
            f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
        )
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())


Handler = Callable[[HttpRequest, Reply], Awaitable[None]]
log = logging.getLogger("tests.fakes")


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._busy is None:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._transport is not None
        self._server.connections.discard(self._transport)
        if self._busy is not None and not self._busy.done():
            self._busy.cancel()
            self._server.observed.disconnected()

    def _next(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        method, path, _ = head[0].split(" ", 2)
        assert self._transport is not None
        request = HttpRequest(method, path, headers, body)
        self._busy = asyncio.get_running_loop().create_task(
            self._server.handler(request, Reply(self._transport))
        )
        self._busy.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        error = None if task.cancelled() else task.exception()
        if error is not None:  # a bug in the fake: say so, rather than leave a puzzle
            log.error("fake handler failed", exc_info=error)
            assert self._transport is not None
            self._transport.abort()
            return
        if self._buffer:
            self._next()


class HttpServer:
    """Serves `handler` on 127.0.0.1; `url` is set once started."""

    def __init__(self, handler: Handler, observed: Observed) -> None:
        self.handler = handler
        self.observed = observed
        self.connections: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> HttpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        bound = self._server.sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in list(self.connections):
                transport.abort()
            await self._server.wait_closed()
            await asyncio.sleep(0)  # let connection_lost callbacks run


async def received(request: HttpRequest, script: Script, observed: Observed) -> Any:
    """What an HTTP fake does first with every request: record it as seen (path,
    headers, body), then wait the scripted delay. The request's JSON body."""
    body = request.json()
    observed.called(f"{request.method} {request.path}", request.headers, body, request.body)
    if script.delay_s:
        await asyncio.sleep(script.delay_s)
    return body


def run_from_cli(server: HttpServer, path: str, port: int, use_uvloop: bool) -> None:
    """Serve a fake as its own process (benches do) until it is killed, after
    printing "listening on BASE_URL" (the server's URL and `path`). It keeps
    nothing of what it sees: no test reads it, and its heap stays flat."""
    server.observed.keep = False

    async def serve() -> None:
        await server.start(port=port)
        print(f"listening on {server.url}{path}", flush=True)
        await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())
