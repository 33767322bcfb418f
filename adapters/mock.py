"""A deterministic provider for the embedded default, tests and benchmarks.

Behaviour comes from the deployment's `options` and from the upstream model
name, which may carry presets and query-style settings:

    model: echo                          # answer with the last user message's words
    model: slow                          # 1 s before the first token
    model: error                         # every call fails (upstream_5xx)
    model: flaky                         # half the calls fail (generate, stream, rerank)
    model: echo?tokens=20&tokens_per_second=50&fail_after_tokens=5

Settings: latency_ms (before the first token), tokens_per_second (0: as fast as
possible), tokens (answer length; `max_tokens` cuts it with finish reason
"length"), error_rate (0..1, drawn from a seeded generator so runs repeat),
error_kind (an ErrorKind value), retry_after_s (sent with those errors),
fail_after_tokens (the stream breaks after N tokens), cached_input_tokens (of
the input, reported as read from a prompt cache), dimensions (embedding size),
seed. Options override the model name.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import struct
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import (
    Chunk,
    Embeddings,
    Message,
    Ranking,
    Request,
    Response,
    Usage,
    ranked,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "echo": {},
    "slow": {"latency_ms": 1000.0},
    "error": {"error_rate": 1.0},
    "flaky": {"error_rate": 0.5},
}
_FILLER = "the quick brown fox jumps over the lazy dog".split()


class MockSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    tokens_per_second: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    tokens: int = Field(default=16, ge=0, le=1 << 20)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_kind: ErrorKind = ErrorKind.UPSTREAM_5XX
    retry_after_s: float = Field(default=0.0, ge=0, description="sent with injected errors")
    fail_after_tokens: int = Field(default=-1, ge=-1, description="-1: never")
    cached_input_tokens: int = Field(default=0, ge=0, description="reported as prompt-cache reads")
    dimensions: int = Field(default=8, ge=1, le=65536)
    seed: int = 0

    @classmethod
    def parse(cls, model: str, options: Mapping[str, Any]) -> MockSettings:
        """Settings from `model` ("preset?key=value&...") overridden by `options`;
        ValueError names each bad setting."""
        preset, _, query = model.partition("?")
        if preset not in _PRESETS:
            raise ValueError(f"mock model {preset!r}: expected one of {sorted(_PRESETS)}")
        raw = {**_PRESETS[preset], **dict(parse_qsl(query)), **options}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"mock: {problems}") from None


class MockProvider(Provider):
    """Answers with the last user message's words, paced and failing as configured."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = MockSettings.parse(model, options or {})
        self._rng = random.Random(self.settings.seed)
        # Observed by tests: streams running now, and streams stopped by their caller.
        self.active_streams = 0
        self.cancelled_streams = 0
        self.calls = 0
        self.closed = False  # a closed mock refuses calls, so tests see any use after close

    def upstream_body(self, request: Request) -> bytes:
        return b""  # no wire: nothing is sent

    def upstream_request(self, request: Request) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [_wire_message(m) for m in request.messages],
            "max_tokens": request.params.max_tokens,
            "settings": self.settings.model_dump(mode="json"),
        }

    async def generate(self, request: Request, deadline: float | None) -> Response:
        settings = self.settings
        self.calls += 1
        self._check_open()
        await _sleep(settings.latency_ms / 1000.0, deadline)
        self._maybe_fail()
        words, finish = _answer(request, settings.tokens)
        if settings.tokens_per_second and len(words) > 1:
            await _sleep((len(words) - 1) / settings.tokens_per_second, deadline)
        if 0 <= settings.fail_after_tokens < len(words):
            raise self._cut(settings.fail_after_tokens)
        return Response(" ".join(words), finish, self._usage(request, len(words)))

    def _usage(self, request: Request, output_tokens: int) -> Usage:
        words = _count_words(request)
        return Usage(words, output_tokens, min(words, self.settings.cached_input_tokens))

    def _check_open(self) -> None:
        if self.closed:
            raise ProviderError(ErrorKind.UNAVAILABLE, f"mock {self.model!r}: used after aclose()")

    def _maybe_fail(self) -> None:
        if self.settings.error_rate and self._rng.random() < self.settings.error_rate:
            raise ProviderError(
                self.settings.error_kind,
                f"mock {self.model!r}: injected failure",
                retry_after=self.settings.retry_after_s or None,
            )

    def _cut(self, tokens: int) -> ProviderError:
        return ProviderError(
            ErrorKind.INTERRUPTED, f"mock {self.model!r}: stream cut after {tokens} tokens"
        )

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        settings = self.settings
        self.calls += 1
        self._check_open()
        self.active_streams += 1
        try:
            await _sleep(settings.latency_ms / 1000.0, deadline)
            self._maybe_fail()
            words, finish = _answer(request, settings.tokens)
            interval = 1.0 / settings.tokens_per_second if settings.tokens_per_second else 0.0
            for i, word in enumerate(words):
                if i == settings.fail_after_tokens:
                    raise self._cut(i)
                if i and interval:
                    await _sleep(interval, deadline)
                yield Chunk(delta=word if i == 0 else " " + word)
            yield Chunk(finish_reason=finish, usage=self._usage(request, len(words)))
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled_streams += 1
            raise
        finally:
            self.active_streams -= 1

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors = [_vector(t, self.settings.dimensions) for t in texts]
        return Embeddings(vectors, Usage(sum(len(t.split()) for t in texts), 0))

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """Scores each document by the share of the query's words it holds
        (case-folded): deterministic, so tests can assert orderings. Paced and
        failing as configured, like generate."""
        self.calls += 1
        self._check_open()
        await _sleep(self.settings.latency_ms / 1000.0, deadline)
        self._maybe_fail()
        words = set(query.lower().split())
        share = 1 / max(len(words), 1)
        scores = [len(words & set(d.lower().split())) * share for d in documents]
        tokens = len(query.split()) * len(documents) + sum(len(d.split()) for d in documents)
        return Ranking(ranked(scores, top_n), Usage(tokens, 0))

    async def probe(self) -> None:
        if self.settings.error_rate >= 1.0:
            raise ProviderError(self.settings.error_kind, f"mock {self.model!r}: always fails")

    async def aclose(self) -> None:
        self.closed = True


def _wire_message(message: Message) -> dict[str, Any]:
    if not message.parts:
        return {"role": message.role, "content": message.content}
    parts = [
        {"type": "image_url", "image_url": p.image_url}
        if p.image_url
        else {"type": "text", "text": p.text}
        for p in message.parts
    ]
    return {"role": message.role, "content": parts}


async def _sleep(seconds: float, deadline: float | None) -> None:
    if deadline is not None and time.monotonic() + seconds > deadline:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        raise ProviderError(ErrorKind.TIMEOUT, "mock: deadline passed")
    if seconds > 0:
        await asyncio.sleep(seconds)


def _answer(request: Request, tokens: int) -> tuple[list[str], str]:
    users = [m for m in request.messages if m.role == "user"]
    source = (users[-1].text().split() if users else []) or _FILLER
    limit = request.params.max_tokens
    count, finish = (limit, "length") if limit is not None and limit < tokens else (tokens, "stop")
    return [source[i % len(source)] for i in range(count)], finish


def _count_words(request: Request) -> int:
    return sum(len(m.text().split()) for m in request.messages)


def _vector(text: str, dimensions: int) -> list[float]:
    digest = b""
    counter = 0
    while len(digest) < 4 * dimensions:
        digest += hashlib.blake2b(f"{counter}:{text}".encode()).digest()
        counter += 1
    raw = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", digest[: 4 * dimensions])]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]
