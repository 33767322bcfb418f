"""A fake OpenAI API: /v1/chat/completions (JSON and SSE), /v1/embeddings and
/v1/models, in the shapes of the API reference, driven by a `Script`.

    python -m tests.fakes.openai_server [--port 0] [--tokens 20] [--token-delay-ms 0] [--uvloop]
    # prints "listening on BASE_URL"
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from tests.fakes.http import HttpRequest, HttpServer, Reply, received, run_from_cli
from tests.fakes.script import Observed, Script, vector

CREATED = 1764000000
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 403: "permission_denied",
                404: "model_not_found", 408: "timeout", 429: "rate_limit_exceeded"}  # fmt: skip


class OpenAIFake:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.observed = Observed()
        self.server = HttpServer(self.handle, self.observed)

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    async def handle(self, request: HttpRequest, reply: Reply) -> None:
        script = self.script
        body = await received(request, script, self.observed)
        if script.status != 200:
            headers = {"retry-after": script.retry_after} if script.retry_after else {}
            error = {
                "message": script.error_message or f"fake error {script.status}",
                "type": _ERROR_TYPES.get(script.status, "server_error"),
                "param": None,
                "code": None,
            }
            reply.json(script.status, {"error": error}, headers)
        elif request.path == "/v1/models":
            models = [{"id": "gpt-fake", "object": "model", "created": CREATED, "owned_by": "fake"}]
            reply.json(200, {"object": "list", "data": models})
        elif request.path == "/v1/embeddings":
            reply.json(200, embeddings(body, script))
        elif body.get("stream"):
            await stream(body, script, reply)
        else:
            reply.json(200, completion(body, script))


def _usage(script: Script) -> dict[str, Any]:
    out = len(script.tokens)
    return {"prompt_tokens": script.input_tokens, "completion_tokens": out,
            "total_tokens": script.input_tokens + out}  # fmt: skip


def completion(body: dict[str, Any], script: Script) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(script.tokens) if script.tool_call is None else None,
        "refusal": None,
        "annotations": [],
    }
    if script.tool_call is not None:
        id_, name, arguments = script.tool_call
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": script.finish}],
        "usage": _usage(script),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }  # fmt: skip


def _chunk(model: str, delta: dict[str, Any], finish: str | None, usage: bool) -> bytes:
    event: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        event["usage"] = None
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


async def stream(body: dict[str, Any], script: Script, reply: Reply) -> None:
    model = body["model"]
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    reply.start_stream()
    reply.send(_chunk(model, {"role": "assistant", "content": "", "refusal": None}, None, usage))
    for i, token in enumerate(script.tokens):
        if i == script.cut_after:
            reply.abort()
            return
        if i and script.token_delay_s:
            await asyncio.sleep(script.token_delay_s)
        elif not i and script.first_token_delay_s:
            await asyncio.sleep(script.first_token_delay_s)
        if i == 0 and script.hold_before_first is not None:
            await script.hold_before_first.wait()
        if i == 1 and script.hold_after_first is not None:
            await script.hold_after_first.wait()
        reply.send(_chunk(model, {"content": token}, None, usage))
    if script.tool_call is not None:
        id_, name, arguments = script.tool_call
        head = {"index": 0, "id": id_, "type": "function",
                "function": {"name": name, "arguments": ""}}  # fmt: skip
        reply.send(_chunk(model, {"tool_calls": [head]}, None, usage))
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            part = {"index": 0, "function": {"arguments": piece}}
            reply.send(_chunk(model, {"tool_calls": [part]}, None, usage))
    reply.send(_chunk(model, {}, script.finish, usage))
    if usage:
        last = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
                "model": model, "choices": [], "usage": _usage(script)}  # fmt: skip
        reply.send(b"data: " + json.dumps(last, separators=(",", ":")).encode() + b"\n\n")
    reply.send(b"data: [DONE]\n\n")
    reply.end()


def embeddings(body: dict[str, Any], script: Script) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": vector(t, i, script.dimensions)}
            for i, t in enumerate(texts)]  # fmt: skip
    count = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": count, "total_tokens": count}}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a fake OpenAI API server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20, help="answer length")
    parser.add_argument("--token-delay-ms", type=float, default=0, help="before each token")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    script = Script(tokens=[f" w{i}" for i in range(args.tokens)])
    script.token_delay_s = script.first_token_delay_s = args.token_delay_ms / 1000
    run_from_cli(OpenAIFake(script).server, "/v1", args.port, args.uvloop)
