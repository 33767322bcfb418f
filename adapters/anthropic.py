"""Anthropic Messages through the official `anthropic` SDK (async).

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
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anthropic
import httpx2
from pydantic import Field

from adapters import _http
from adapters._options import parse_options
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
        limits = httpx2.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_connections,
        )
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.settings.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
            http_client=anthropic.DefaultAsyncHttpxClient(limits=limits),
        )
        self._span = _http.span_attributes(str(self._client.base_url.join("v1/messages")))

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
        try:
            message = await self._create(body, deadline, stream=False)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _http.translate(exc, _ERRORS, VENDOR, started=False) from exc
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use" and block.name == FORMAT_TOOL and _formatted(body):
                texts.append(json.dumps(block.input, separators=(",", ":")))
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
        return Response(
            text="".join(texts),
            finish_reason=_finish(message.stop_reason, body),
            usage=_usage(message.usage),
            tool_calls=tuple(calls),
        )

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        """Text deltas from content_block_delta events (the forced format
        tool's JSON streams as text); tool calls are assembled and sent with
        the last chunk, which also carries the finish reason from message_delta
        and usage from message_start + message_delta. Closing the generator or
        cancelling its task closes the HTTP response. A deadline cuts the
        stream at the next read (the read timeout is the time left at start)."""
        body = self.upstream_request(request)
        formatted = _formatted(body)
        try:
            upstream = await self._create(body, deadline, stream=True)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _http.translate(exc, _ERRORS, VENDOR, started=False) from exc
        started = False
        stop_reason: str | None = None
        input_tokens = output_tokens = cached_tokens = 0
        blocks: dict[int, list[str]] = {}  # tool_use index -> [id, name, partial json]
        ended = False
        try:
            async for event in upstream:
                started = True
                if event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        yield Chunk(delta=delta.text)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        if formatted and blocks[event.index][1] == FORMAT_TOOL:
                            yield Chunk(delta=delta.partial_json)
                        else:
                            blocks[event.index][2] += delta.partial_json
                elif event.type == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        blocks[event.index] = [block.id, block.name, ""]
                elif event.type == "message_start":
                    yield STARTED  # the stream is good: the edge may answer now
                    input_tokens = _input_tokens(event.message.usage)
                    cached_tokens = event.message.usage.cache_read_input_tokens or 0
                    output_tokens = event.message.usage.output_tokens
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = event.usage.output_tokens
                    if event.usage.input_tokens is not None:
                        input_tokens = _input_tokens(event.usage)
                        cached_tokens = event.usage.cache_read_input_tokens or 0
                elif event.type == "message_stop":
                    ended = True
                if deadline is not None and time.monotonic() > deadline:
                    raise ProviderError(ErrorKind.TIMEOUT, "anthropic: deadline passed mid-stream")
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _http.translate(exc, _ERRORS, VENDOR, started=started) from exc
        finally:
            await upstream.close()
        if not ended:
            raise ProviderError(ErrorKind.INTERRUPTED, "anthropic: no message_stop before the end")
        calls = tuple(
            ToolCall(id_, name, args or "{}")
            for id_, name, args in (blocks[i] for i in sorted(blocks))
            if not (formatted and name == FORMAT_TOOL)
        )
        yield Chunk(
            tool_calls=calls,
            finish_reason=_finish(stop_reason, body),
            usage=Usage(input_tokens, output_tokens, cached_tokens),
        )

    def upstream_body(self, request: Request) -> bytes:
        """The exact bytes `generate` posts. No I/O."""
        return _encode(self.upstream_request(request))

    async def _create(self, body: dict[str, Any], deadline: float | None, *, stream: bool) -> Any:
        # Posted as bytes this adapter encodes (the SDK's own encoding orders
        # the keys its way), so that a dry run shows exactly what is sent.
        timeout = _http.remaining(deadline, VENDOR)
        headers = {"content-type": "application/json"}
        with _http.sdk_span(self._span, headers, _ERRORS) as span:
            answer = await self._client.post(
                "/v1/messages",
                content=_encode({**body, "stream": True} if stream else body),
                cast_to=anthropic.types.Message,
                options={
                    "timeout": timeout if timeout is not None else self.settings.timeout_s,
                    "headers": headers,
                },
                stream=stream,
                stream_cls=anthropic.AsyncStream[anthropic.types.RawMessageStreamEvent],
            )
            if isinstance(answer, anthropic.AsyncStream):  # a Message keeps no status (2xx)
                span.set_attribute(_http.STATUS, answer.response.status_code)
            return answer

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        raise ProviderError(ErrorKind.BAD_REQUEST, "anthropic: the Messages API has no embeddings")

    async def probe(self) -> None:
        """GET /v1/models/{model}: authenticated and cheap; NOT_FOUND for a wrong model."""
        try:
            await self._client.models.retrieve(self.model, timeout=self.settings.timeout_s)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise _http.translate(exc, _ERRORS, VENDOR, started=False) from exc

    async def aclose(self) -> None:
        await self._client.close()


def _formatted(body: Mapping[str, Any]) -> bool:
    """Whether the body forces the response_format tool."""
    return body.get("tool_choice") == {"type": "tool", "name": FORMAT_TOOL}


def _finish(stop_reason: str | None, body: Mapping[str, Any]) -> str:
    if stop_reason == "tool_use" and _formatted(body):
        return "stop"  # the forced format tool is the answer, not a call to make
    if stop_reason is None:
        return "stop"
    return _FINISH.get(stop_reason, stop_reason)


def _input_tokens(usage: Any) -> int:
    """Prompt tokens, counting those read from or written to the prompt cache."""
    return int(
        (usage.input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )


def _usage(usage: Any) -> Usage:
    return Usage(_input_tokens(usage), usage.output_tokens, usage.cache_read_input_tokens or 0)


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


def _encode(body: Mapping[str, Any]) -> bytes:
    """A request body as it goes on the wire: compact UTF-8 JSON, keys in order."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
