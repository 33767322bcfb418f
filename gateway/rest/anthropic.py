"""The Anthropic Messages API: POST /v1/messages, JSON or streamed as Anthropic
streams it (message_start, content_block_start, ping, content_block_delta...,
content_block_stop, message_delta, message_stop; an `error` event on failure).

The caller's `x-api-key` becomes `authorization: Bearer <key>` metadata when no
Authorization header is sent, so the gateway's auth sees it as on gRPC.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.pb import router_pb2 as pb
from gateway.rest import compat
from gateway.rest.call import STARTED, CallError
from gateway.rest.compat import STOP_REASONS, CompatError, bad, number, text_of
from gateway.rest.methods import GENERATE
from gateway.rest.responses import JSONResponse, Streamed
from gateway.rest.shim import Shim
from gateway.rest.status import response_headers

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(_error_body(status, message), status, headers)


def _call_error(exc: CallError) -> Response:
    status, headers = compat.failed_call(exc)
    return _error(status, exc.message, headers)


def _message(i: int, raw: Any) -> pb.Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
        raise bad(f"{where}: must be an object with role user or assistant")
    content = raw.get("content")
    if isinstance(content, list):
        kinds = {str(part.get("type")) for part in content if isinstance(part, dict)}
        if kinds - {"text"}:
            raise bad(f"{where}.content: only text blocks are supported, got {sorted(kinds)}")
    return pb.Message(role=raw["role"], content=text_of(content, f"{where}.content"))


def generate_request(body: dict[str, Any]) -> pb.GenerateRequest:
    """An Anthropic Messages request as the gateway's GenerateRequest."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise bad("model: required")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: required, a non-empty list")
    max_tokens = number(body, "max_tokens", int)
    if max_tokens is None:
        raise bad("max_tokens: required")
    params = pb.GenerationParams(max_tokens=max_tokens)
    if (value := number(body, "temperature")) is not None:
        # As given: the anthropic adapter passes 0..1 through unchanged.
        params.temperature = value
    if (value := number(body, "top_p")) is not None:
        params.top_p = value
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop_sequences: must be a list of strings")
    params.stop.extend(stops)
    turns = [_message(i, m) for i, m in enumerate(messages)]
    system = text_of(body.get("system"), "system")
    if system:
        turns.insert(0, pb.Message(role="system", content=system))
    return pb.GenerateRequest(model=model, messages=turns, params=params)


def _usage(usage: pb.Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


async def messages(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    key = request.headers.get("x-api-key")
    bearer = key and "authorization" not in request.headers
    extra = (("authorization", f"Bearer {key}"),) if bearer else ()
    try:
        body = await compat.json_body(shim, request)
        message = generate_request(body)
        ctx = compat.context(shim, request, extra)
    except CompatError as exc:
        return _error(exc.status, exc.message)
    if body.get("stream"):
        return await _stream(shim, message, ctx)
    try:
        reply = await compat.call(shim, GENERATE, message, ctx)
    except CallError as exc:
        return _call_error(exc)
    _, headers = response_headers(ctx.initial_metadata, ctx.trailing)
    return JSONResponse(
        {
            "id": "msg_" + (reply.id or secrets.token_hex(12)),
            "type": "message",
            "role": "assistant",
            "model": message.model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": STOP_REASONS.get(reply.finish_reason, "end_turn"),
            "stop_sequence": None,
            "usage": _usage(reply.usage),
        },
        headers=headers,
    )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    payload = orjson.dumps({"type": kind, **data})
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


async def _stream(shim: Shim, message: pb.GenerateRequest, ctx: Any) -> Response:
    batches = compat.batches(shim, message, ctx)
    try:
        first: list[Any] = await anext(batches, [])
    except CallError as exc:
        return _call_error(exc)
    start: dict[str, Any] = {
        "id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant",
        "content": [], "model": message.model, "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }  # fmt: skip
    # A text delta event is two constant halves around the JSON string.
    head, tail = _event("content_block_delta", {"index": 0, "delta": {
        "type": "text_delta", "text": "\x00"}}).split(b'"\\u0000"')  # fmt: skip

    async def events() -> AsyncIterator[bytes]:
        last, batch = pb.GenerateChunk(), first
        block = {"type": "text", "text": ""}
        out = _event("message_start", {"message": start})
        out += _event("content_block_start", {"index": 0, "content_block": block})
        out += _event("ping", {})
        try:
            if batch is STARTED:  # the upstream answered, no token yet: headers now
                yield out
                out = b""
                batch = await anext(batches, [])
            while batch:  # one write per batch of chunks that were ready together
                texts = (orjson.dumps(c.delta) for c in batch if c.delta)
                out += b"".join(head + text + tail for text in texts)
                last = batch[-1]
                yield out
                out = b""  # before awaiting: a failure must not resend it
                batch = await anext(batches, [])
        except CallError as exc:
            body = _error_body(compat.code_status(exc.code), exc.message)
            yield out + _event("error", {"error": body["error"]})
            return
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
        stop = STOP_REASONS.get(last.finish_reason, "end_turn")
        usage = {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": _usage(last.usage)}
        yield (
            _event("content_block_stop", {"index": 0})
            + _event("message_delta", usage)
            + _event("message_stop", {})
        )

    _, headers = response_headers(ctx.initial_metadata, ())
    headers["cache-control"] = "no-cache"
    return Streamed(events(), headers=headers, media_type="text/event-stream")


def routes() -> list[Route]:
    return [Route("/v1/messages", messages, methods=["POST"])]
