"""What one model-consuming RPC used, read off its messages: the estimate
reserved before it, and the model, deployment and token counts observed while
it ran (into gateway/apps/calls.py's `Call`).

Router messages are read here (the Router service knows nothing of metering);
the App service fills `current_call()` itself, since its model and deployment
are not on the wire.
"""

from __future__ import annotations

from typing import Any

from gateway.apps.calls import Call
from gateway.pb import app_pb2, router_pb2

# Model-consuming RPCs: these are token-limited and leave usage records.
TOKEN_METHODS = frozenset(
    {
        "/infergate.v1.Router/Generate",
        "/infergate.v1.Router/GenerateStream",
        "/infergate.v1.Router/Embed",
        "/infergate.v1.Router/Rerank",
        "/infergate.v1.App/Chat",
        "/infergate.v1.App/Completion",
    }
)
_CHARS_PER_TOKEN = 4  # a conservative average for the estimate; reconciled after


def estimate(request: Any, output_default: int) -> int:
    """Tokens to reserve before the call: input by length, output by max_tokens."""
    input_tokens, output_tokens = estimate_split(request, output_default)
    return input_tokens + output_tokens


def estimate_split(request: Any, output_default: int) -> tuple[int, int]:
    """(input, output) tokens the call may use; (0, 0) for a call that uses none."""
    if isinstance(request, router_pb2.GenerateRequest):
        chars = sum(len(m.content) for m in request.messages)
        out = request.params.max_tokens if request.params.HasField("max_tokens") else 0
        return chars // _CHARS_PER_TOKEN + 1, out or output_default
    if isinstance(request, router_pb2.EmbedRequest):
        return sum(len(t) for t in request.inputs) // _CHARS_PER_TOKEN + 1, 0
    if isinstance(request, router_pb2.RerankRequest):  # a cross-encoder reads the query per doc
        documents = request.documents
        chars = len(request.query) * len(documents) + sum(len(d) for d in documents)
        return chars // _CHARS_PER_TOKEN + 1, 0
    if isinstance(request, app_pb2.ChatRequest):
        return len(request.query) // _CHARS_PER_TOKEN + 1, output_default
    return 0, 0


def observe_request(call: Call, request: Any) -> None:
    if isinstance(
        request, router_pb2.GenerateRequest | router_pb2.EmbedRequest | router_pb2.RerankRequest
    ):
        call.model = request.model
    elif isinstance(request, app_pb2.ChatRequest):
        call.app = request.app.removeprefix("apps/")


def observe_response(call: Call, message: Any) -> None:
    """Take the deployment and the upstream's usage from a reply or stream message."""
    kind = type(message)
    if kind is router_pb2.GenerateChunk or kind is router_pb2.GenerateResponse:
        if message.deployment:
            call.deployment = message.deployment
        if message.cached:
            call.cached = True
        if message.HasField("usage"):
            _take(call, message.usage)
        elif kind is router_pb2.GenerateChunk and message.delta:
            call.chunks += 1
    elif kind is app_pb2.ChatEvent:
        if message.HasField("done"):
            _take(call, message.done.usage)
        elif message.delta:
            call.chunks += 1
    elif kind is app_pb2.CompletionResponse:
        _take(call, message.usage)
    elif kind is router_pb2.EmbedResponse:
        call.deployment = message.deployment
        _take(call, message.usage)
    elif kind is router_pb2.RerankResponse:
        call.deployment = message.deployment
        if message.usage.input_tokens:  # an upstream billing search units counts no tokens
            _take(call, message.usage)


def usage_of(message: Any) -> router_pb2.Usage | None:
    """The usage a reply or the last stream message carries (to stamp its cost on)."""
    kind = type(message)
    if kind is app_pb2.ChatEvent:
        return message.done.usage if message.HasField("done") else None
    if kind in _WITH_USAGE and message.HasField("usage"):
        return message.usage  # type: ignore[no-any-return]
    return None


_WITH_USAGE = (
    router_pb2.GenerateChunk, router_pb2.GenerateResponse, router_pb2.EmbedResponse,
    router_pb2.RerankResponse, app_pb2.CompletionResponse,
)  # fmt: skip


def _take(call: Call, usage: router_pb2.Usage) -> None:
    call.input_tokens = usage.input_tokens
    call.output_tokens = usage.output_tokens
    call.cached_input_tokens = usage.cached_input_tokens
    call.usage_seen = True
