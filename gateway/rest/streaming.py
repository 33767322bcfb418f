"""Server-streaming RPCs over HTTP: newline-delimited JSON (`{"result": ...}` per
message, a final `{"error": <google.rpc.Status>}` on failure) or, when the
client accepts text/event-stream, Server-Sent Events (`event: error` last).

The response waits for the first message: a call that fails before it gets
the mapped HTTP status, like a unary one; after it, the status is 200 and the
failure is the last frame, never a silent clean end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import Response

from gateway.rest.call import STARTED, CallError
from gateway.rest.context import RestContext
from gateway.rest.responses import Streamed, error_response
from gateway.rest.status import response_headers, status_json


def _ndjson(key: str, value: Any) -> bytes:
    return orjson.dumps({key: value}) + b"\n"


def _sse(key: str, value: Any) -> bytes:
    data = orjson.dumps({key: value} if key == "result" else value)
    return (b"data: " if key == "result" else b"event: error\ndata: ") + data + b"\n\n"


async def stream_response(
    batches: AsyncIterator[list[Any]],
    context: RestContext,
    encode: Callable[[Any], Any],
    accept: str,
) -> Response:
    """The HTTP response for a server-streaming call's messages (in batches of
    those ready at once: one write each)."""
    try:
        first: list[Any] = await anext(batches, [])
    except CallError as exc:
        return error_response(exc)
    sse = "text/event-stream" in accept
    frame = _sse if sse else _ndjson
    status, headers = response_headers(context.initial_metadata, ())

    async def body() -> AsyncIterator[bytes]:
        batch = first
        try:
            if batch is STARTED:  # headers before the first message: it comes next
                batch = await anext(batches, [])
            while batch:
                yield b"".join(frame("result", encode(message)) for message in batch)
                batch = await anext(batches, [])
        except CallError as exc:
            yield frame("error", status_json(exc.code, exc.message))
        finally:
            with contextlib.suppress(CallError):
                await batches.aclose()  # type: ignore[attr-defined]

    media = "text/event-stream" if sse else "application/x-ndjson"
    headers["cache-control"] = "no-cache"
    return Streamed(body(), status or 200, headers, media_type=media)
