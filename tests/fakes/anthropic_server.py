"""A fake Anthropic Messages API: POST /v1/messages (JSON and SSE events
message_start, content_block_start/delta/stop, ping, message_delta,
message_stop) and GET /v1/models/{id}, in the documented shapes.

    python -m tests.fakes.anthropic_server [--port 0] [--tokens 20] [--uvloop]
    # prints "listening on BASE_URL"
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from tests.fakes.http import HttpRequest, HttpServer, Reply, received, run_from_cli
from tests.fakes.script import Observed, Script

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
    429: "rate_limit_error", 529: "overloaded_error",
}  # fmt: skip
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class AnthropicFake:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.observed = Observed()
        self.server = HttpServer(self.handle, self.observed)

    @property
    def base_url(self) -> str:
        return self.server.url

    async def handle(self, request: HttpRequest, reply: Reply) -> None:
        script = self.script
        body = await received(request, script, self.observed)
        headers = {"request-id": "req_fake"}
        if script.status != 200:
            if script.retry_after:
                headers["retry-after"] = script.retry_after
            error = {"type": _ERROR_TYPES.get(script.status, "api_error"),
                     "message": script.error_message or f"fake error {script.status}"}  # fmt: skip
            reply.json(script.status, {"type": "error", "error": error}, headers)
        elif request.path.startswith("/v1/models/"):
            model_id = request.path.rsplit("/", 1)[1]
            reply.json(200, {"type": "model", "id": model_id, "display_name": model_id,
                             "created_at": "2026-01-01T00:00:00Z"}, headers)  # fmt: skip
        elif body.get("stream"):
            await stream(body, script, reply)
        else:
            reply.json(200, message(body, script), headers)


def _content(script: Script) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if script.tokens:
        blocks.append({"type": "text", "text": "".join(script.tokens)})
    if script.tool_call is not None:
        id_, name, arguments = script.tool_call
        blocks.append({"type": "tool_use", "id": id_, "name": name, "input": json.loads(arguments)})
    return blocks


def message(body: dict[str, Any], script: Script) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": _content(script),
        "stop_reason": _STOP.get(script.finish, script.finish),
        "stop_sequence": None,
        "usage": {"input_tokens": script.input_tokens, "output_tokens": len(script.tokens),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }  # fmt: skip


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream(body: dict[str, Any], script: Script, reply: Reply) -> None:
    start = message(body, script)
    start.update(content=[], stop_reason=None)
    start["usage"] = {**start["usage"], "output_tokens": 1}
    reply.start_stream({"request-id": "req_fake"})
    reply.send(_event("message_start", {"type": "message_start", "message": start}))
    index = 0
    if script.tokens:
        block = {"type": "text", "text": ""}
        reply.send(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            )
        )
        reply.send(_event("ping", {"type": "ping"}))
        for i, token in enumerate(script.tokens):
            if i == script.cut_after:
                reply.abort()
                return
            if script.error_after is not None and i == script.error_after[0]:
                error = {"type": script.error_after[1], "message": "fake in-stream error"}
                reply.send(_event("error", {"type": "error", "error": error}))
                reply.end()
                return
            if i and script.token_delay_s:
                await asyncio.sleep(script.token_delay_s)
            delta = {"type": "text_delta", "text": token}
            reply.send(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        reply.send(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    if script.tool_call is not None:
        id_, name, arguments = script.tool_call
        block = {"type": "tool_use", "id": id_, "name": name, "input": {}}
        reply.send(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            reply.send(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        reply.send(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": _STOP.get(script.finish, script.finish), "stop_sequence": None}
    reply.send(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": stop,
                "usage": {"output_tokens": len(script.tokens)},
            },
        )
    )
    reply.send(_event("message_stop", {"type": "message_stop"}))
    reply.end()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a fake Anthropic Messages API server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20, help="answer length")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    fake = AnthropicFake(Script(tokens=[f" w{i}" for i in range(args.tokens)]))
    run_from_cli(fake.server, "", args.port, args.uvloop)
