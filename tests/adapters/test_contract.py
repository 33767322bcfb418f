"""The one contract every provider in adapters/ passes, each against a local
wire-level fake of its upstream (tests/fakes/): real SDK clients, real
sockets, no mocks.

To add a provider, append a `Backend` to BACKENDS: a factory that starts its
fake and builds the provider (an async context manager yielding a Harness),
and the set of case groups it supports. An embed-only provider (ONNX) lists
just {"embed"} and gets only the embedding cases; a provider with no remote
upstream can leave the Harness's `script`/`observed` unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.anthropic import AnthropicProvider
from adapters.onnx import OnnxProvider
from adapters.openai import OpenAIProvider
from adapters.triton import TritonProvider
from indexer.testmodel import build_tiny_model
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import STARTED, Chunk, Message, Params, Request, Tool, Usage
from tests.fakes.anthropic_server import AnthropicFake
from tests.fakes.openai_server import OpenAIFake
from tests.fakes.script import Observed, Script
from tests.fakes.triton_server import EMBEDDER, LLM, TritonFake

KEY_ENV = "INFERGATE_TEST_UPSTREAM_KEY"
KEY = "sk-test-not-a-real-key"


@dataclass
class Harness:
    """A provider wired to its fake; tests drive `script` and read `observed`."""

    provider: Provider
    script: Script
    observed: Observed
    # The request body the fake saw, reduced to what `upstream_request` shows.
    sent: Callable[[], dict[str, Any]]
    unhealthy: Callable[[], None]  # make the upstream fail its health checks
    down: Callable[[], Awaitable[None]] | None = None  # stop the upstream altogether


Factory = Callable[[str], contextlib.AbstractAsyncContextManager[Harness]]


@dataclass(frozen=True)
class Backend:
    name: str
    start: Factory  # called with "chat" or "embed"
    cases: frozenset[str]  # chat, stream, embed, errors, retry_after, tools
    kinds: Mapping[int, ErrorKind] = field(default_factory=dict)  # overrides of STATUS_KINDS

    def __str__(self) -> str:
        return self.name


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


@contextlib.asynccontextmanager
async def openai_backend(kind: str) -> AsyncIterator[Harness]:
    fake = OpenAIFake()
    await fake.server.start()
    options = {"base_url": fake.base_url, "api_key_env": KEY_ENV}
    provider = OpenAIProvider("text-embed-fake" if kind == "embed" else "gpt-fake", options)
    try:
        yield Harness(
            provider,
            fake.script,
            fake.observed,
            lambda: _without(fake.observed.requests[-1], "stream", "stream_options"),
            lambda: setattr(fake.script, "status", 503),
            fake.server.close,
        )
    finally:
        await provider.aclose()
        await fake.server.close()


@contextlib.asynccontextmanager
async def anthropic_backend(kind: str) -> AsyncIterator[Harness]:
    fake = AnthropicFake()
    await fake.server.start()
    options = {"base_url": fake.base_url, "api_key_env": KEY_ENV, "max_tokens": 512}
    provider = AnthropicProvider("claude-fake", options)
    try:
        yield Harness(
            provider,
            fake.script,
            fake.observed,
            lambda: _without(fake.observed.requests[-1], "stream"),
            lambda: setattr(fake.script, "status", 503),
            fake.server.close,
        )
    finally:
        await provider.aclose()
        await fake.server.close()


@contextlib.asynccontextmanager
async def triton_backend(kind: str) -> AsyncIterator[Harness]:
    fake = await TritonFake().start()
    if kind == "embed":
        provider = TritonProvider(EMBEDDER, {"url": fake.url, "task": "embed"})
    else:
        provider = TritonProvider(LLM, {"url": fake.url})

    def sent() -> dict[str, Any]:
        body = fake.observed.requests[-1]
        for tensor in body["inputs"]:
            if tensor["name"] == "stream":
                tensor["data"] = [False]  # the dry run shows the unary request
        return body

    try:
        yield Harness(
            provider,
            fake.script,
            fake.observed,
            sent,
            lambda: setattr(fake, "ready", False),
            fake.close,
        )
    finally:
        await provider.aclose()
        await fake.close()


@contextlib.asynccontextmanager
async def onnx_backend(kind: str) -> AsyncIterator[Harness]:
    """The tiny test model, local: no upstream to script or observe."""
    with tempfile.TemporaryDirectory() as tmp:
        provider = OnnxProvider("tiny", {"model_dir": str(build_tiny_model(Path(tmp)))})
        try:
            yield Harness(provider, Script(), Observed(), dict, lambda: None)
        finally:
            await provider.aclose()


ALL = frozenset({"chat", "stream", "embed", "errors", "retry_after", "tools"})
BACKENDS = [
    Backend("openai", openai_backend, ALL),
    Backend("anthropic", anthropic_backend, ALL - {"embed"}),
    Backend(
        "triton",
        triton_backend,
        frozenset({"chat", "stream", "embed", "errors"}),
        kinds={503: ErrorKind.UNAVAILABLE},  # gRPC UNAVAILABLE: the server says so itself
    ),
    Backend("onnx", onnx_backend, frozenset({"embed"})),
]
# HTTP status the fake fails with -> the kind every provider must raise.
STATUS_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.UPSTREAM_5XX,
    503: ErrorKind.UPSTREAM_5XX,
}


def backends(case: str) -> list[Any]:
    return [pytest.param(b, id=b.name) for b in BACKENDS if case in b.cases]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def ask(text: str = "hello there", **params: Any) -> Request:
    return Request(
        model="alias",
        messages=(Message("system", "be brief"), Message("user", text)),
        params=Params(**params),
    )


async def collect(stream: Any) -> list[Chunk]:
    """The answer's chunks: a provider's STARTED (router.types) is not one."""
    return [chunk async for chunk in stream if chunk is not STARTED]


def soon(seconds: float) -> float:
    return time.monotonic() + seconds


# -- chat ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", backends("chat"))
async def test_generate_answers_with_upstream_text_finish_and_usage(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.input_tokens = 11
        request = ask(max_tokens=64, temperature=0.5)
        response = await h.provider.generate(request, soon(10))
        assert response.text == "Hello from the fake"
        assert response.finish_reason == "stop"
        assert response.usage == Usage(11, 4)  # the upstream's counts, not re-counted
        assert h.sent() == h.provider.upstream_request(request)  # the dry run is exact


@pytest.mark.parametrize("backend", backends("chat"))
async def test_length_finish_reason(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.finish = "length"
        response = await h.provider.generate(ask(max_tokens=4), soon(10))
        assert response.finish_reason == "length"


@pytest.mark.parametrize("backend", backends("stream"))
async def test_started_comes_at_most_once_and_before_the_answer(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.tokens = [" a", " b"]
        everything = [chunk async for chunk in h.provider.stream(ask(), soon(10))]
        marks = [i for i, chunk in enumerate(everything) if chunk is STARTED]
        assert marks in ([], [0])
        if backend.name in ("openai", "anthropic"):  # their streams say so on the first event
            assert marks == [0]


@pytest.mark.parametrize("backend", backends("stream"))
async def test_stream_keeps_upstream_order_and_ends_with_finish_and_usage(
    backend: Backend,
) -> None:
    async with backend.start("chat") as h:
        h.script.tokens = [f" t{i}" for i in range(12)]
        h.script.input_tokens = 5
        request = ask(max_tokens=64)
        chunks = await collect(h.provider.stream(request, soon(10)))
        assert "".join(c.delta for c in chunks) == "".join(h.script.tokens)
        assert [c.finish_reason for c in chunks[:-1]] == [""] * (len(chunks) - 1)
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage == Usage(5, 12)
        assert h.sent() == h.provider.upstream_request(request)


@pytest.mark.parametrize("backend", backends("stream"))
async def test_stream_cut_midway_is_interrupted(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.cut_after = 2
        seen: list[str] = []
        with pytest.raises(ProviderError) as caught:
            async for chunk in h.provider.stream(ask(), soon(10)):
                seen.append(chunk.delta)
        assert caught.value.kind is ErrorKind.INTERRUPTED
        assert "".join(seen) == "Hello from"  # what arrived before the cut was delivered


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(STATUS_KINDS))
@pytest.mark.parametrize("backend", backends("errors"))
async def test_error_status_maps_to_one_kind(backend: Backend, status: int) -> None:
    expected = backend.kinds.get(status, STATUS_KINDS[status])
    async with backend.start("chat") as h:
        h.script.status = status
        with pytest.raises(ProviderError) as unary:
            await h.provider.generate(ask(), soon(10))
        assert unary.value.kind is expected, unary.value
        with pytest.raises(ProviderError) as streamed:
            await collect(h.provider.stream(ask(), soon(10)))
        assert streamed.value.kind is expected, streamed.value


@pytest.mark.parametrize("backend", backends("retry_after"))
async def test_rate_limit_carries_retry_after(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.status, h.script.retry_after = 429, "7"
        with pytest.raises(ProviderError) as caught:
            await h.provider.generate(ask(), soon(10))
        assert caught.value.kind is ErrorKind.RATE_LIMITED
        assert caught.value.retry_after == 7.0
        with pytest.raises(ProviderError) as streamed:
            await collect(h.provider.stream(ask(), soon(10)))
        assert streamed.value.retry_after == 7.0


@pytest.mark.parametrize("backend", backends("chat"))
async def test_slow_upstream_hits_the_deadline(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.delay_s = 5.0
        started = time.monotonic()
        with pytest.raises(ProviderError) as unary:
            await h.provider.generate(ask(), soon(0.3))
        assert unary.value.kind is ErrorKind.TIMEOUT
        with pytest.raises(ProviderError) as streamed:
            await collect(h.provider.stream(ask(), soon(0.3)))
        assert streamed.value.kind is ErrorKind.TIMEOUT
        assert time.monotonic() - started < 2.0
        async with asyncio.timeout(5):  # giving up closed both upstream requests
            await h.observed.wait_disconnects(2)


@pytest.mark.parametrize("backend", backends("stream"))
async def test_a_stream_that_goes_quiet_past_the_deadline_times_out(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.token_delay_s = 5.0
        seen: list[str] = []
        with pytest.raises(ProviderError) as caught:
            async for chunk in h.provider.stream(ask(), soon(0.5)):
                if chunk is not STARTED:
                    seen.append(chunk.delta)
        assert caught.value.kind is ErrorKind.TIMEOUT
        assert seen == ["Hello"]


@pytest.mark.parametrize("backend", backends("chat"))
async def test_an_upstream_that_is_down_is_unavailable(backend: Backend) -> None:
    async with backend.start("chat") as h:
        assert h.down is not None, "a remote backend's harness says how to stop its upstream"
        await h.down()
        with pytest.raises(ProviderError) as unary:
            await h.provider.generate(ask(), soon(5))
        assert unary.value.kind is ErrorKind.UNAVAILABLE, unary.value
        with pytest.raises(ProviderError) as streamed:
            await collect(h.provider.stream(ask(), soon(5)))
        assert streamed.value.kind is ErrorKind.UNAVAILABLE, streamed.value


@pytest.mark.parametrize("backend", backends("chat"))
async def test_cancelling_generate_closes_the_upstream_request(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.delay_s = 30.0
        task = asyncio.create_task(h.provider.generate(ask(), soon(60)))
        async with asyncio.timeout(5):
            await h.observed.wait(lambda o: bool(o.requests))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            await h.observed.wait_disconnects(1)


@pytest.mark.parametrize("backend", backends("stream"))
async def test_closing_a_stream_closes_the_upstream_stream(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.tokens = [f" t{i}" for i in range(100)]
        h.script.token_delay_s = 0.05
        stream = h.provider.stream(ask(), soon(60))
        first = await anext(stream)
        if first is STARTED:
            first = await anext(stream)
        assert first.delta == " t0"
        await stream.aclose()
        async with asyncio.timeout(5):
            await h.observed.wait_disconnects(1)


# -- tools --------------------------------------------------------------------------------

WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {}})


@pytest.mark.parametrize("backend", backends("tools"))
async def test_tool_calls_come_back_unified(backend: Backend) -> None:
    async with backend.start("chat") as h:
        h.script.tokens = []
        h.script.finish = "tool_calls"
        h.script.tool_call = ("call_1", "get_weather", '{"city": "Oslo"}')
        request = ask(tools=(WEATHER,), tool_choice="auto")
        response = await h.provider.generate(request, soon(10))
        assert response.finish_reason == "tool_calls"
        [call] = response.tool_calls
        assert (call.id, call.name) == ("call_1", "get_weather")
        assert _json(call.arguments) == {"city": "Oslo"}
        chunks = await collect(h.provider.stream(request, soon(10)))
        [streamed] = chunks[-1].tool_calls
        assert (streamed.id, streamed.name) == ("call_1", "get_weather")
        assert _json(streamed.arguments) == {"city": "Oslo"}
        assert chunks[-1].finish_reason == "tool_calls"


def _json(text: str) -> Any:
    return json.loads(text)


# -- embeddings and probes ----------------------------------------------------------------


@pytest.mark.parametrize("backend", backends("embed"))
async def test_embed_returns_one_vector_per_text_in_order(backend: Backend) -> None:
    async with backend.start("embed") as h:
        result = await h.provider.embed(["a", "bb", "ccc"])
        assert len(result.vectors) == 3
        assert all(len(v) == len(result.vectors[0]) for v in result.vectors)
        if h.observed.requests:  # remote upstreams: the fake's deterministic vectors
            assert [v[:2] for v in result.vectors] == [[1.0, 0.0], [3.0, 1.0], [5.0, 2.0]]


@pytest.mark.parametrize("backend", backends("chat"))
async def test_probe_passes_when_healthy_and_fails_when_not(backend: Backend) -> None:
    async with backend.start("chat") as h:
        await h.provider.probe()
        h.unhealthy()
        with pytest.raises(ProviderError):
            await h.provider.probe()
