"""OpenAI Chat Completions and Embeddings through the official `openai` SDK.

`base_url` points the same adapter at any OpenAI-compatible server (vLLM,
Ollama, llama.cpp server, another gateway). Per deployment, one
`openai.AsyncOpenAI` client (its own retries off: the router decides retries)
and, for chat completions, one pool of keep-alive connections
(adapters/endpoint.py over adapters/http1.py).

The SDK owns the client's configuration: the base URL, the key and every
header it sends (`default_headers`, `auth_headers`), read once. Embeddings and
probes go through it. Chat completions, the hot path, are posted on the lean
HTTP/1.1 client with those headers, and answers and SSE lines are read as
plain JSON: the SDK's request path (options model, request building, httpx2
and its bridge to aiohttp) cost 0.44 ms CPU of a 1.0 ms gateway call (issue
7), and aiohttp alone 278-295 µs of client CPU per call against 104-106 µs
for the lean client (issue 24; both in bench/RESULTS.md).
Proxies from the environment are the SDK client's own choice, made once at start.

Deployment options:

    api_key_env: OPENAI_API_KEY     # the environment variable holding the key
    base_url: http://host:8000/v1   # default: the SDK's (api.openai.com)
    max_tokens_param: max_tokens    # or max_completion_tokens (newer OpenAI models)
    params: {frequency_penalty: 0.2}  # extra body fields; request fields win
    timeout_s: 60                   # embed() and probe(), which carry no deadline
    max_connections: 256            # the pool's size
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

import aiohttp
import httpx2
import openai
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
    Embeddings,
    Message,
    Params,
    Request,
    Response,
    ResponseFormat,
    ToolCall,
    Usage,
)

VENDOR = "openai"
_ERRORS = _http.SdkErrors(
    openai.APIStatusError, openai.APITimeoutError, openai.APIConnectionError, openai.OpenAIError
)
_FINISH = {"function_call": "tool_calls"}  # others ("stop", "length", ...) keep their name


class OpenAISettings(Frozen):
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1)
    base_url: str | None = None
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=256, ge=1)


class OpenAIProvider(Provider):
    """One deployment on an OpenAI-compatible upstream."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = parse_options(OpenAISettings, options, VENDOR)
        key = _http.api_key(self.settings.api_key_env)
        if key is None and self.settings.base_url is None:
            raise ValueError(f"openai: set the environment variable {self.settings.api_key_env}")
        limits = httpx2.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_connections,
        )
        # The SDK's aiohttp transport (C HTTP parser) instead of httpcore2.
        http_client = openai.DefaultAioHttpClient(limits=limits)
        self._client = client = openai.AsyncOpenAI(
            api_key=key or "unused",  # OpenAI-compatible servers often need none
            base_url=self.settings.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
            http_client=http_client,
        )
        self._chat = sdk_endpoint(
            VENDOR, client, http_client, "chat/completions",
            max_connections=self.settings.max_connections, timeout_s=self.settings.timeout_s,
        )  # fmt: skip
        self._embed_span = _http.span_attributes(str(client.base_url.join("embeddings")))

    def upstream_request(self, request: Request) -> dict[str, Any]:
        """The exact Chat Completions body `generate` sends. No I/O."""
        params = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
        }
        body.update(_sampling(params, self.settings.max_tokens_param))
        return _http.merged(self.settings.params, body)

    def upstream_body(self, request: Request) -> bytes:
        """The exact bytes `generate` posts. No I/O."""
        return encode(self.upstream_request(request), VENDOR)

    async def generate(self, request: Request, deadline: float | None) -> Response:
        """One completion. Cancellation closes the HTTP request; past `deadline`
        it raises ProviderError(TIMEOUT)."""
        body = self.upstream_request(request)
        completion = await self._chat.answer(body, deadline)
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not choices:
            raise ProviderError(ErrorKind.UPSTREAM_5XX, "openai: the answer has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        calls = tuple(
            _tool_call(c) for c in message.get("tool_calls") or () if c.get("type") == "function"
        )
        return Response(
            text=message.get("content") or "",
            finish_reason=_finish(choice.get("finish_reason")),
            usage=_usage_dict(completion.get("usage") or {}),
            tool_calls=calls,
        )

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        """Text deltas as they arrive; the last chunk carries the finish reason,
        the assembled tool calls and the upstream's usage (requested with
        stream_options.include_usage). Closing the generator or cancelling
        its task closes the HTTP response, so the upstream sees the disconnect.
        A deadline bounds the whole stream."""
        body = self.upstream_request(request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        started = False
        finish = ""
        usage: Usage | None = None
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
        try:
            async with await self._chat.post(body, deadline) as upstream:
                # One read per network chunk, however many SSE lines it holds;
                # reading on past [DONE] to the body's end keeps the connection
                # reusable, and leaving early closes it.
                async for line in lines(upstream):
                    if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                        continue
                    event = orjson.loads(line[5:])
                    if not isinstance(event, dict):
                        raise ValueError(f"not a JSON object: {line[5:60]!r}")
                    announce = not started  # the first event: say the stream is good
                    started = True
                    if event.get("error"):
                        raise ProviderError(ErrorKind.INTERRUPTED, f"openai: {event['error']}")
                    if event.get("usage"):
                        usage = _usage_dict(event["usage"])
                    for choice in (event.get("choices") or ())[:1]:
                        delta = choice.get("delta") or {}
                        for part in delta.get("tool_calls") or ():
                            _add_call(calls, part)
                        if choice.get("finish_reason"):
                            finish = _finish(choice["finish_reason"])
                        if delta.get("content"):
                            announce = False
                            yield Chunk(delta=delta["content"])
                    if announce:
                        yield STARTED
        except (http1.Disconnected, TimeoutError) as exc:
            raise failed(exc, VENDOR, started=started) from exc
        except ValueError as exc:  # not JSON: the upstream is not speaking the protocol
            kind = ErrorKind.INTERRUPTED if started else ErrorKind.UPSTREAM_5XX
            raise ProviderError(kind, f"openai: bad stream event: {exc}") from exc
        if not finish:
            raise ProviderError(ErrorKind.INTERRUPTED, "openai: the stream ended without a finish")
        tool_calls = tuple(ToolCall(*calls[i]) for i in sorted(calls))
        yield Chunk(tool_calls=tool_calls, finish_reason=finish, usage=usage)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Vectors in input order, within `timeout_s`; cancellation closes the request."""
        headers: dict[str, str] = {}
        try:
            with _http.sdk_span(self._embed_span, headers, _ERRORS):
                result = await self._client.embeddings.create(
                    model=self.model, input=list(texts), encoding_format="float",
                    extra_headers=headers or None,
                )  # fmt: skip
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise _translate(exc, started=False) from exc
        vectors = [list(map(float, item.embedding)) for item in sorted(result.data, key=_index)]
        return Embeddings(vectors, Usage(result.usage.prompt_tokens, 0))

    async def probe(self) -> None:
        """GET /models: cheap, authenticated, served by every compatible server."""
        try:
            await self._client.models.list()
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise _translate(exc, started=False) from exc

    async def aclose(self) -> None:
        await self._chat.aclose()
        await self._client.close()


def _translate(exc: BaseException, *, started: bool) -> ProviderError:
    """An SDK error (embeddings, probes) as the router's. The SDK's aiohttp
    transport maps every aiohttp ClientConnectionError to httpx2.ConnectTimeout,
    which would read as TIMEOUT: its aiohttp cause decides instead."""
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, aiohttp.ClientError):
        cause = cause.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        kind = ErrorKind.INTERRUPTED if started else ErrorKind.UNAVAILABLE
        return ProviderError(kind, f"{VENDOR}: connection failed: {cause}")
    return _http.translate(exc, _ERRORS, VENDOR, started=started)


def _finish(reason: str | None) -> str:
    # Some compatible servers omit the reason on a complete answer.
    return _FINISH.get(reason, reason) if reason else "stop"


def _add_call(calls: dict[int, list[str]], part: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into its call."""
    slot = calls.setdefault(part.get("index", 0), ["", "", ""])
    slot[0] = part.get("id") or slot[0]
    function = part.get("function") or {}
    slot[1] += function.get("name") or ""
    slot[2] += function.get("arguments") or ""


def _tool_call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    name, arguments = function.get("name") or "", function.get("arguments") or ""
    return ToolCall(call.get("id") or "", name, arguments)


def _usage_dict(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0 if isinstance(details, dict) else 0
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached)


def _index(item: Any) -> int:
    return int(item.index)


def _message(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role}
    if message.parts:
        wire["content"] = [
            {"type": "image_url", "image_url": {"url": p.image_url}}
            if p.image_url
            else {"type": "text", "text": p.text}
            for p in message.parts
        ]
    elif message.content or not message.tool_calls:
        wire["content"] = message.content
    else:
        wire["content"] = None  # an assistant turn that only calls tools
    if message.name:
        wire["name"] = message.name
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _sampling(params: Params, max_tokens_param: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_tokens is not None:
        body[max_tokens_param] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters or {"type": "object", "properties": {}}),
                },
            }
            for t in params.tools
        ]
    if params.tool_choice:
        body["tool_choice"] = (
            params.tool_choice
            if params.tool_choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": params.tool_choice}}
        )
    if params.response_format is not None and params.response_format.type != "text":
        body["response_format"] = _response_format(params.response_format)
    return body


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": fmt.schema_name or "response",
            "schema": dict(fmt.json_schema or {}),
        },
    }
