"""The unified request and stream types every provider speaks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class ContentPart:
    text: str | None = None
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None  # JSON Schema


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: str = "text"  # "text", "json_object", "json_schema"
    schema_name: str = ""
    json_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str = ""
    parts: tuple[ContentPart, ...] = ()
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""

    def text(self) -> str:
        """The message's text, from `content` or its text parts."""
        if self.content or not self.parts:
            return self.content
        return "".join(p.text for p in self.parts if p.text)


@dataclass(frozen=True, slots=True)
class Params:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str = ""
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    model: str
    messages: tuple[Message, ...]
    params: Params = Params()
    deployment: str = ""  # manual override
    metadata: Mapping[str, str] = field(default_factory=dict)
    cache: bool = False
    semantic_cache: bool = False  # opt in to matching cached prompts by meaning
    request_id: str = ""  # for logs (ROUTING_DEBUG) only
    max_cost_usd: float | None = None  # skip deployments estimated dearer than this


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # of input_tokens: read from the upstream's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a stream: a text delta, and on the last chunk the finish
    reason and the upstream's own usage counts."""

    delta: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    usage: Usage | None = None


# What a provider's stream may yield once, before its first chunk, when the
# upstream has answered and its stream is known to be good but no token has
# come yet: the edge can send its response headers meanwhile. Only a stream
# asked to announce it passes it on (RoutedStream.chunks(announce=True)); it is
# never a chunk of the answer, and an attempt that fails after it is retried
# like one that failed before it.
STARTED = Chunk()


@dataclass(frozen=True, slots=True)
class Response:
    text: str
    finish_reason: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage


@dataclass(frozen=True, slots=True)
class Ranked:
    index: int  # into the documents as given
    score: float  # higher is more relevant; comparable within one model only


@dataclass(frozen=True, slots=True)
class Ranking:
    """A rerank's answer: the best documents first, at most `top_n` of them."""

    results: list[Ranked]
    usage: Usage  # input_tokens where the upstream counts tokens
    search_units: int = 0  # where it bills by search unit (Cohere) instead


def ranked(scores: Sequence[float], top_n: int) -> list[Ranked]:
    """The `top_n` best of one score per document (0: all), best first; ties
    keep the documents' order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [Ranked(i, float(scores[i])) for i in order[: top_n or None]]
