"""JSON responses in the shim's two shapes (a message and a google.rpc.Status),
and the streamed response every streaming route sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.rest.call import CallError
from gateway.rest.status import HTTP_STATUS, response_headers, status_json


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # a lone surrogate echoed from the request, a huge integer
            return json.dumps(content, separators=(",", ":")).encode()  # escapes them


def error_response(exc: CallError) -> Response:
    """A failed call: grpc-gateway's HTTP status, the Status body, its metadata as headers."""
    headers: dict[str, str] = {}
    if exc.context is not None:
        _, headers = response_headers(exc.context.initial_metadata, exc.context.trailing)
    status = HTTP_STATUS.get(exc.code, 500)
    return JSONResponse(status_json(exc.code, exc.message), status, headers)


class Streamed(Response):
    """A body sent as `body` yields it (SSE, NDJSON), from the request's own
    task. When the client goes away the body is cancelled (its generator's
    `finally` closes the call, so the upstream sees the disconnect) and the
    response ends quietly. Starlette's StreamingResponse does the same in an
    anyio task group on servers that speak ASGI 2.3 (uvicorn); here one plain
    task waits for the disconnect, which cost less per stream
    (bench/RESULTS.md, issue 24)."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.body_iterator = body  # no `body` attribute: no Content-Length header
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        state = {"ended": False, "gone": False}

        async def watch() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # no disconnect to watch for: the body goes on
                return
            if not state["ended"]:  # uvicorn also says disconnect once the response is whole
                state["gone"] = True
                sender.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state["ended"] = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            sender.uncancel()  # the client went away: nothing is left to send to
        finally:
            state["ended"] = True
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
