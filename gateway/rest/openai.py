"""OpenAI-compatible routes: POST /v1/chat/completions (JSON or SSE exactly as
OpenAI streams it, ending `data: [DONE]`), POST /v1/embeddings, GET /v1/models.

Each calls the Router in-process through the server's interceptors, so the
caller's `Authorization: Bearer ...` is checked as on gRPC. Errors have
OpenAI's shape (`{"error": {"message", "type", "code"}}`); a stream that fails
after its first chunk ends with an error event and no [DONE].
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.pb import router_pb2 as pb
from gateway.rest import compat
from gateway.rest.call import STARTED, CallError
from gateway.rest.compat import CompatError, bad, number, text_of
from gateway.rest.methods import EMBED, GENERATE, LIST_MODELS
from gateway.rest.responses import JSONResponse, Streamed
from gateway.rest.shim import Shim
from gateway.rest.status import response_headers

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                413: "invalid_request_error", 429: "rate_limit_error"}  # fmt: skip


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(_error_body(status, message), status, headers)


def _call_error(exc: CallError) -> Response:
    status, headers = compat.failed_call(exc)
    return _error(status, exc.message, headers)


def _message(i: int, raw: Any) -> pb.Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise bad(f"{where}: must be an object with a role")
    role = "system" if raw["role"] == "developer" else raw["role"]
    message = pb.Message(role=role, name=str(raw.get("name") or ""))
    content = raw.get("content")
    if isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in content
    ):
        for part in content:
            if part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                message.parts.append(pb.ContentPart(image_url=str(url)))
            else:
                message.parts.append(pb.ContentPart(text=str(part.get("text", ""))))
    else:
        message.content = text_of(content, f"{where}.content")
    for call in raw.get("tool_calls") or ():
        if not isinstance(call, dict) or not isinstance(call.get("function") or {}, dict):
            raise bad(f"{where}.tool_calls: each must be {{id, type, function: {{...}}}}")
        function = call.get("function") or {}
        message.tool_calls.append(
            pb.ToolCall(
                id=str(call.get("id", "")),
                name=str(function.get("name", "")),
                arguments=str(function.get("arguments", "")),
            )
        )
    message.tool_call_id = str(raw.get("tool_call_id") or "")
    return message


def _params(body: dict[str, Any]) -> pb.GenerationParams:
    params = pb.GenerationParams()
    if (value := number(body, "temperature")) is not None:
        params.temperature = value
    if (value := number(body, "top_p")) is not None:
        params.top_p = value
    limit = number(body, "max_completion_tokens", int) or number(body, "max_tokens", int)
    if limit is not None:
        params.max_tokens = limit
    if (value := number(body, "seed", int)) is not None:
        params.seed = value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("stop: must be a string or a list of strings")
        params.stop.extend(stops)
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        params.response_format.type = str(fmt.get("type", "text"))
        schema = fmt.get("json_schema") or {}
        params.response_format.schema_name = str(schema.get("name", ""))
        if isinstance(schema.get("schema"), dict):
            params.response_format.json_schema.update(schema["schema"])
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad("tools: each must be {type: function, function: {name, ...}}")
        item = params.tools.add(
            name=function["name"], description=str(function.get("description", ""))
        )
        if isinstance(function.get("parameters"), dict):
            item.parameters.update(function["parameters"])
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        params.tool_choice = choice
    elif isinstance(choice, dict):
        params.tool_choice = str((choice.get("function") or {}).get("name", ""))
    return params


def generate_request(body: dict[str, Any]) -> pb.GenerateRequest:
    """An OpenAI chat completion request as the gateway's GenerateRequest."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise bad("model: required")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: required, a non-empty list")
    if body.get("n", 1) != 1:
        raise bad("n: only 1 is supported")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    return pb.GenerateRequest(
        model=model,
        messages=[_message(i, m) for i, m in enumerate(messages)],
        params=_params(body),
        metadata={str(k): str(v) for k, v in metadata.items()},
        semantic_cache=body.get("semantic_cache") is True,  # an extension field
    )


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _usage(usage: pb.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens or usage.input_tokens + usage.output_tokens,
    }


async def chat_completions(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    try:
        body = await compat.json_body(shim, request)
        message = generate_request(body)
        ctx = compat.context(shim, request)
    except CompatError as exc:
        return _error(exc.status, exc.message)
    if body.get("stream"):
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return await _stream(shim, message, ctx, usage)
    try:
        reply = await compat.call(shim, GENERATE, message, ctx)
    except CallError as exc:
        return _call_error(exc)
    answer: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        answer["tool_calls"] = _tool_calls(reply.tool_calls)
    _, headers = response_headers(ctx.initial_metadata, ctx.trailing)
    return JSONResponse(
        {
            "id": "chatcmpl-" + (reply.id or secrets.token_hex(12)),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": message.model,
            "choices": [
                {
                    "index": 0,
                    "message": answer,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or "stop",
                }
            ],
            "usage": _usage(reply.usage),
            "system_fingerprint": None,
        },
        headers=headers,
    )


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _Frames:
    """Chunk events of one stream. A text delta only changes the content, so its
    event is two constant halves around the JSON string (the hot path)."""

    def __init__(self, model: str, usage: bool) -> None:
        self.id, self.created, self.model, self.usage = (
            "chatcmpl-" + secrets.token_hex(12), int(time.time()), model, usage,
        )  # fmt: skip
        head = self.event({"content": "\x00"}).split(b'"\\u0000"')
        self._head, self._tail = head[0], head[1]

    def event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }  # fmt: skip
        if self.usage:
            data["usage"] = None
        return _sse(data)

    def text(self, delta: str) -> bytes:
        return self._head + orjson.dumps(delta) + self._tail

    def chunk(self, chunk: pb.GenerateChunk) -> bytes:
        out = self.text(chunk.delta) if chunk.delta else b""
        if chunk.tool_calls:
            calls = _tool_calls(chunk.tool_calls)
            for i, call in enumerate(calls):
                call["index"] = i
            out += self.event({"tool_calls": calls})
        return out

    def end(self, last: pb.GenerateChunk) -> bytes:
        out = self.event({}, last.finish_reason or "stop")
        if self.usage:
            out += _sse(
                {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "system_fingerprint": None, "choices": [],
                 "usage": _usage(last.usage)}
            )  # fmt: skip
        return out + b"data: [DONE]\n\n"


async def _stream(shim: Shim, message: pb.GenerateRequest, ctx: Any, usage: bool) -> Response:
    batches = compat.batches(shim, message, ctx)
    try:
        first: list[Any] = await anext(batches, [])
    except CallError as exc:
        return _call_error(exc)
    frames = _Frames(message.model, usage)

    async def events() -> AsyncIterator[bytes]:
        # One write per batch of chunks that were ready together.
        last, batch = pb.GenerateChunk(), first
        out = frames.event({"role": "assistant", "content": ""})
        try:
            if batch is STARTED:  # the upstream answered, no token yet: headers now
                yield out
                out = b""
                batch = await anext(batches, [])
            while batch:
                out += b"".join(frames.chunk(chunk) for chunk in batch)
                last = batch[-1]
                yield out
                out = b""  # before awaiting: a failure must not resend it
                batch = await anext(batches, [])
        except CallError as exc:
            yield out + _sse(_error_body(compat.code_status(exc.code), exc.message))
            return
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
        yield frames.end(last)

    _, headers = response_headers(ctx.initial_metadata, ())
    headers["cache-control"] = "no-cache"
    return Streamed(events(), headers=headers, media_type="text/event-stream")


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
        return value
    raise bad("input: must be a string or a non-empty list of strings (token arrays: no)")


async def embeddings(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    try:
        body = await compat.json_body(shim, request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad("model: required")
        inputs = _inputs(body.get("input"))
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise bad("encoding_format: must be float or base64")
        ctx = compat.context(shim, request)
    except CompatError as exc:
        return _error(exc.status, exc.message)
    try:
        reply = await compat.call(shim, EMBED, pb.EmbedRequest(model=model, inputs=inputs), ctx)
    except CallError as exc:
        return _call_error(exc)
    data = []
    for i, embedding in enumerate(reply.embeddings):
        values = list(embedding.values)
        vector: Any = values
        if encoding == "base64":  # little-endian float32, as OpenAI sends it
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = reply.usage.input_tokens
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": reply.usage.total_tokens or tokens},
        }
    )


async def models(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    try:
        ctx = compat.context(shim, request)
        reply = await compat.call(shim, LIST_MODELS, pb.ListModelsRequest(), ctx)
    except CompatError as exc:
        return _error(exc.status, exc.message)
    except CallError as exc:
        return _call_error(exc)
    data = [
        {"id": m.alias, "object": "model", "created": 0, "owned_by": "infergate"}
        for m in reply.models
    ]
    return JSONResponse({"object": "list", "data": data})


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
