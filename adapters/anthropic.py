"""Anthropic Messages. The official `anthropic` SDK owns the client's
configuration (the base URL, the key, every header it sends, read once) and
serves probes; messages, the hot path, are posted on the lean HTTP/1.1 client
(adapters/endpoint.py) with those headers and read as plain JSON: the SDK's
typed path cost 1,010 µs of client CPU per call and 2,064-2,243 µs per
20-token stream, this one 49-54 and 247 µs (bench/RESULTS.md, issue 15).

Conversion rules (the unified request is OpenAI-shaped):

- system messages, wherever they appear, become the top-level `system`
  (joined by a blank line); `tool` messages become `tool_result` blocks of a
  user turn (consecutive ones share one turn, as the API requires).
- temperature: the unified range is [0, 2], Anthropic's is [0, 1]; values
  above 1 are clamped to 1 (both ends mean "as random as the model goes").
- max_tokens is required by Anthropic: a request without one gets the
  deployment's `max_tokens`.
- response_format json_schema / json_object: Anthropic has no such field on
  every model, so the schema becomes a tool the model is forced to call; its
  input is returned as the answer's text (streamed as it is generated), not as
  a tool call. Any other tools stay offered but cannot be chosen then.
- seed has no Anthropic equivalent and is not sent.

Deployment options:

    api_key_env: ANTHROPIC_API_KEY
    base_url: https://api.anthropic.com   # the SDK's default
    max_tokens: 4096                      # when the request sets none
    params: {top_k: 40}                   # extra body fields; request fields win
    timeout_s: 60                         # probe(), which carries no deadline
    max_connections: 256
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anthropic
import httpx2
import orjson
from pydantic import Field

from adapters import _http, http1
from adapters._options import parse_options
from adapters.endpoint import encode, failed, lines, sdk_endpoint
from router.config import Frozen
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import (
    STARTED,
    Chunk,
    ContentPart,
    Embeddings,
    Message,
    Params,
    Request,
    Response,
    ToolCall,
    Usage,
)

VENDOR = "anthropic"
FORMAT_TOOL = "json_response"  # the forced tool that carries a response_format
_ERRORS = _http.SdkErrors(
    anthropic.APIStatusError,
    anthropic.APITimeoutError,
    anthropic.APIConnectionError,
    anthropic.AnthropicError,
)
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicSettings(Frozen):
    api_key_env: str = Field(default="ANTHROPIC_API_KEY", min_length=1)
    base_url: str | None = None
    max_tokens: int = Field(default=4096, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=256, ge=1)


class AnthropicProvider(Provider):
    """One deployment on the Anthropic Messages API (or a compatible server)."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = parse_options(AnthropicSettings, options, VENDOR)
        key = _http.api_key(self.settings.api_key_env)
        if key is None:
            raise ValueError(f"anthropic: set the environment variable {self.settings.api_key_env}")
        http_client = anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=4, max_keepalive_connections=1)  # probes only
        )
        self._client = client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.settings.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
            http_client=http_client,
        )
        self._messages = sdk_endpoint(
            VENDOR, client, http_client, "v1/messages",
            max_connections=self.settings.max_connections, timeout_s=self.settings.timeout_s,
        )  # fmt: skip

    def upstream_request(self, request: Request) -> dict[str, Any]:
        """The exact Messages body `generate` sends. No I/O; a tool call whose
        arguments are not JSON raises ProviderError(BAD_REQUEST) naming it."""
        params = request.params
        system = [m.text() for m in request.messages if m.role == "system"]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens or self.settings.max_tokens,
        }
        if system:
            body["system"] = "\n\n".join(system)
        body["messages"] = _messages(request.messages)
        body.update(_sampling(params))
        return _http.merged(self.settings.params, body)

    async def generate(self, request: Request, deadline: float | None) -> Response:
        """One message. Cancellation closes the HTTP request; past `deadline`
        it raises ProviderError(TIMEOUT)."""
        body = self.upstream_request(request)
        message = await self._messages.answer(body, deadline)
        try:
            return _response(message, body)
        except (KeyError, TypeError, AttributeError) as exc:  # not the protocol's message
            raise ProviderError(ErrorKind.UPSTREAM_5XX, f"anthropic: bad answer: {exc!r}") from exc

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        """Text deltas from content_block_delta events (the forced format
        tool's JSON streams as text); tool calls are assembled and sent with
        the last chunk, which also carries the finish reason from message_delta
        and usage from message_start + message_delta. An `error` event ends it
        with the error's kind. Closing the generator or cancelling its task
        closes the HTTP response. A deadline bounds the whole stream."""
        body = self.upstream_request(request)
        events = _Events(_formatted(body))
        try:
            async with await self._messages.post({**body, "stream": True}, deadline) as upstream:
                # Reading on past message_stop to the body's end keeps the
                # connection reusable; leaving early closes it.
                name = ""  # the last `event:` line's: the type, where the data omits it
                async for line in lines(upstream):
                    if line.startswith(b"event:"):
                        name = line[6:].strip().decode("ascii", "replace")
                        continue
                    payload = line[5:].strip() if line.startswith(b"data:") else b""
                    if not payload:
                        continue
                    event = orjson.loads(payload)
                    if not isinstance(event, dict):
                        raise ValueError(f"not a JSON object: {payload[:60]!r}")
                    event.setdefault("type", name)
                    if event["type"] == "error":
                        raise _stream_error(event, upstream)
                    chunk = events.take(event)
                    if chunk is not None:
                        yield chunk
        except (http1.Disconnected, TimeoutError) as exc:
            raise failed(exc, VENDOR, started=events.started) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not the protocol's
            kind = ErrorKind.INTERRUPTED if events.started else ErrorKind.UPSTREAM_5XX
            raise ProviderError(kind, f"anthropic: bad stream event: {exc!r}") from exc
        if not events.ended:
            raise ProviderError(ErrorKind.INTERRUPTED, "anthropic: no message_stop before the end")
        yield events.last(body)

    def upstream_body(self, request: Request) -> bytes:
        """The exact bytes `generate` posts. No I/O."""
        return encode(self.upstream_request(request), VENDOR)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        raise ProviderError(ErrorKind.BAD_REQUEST, "anthropic: the Messages API has no embeddings")

    async def probe(self) -> None:
        """GET /v1/models/{model}: authenticated and cheap; NOT_FOUND for a wrong model."""
        try:
            await self._client.models.retrieve(self.model, timeout=self.settings.timeout_s)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _http.translate(exc, _ERRORS, VENDOR, started=False) from exc

    async def aclose(self) -> None:
        await self._messages.aclose()
        await self._client.close()


def _response(message: Any, body: Mapping[str, Any]) -> Response:
    """A Messages answer as the router's Response (KeyError, TypeError or
    AttributeError when it is not one)."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use" and block["name"] == FORMAT_TOOL and _formatted(body):
            texts.append(json.dumps(block["input"], separators=(",", ":")))
        elif kind == "tool_use":
            calls.append(ToolCall(block["id"], block["name"], json.dumps(block["input"])))
    return Response(
        text="".join(texts),
        finish_reason=_finish(message.get("stop_reason"), body),
        usage=_usage(message.get("usage") or {}),
        tool_calls=tuple(calls),
    )


class _Events:
    """One stream's events folded: each `take` returns the chunk to send, if
    any; `last` is the final chunk (tool calls, finish reason, usage)."""

    def __init__(self, formatted: bool) -> None:
        self.formatted = formatted  # the forced format tool's input is the answer
        self.started = self.ended = False
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, list[str]] = {}  # tool_use index -> [id, name, partial json]

    def take(self, event: dict[str, Any]) -> Chunk | None:
        self.started = True
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event.get("index"), event["delta"])
        if kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") == "tool_use":
                self.blocks[event["index"]] = [block["id"], block["name"], ""]
        elif kind == "message_start":
            self.usage = dict(event["message"].get("usage") or {})
            return STARTED  # the stream is good: the edge may answer now
        elif kind == "message_delta":
            self.stop_reason = event["delta"].get("stop_reason") or self.stop_reason
            update = event.get("usage") or {}
            if update.get("input_tokens") is not None:  # the final counts
                self.usage = dict(update)
            else:  # the start's prompt counts stand
                self.usage["output_tokens"] = update.get("output_tokens", 0)
        elif kind == "message_stop":
            self.ended = True
        return None

    def _delta(self, index: Any, delta: dict[str, Any]) -> Chunk | None:
        if delta.get("type") == "text_delta":
            return Chunk(delta=delta["text"])
        if delta.get("type") == "input_json_delta" and index in self.blocks:
            block = self.blocks[index]
            if self.formatted and block[1] == FORMAT_TOOL:
                return Chunk(delta=delta["partial_json"])
            block[2] += delta["partial_json"]
        return None

    def last(self, body: Mapping[str, Any]) -> Chunk:
        calls = tuple(
            ToolCall(id_, name, args or "{}")
            for id_, name, args in (self.blocks[i] for i in sorted(self.blocks))
            if not (self.formatted and name == FORMAT_TOOL)
        )
        finish = _finish(self.stop_reason, body)
        return Chunk(tool_calls=calls, finish_reason=finish, usage=_usage(self.usage))


def _formatted(body: Mapping[str, Any]) -> bool:
    """Whether the body forces the response_format tool."""
    return body.get("tool_choice") == {"type": "tool", "name": FORMAT_TOOL}


def _finish(stop_reason: str | None, body: Mapping[str, Any]) -> str:
    if stop_reason == "tool_use" and _formatted(body):
        return "stop"  # the forced format tool is the answer, not a call to make
    if stop_reason is None:
        return "stop"
    return _FINISH.get(stop_reason, stop_reason)


def _usage(usage: Mapping[str, Any]) -> Usage:
    """Prompt tokens count those read from or written to the prompt cache."""
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached
    prompt += int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(prompt, int(usage.get("output_tokens") or 0), cached)


def _stream_error(event: Mapping[str, Any], answer: http1.Reply) -> ProviderError:
    """An `error` event inside the 200 stream: its type says the kind."""
    error = event.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    kind = _http.stream_error_kind(error)
    return _http.status_error(VENDOR, answer.status, answer.headers, str(message or error), kind)


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text(),
            }
            if wire and wire[-1]["role"] == "user" and _all_results(wire[-1]["content"]):
                wire[-1]["content"].append(result)
            else:
                wire.append({"role": "user", "content": [result]})
            continue
        wire.append({"role": message.role, "content": _content(message, f"messages[{i}]")})
    return wire


def _all_results(content: Any) -> bool:
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def _content(message: Message, where: str) -> str | list[dict[str, Any]]:
    if not message.parts and not message.tool_calls:
        return message.content
    blocks: list[dict[str, Any]] = []
    if message.parts:
        blocks += [_part(p) for p in message.parts]
    elif message.content:
        blocks.append({"type": "text", "text": message.content})
    for j, call in enumerate(message.tool_calls):
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            raise ProviderError(
                ErrorKind.BAD_REQUEST, f"{where}.tool_calls[{j}].arguments: not valid JSON"
            ) from None
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _part(part: ContentPart) -> dict[str, Any]:
    if not part.image_url:
        return {"type": "text", "text": part.text}
    url = part.image_url
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _sampling(params: Params) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if params.temperature is not None:
        body["temperature"] = min(params.temperature, 1.0)
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    tools = [
        {
            "name": t.name,
            "description": t.description,
            "input_schema": dict(t.parameters or {"type": "object", "properties": {}}),
        }
        for t in params.tools
    ]
    fmt = params.response_format
    if fmt is not None and fmt.type != "text":
        schema = dict(fmt.json_schema or {}) if fmt.type == "json_schema" else {"type": "object"}
        description = "Give the answer as this tool's input"
        if fmt.schema_name:
            description += f" (the {fmt.schema_name!r} schema)"
        tools.append({"name": FORMAT_TOOL, "description": description, "input_schema": schema})
        body["tool_choice"] = {"type": "tool", "name": FORMAT_TOOL}
    elif params.tool_choice:
        body["tool_choice"] = _tool_choice(params.tool_choice)
    if tools:
        body["tools"] = tools
    return body


def _tool_choice(choice: str) -> dict[str, str]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}
