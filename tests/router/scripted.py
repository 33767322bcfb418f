"""A provider whose calls do what a test queued, for driving the router core
without an upstream: answers, failures, waits, and streams chunk by chunk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.cache import MemoryCache, ResponseCache
from router.config import CacheConfig, DeploymentConfig, RouterConfig, parse_config
from router.errors import ErrorKind, ProviderError
from router.request_cache import RequestCache
from router.types import Chunk, Embeddings, Message, Ranking, Request, Response, Usage, ranked

# A unary step: what `generate` does on one call.
Step = Callable[[Request], Awaitable[Response]]
# A stream step: chunks to yield, seconds to sleep (float), errors to raise,
# events to wait for, or callables to run (a clock to advance, say).
StreamItem = Chunk | float | BaseException | asyncio.Event | Callable[[], object]


def answer(text: str = "ok", finish: str = "stop", **fields: Any) -> Step:
    usage = fields.pop("usage", Usage(1, 1))

    async def step(request: Request) -> Response:
        return Response(text, finish, usage, **fields)

    return step


def fail(kind: ErrorKind = ErrorKind.UPSTREAM_5XX, message: str = "boom", **kw: Any) -> Step:
    async def step(request: Request) -> Response:
        raise ProviderError(kind, message, **kw)

    return step


def raising(exc: BaseException) -> Step:
    async def step(request: Request) -> Response:
        raise exc

    return step


def waiting(event: asyncio.Event, then: Step | None = None) -> Step:
    """Blocks until `event` is set, then does `then` (default: answers "ok")."""

    async def step(request: Request) -> Response:
        await event.wait()
        return await (then or answer())(request)

    return step


def sleeping(seconds: float, then: Step | None = None) -> Step:
    async def step(request: Request) -> Response:
        await asyncio.sleep(seconds)
        return await (then or answer())(request)

    return step


DEFAULT_STREAM: tuple[StreamItem, ...] = (
    Chunk(delta="o"),
    Chunk(delta="k"),
    Chunk(finish_reason="stop", usage=Usage(1, 2)),
)


@dataclass
class Scripted:
    """One deployment's upstream. Unqueued calls answer "ok" (streams: "o", "k")."""

    name: str
    steps: list[Step] = field(default_factory=list)
    streams: list[Sequence[StreamItem]] = field(default_factory=list)
    embeddings: list[Step] = field(default_factory=list)
    rerankings: list[Step] = field(default_factory=list)
    probe_step: Callable[[], Awaitable[None]] | None = None
    requests: list[Request] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    closed: bool = False

    async def generate(self, request: Request, deadline: float | None) -> Response:
        self.requests.append(request)
        self.deadlines.append(deadline)
        step = self.steps.pop(0) if self.steps else answer()
        return await step(request)

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        self.requests.append(request)
        self.deadlines.append(deadline)
        script = self.streams.pop(0) if self.streams else DEFAULT_STREAM
        for item in script:
            if isinstance(item, Chunk):
                yield item
            elif isinstance(item, float):
                await asyncio.sleep(item)
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, asyncio.Event):
                await item.wait()
            else:
                item()

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.requests.append(Request("", tuple(Message("user", t) for t in texts)))
        if self.embeddings:
            await self.embeddings.pop(0)(self.requests[-1])
        return Embeddings([[float(len(t)), 1.0] for t in texts], Usage(len(texts), 0))

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """Longer documents rank higher (scores: their lengths)."""
        self.requests.append(Request("", (Message("user", query),)))
        self.deadlines.append(deadline)
        if self.rerankings:
            await self.rerankings.pop(0)(self.requests[-1])
        return Ranking(ranked([float(len(d)) for d in documents], top_n), Usage(len(documents)))

    async def probe(self) -> None:
        if self.probe_step is not None:
            await self.probe_step()

    def upstream_request(self, request: Request) -> dict[str, Any]:
        return {"deployment": self.name, "text": request.messages[-1].content}

    def upstream_body(self, request: Request) -> bytes:
        return f"{self.name}:{request.messages[-1].content}".encode()

    async def aclose(self) -> None:
        self.closed = True


class Providers:
    """The provider factory: one `Scripted` per deployment name, made on first use
    and kept, so a test can script a deployment before or after the router is built.
    A deployment whose model is "refuse" fails to build, as a bad config would."""

    def __init__(self) -> None:
        self.made: dict[str, Scripted] = {}
        self.builds: list[str] = []

    def __call__(self, config: DeploymentConfig) -> Scripted:
        if config.model == "refuse":
            raise ValueError(f"cannot build {config.name}")
        self.builds.append(config.name)
        self.made[config.name] = Scripted(config.name)
        return self.made[config.name]

    def __getitem__(self, name: str) -> Scripted:
        return self.made[name]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def dep(name: str, model: str = "m", **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": "scripted", "model": model, **fields}


def config(models: dict[str, Any], **top: Any) -> RouterConfig:
    """A router config; backoff is off unless `top` sets a retry section."""
    top.setdefault("retry", {"backoff_base_s": 0.0})
    return parse_config({"models": models, **top})


def request(model: str = "m", text: str = "hello", **fields: Any) -> Request:
    return Request(model=model, messages=(Message("user", text),), **fields)


async def until(condition: Callable[[], bool], limit_s: float = 2.0) -> None:
    """Return once `condition()` holds (it polls state the code under test changes)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def memory_cache(store: ResponseCache | None = None, **cache: Any) -> RequestCache:
    """A RequestCache on `store`, else the in-process one (config: the cache section's fields)."""
    settings = CacheConfig(enabled=True, **cache)
    return RequestCache(store or MemoryCache(settings.max_bytes, settings.ttl_s), settings)
