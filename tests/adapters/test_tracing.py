# ruff: noqa: F811  (pytest fixtures imported from other modules are parameters here)
"""The upstream span of every provider in adapters/, each against its local
wire-level fake (the contract suite's harnesses): its name, kind, parent and
attributes, and the W3C `traceparent` the upstream received (HTTP headers, or
gRPC metadata for Triton) naming it, recorded with the SDK's in-memory exporter.
ONNX runs in process: a span, and nothing to propagate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing
from router import spans
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from tests.adapters.test_contract import (  # noqa: F401 (fixtures)
    Factory,
    _api_key,
    anthropic_backend,
    ask,
    collect,
    onnx_backend,
    openai_backend,
    soon,
    triton_backend,
)
from tests.traces import exporter, one, parent_of, traceparent  # noqa: F401 (fixtures)

Call = Callable[[Provider], Awaitable[Any]]
Expected = Callable[[Any, Any], dict[str, Any]]  # the span's attributes, given provider and result
HTTP_STATUS = "http.response.status_code"
GRPC_STATUS = "rpc.grpc.status_code"


async def generate(provider: Provider) -> Any:
    return await provider.generate(ask(), soon(10))


async def stream(provider: Provider) -> Any:
    return await collect(provider.stream(ask(), soon(10)))


async def embed(provider: Provider) -> Any:
    return await provider.embed(["a", "bb"])


def http(url: str, **more: Any) -> Expected:
    """The HTTP adapters' attributes: `url` is the path under the base URL."""

    def expected(provider: Any, result: Any) -> dict[str, Any]:
        base = provider.settings.base_url.rstrip("/")
        return {"http.request.method": "POST", "url.full": base + url, **more}

    return expected


def grpc_call(method: str, **more: Any) -> Expected:
    def expected(provider: Any, result: Any) -> dict[str, Any]:
        return {
            "rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService",
            "rpc.method": method, "server.address": provider.settings.url, **more,
        }  # fmt: skip

    return expected


@dataclass(frozen=True)
class Case:
    id: str
    backend: Factory
    kind: str  # what the harness serves: "chat" or "embed"
    call: Call
    attributes: Expected
    span_kind: SpanKind = SpanKind.CLIENT
    propagates: bool = True  # the upstream is remote: it is sent the traceparent

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


CASES = [
    Case("openai-generate", openai_backend, "chat", generate,
         http("/chat/completions", **{HTTP_STATUS: 200})),
    Case("openai-stream", openai_backend, "chat", stream,
         http("/chat/completions", **{HTTP_STATUS: 200})),
    Case("openai-embed", openai_backend, "embed", embed, http("/embeddings")),
    Case("anthropic-generate", anthropic_backend, "chat", generate,
         http("/v1/messages", **{HTTP_STATUS: 200})),
    Case("anthropic-stream", anthropic_backend, "chat", stream,
         http("/v1/messages", **{HTTP_STATUS: 200})),
    Case("triton-generate", triton_backend, "chat", generate,
         grpc_call("ModelStreamInfer", **{GRPC_STATUS: 0})),
    Case("triton-stream", triton_backend, "chat", stream,
         grpc_call("ModelStreamInfer", **{GRPC_STATUS: 0})),
    Case("triton-embed", triton_backend, "embed", embed,
         grpc_call("ModelInfer", **{GRPC_STATUS: 0})),
    Case("onnx-embed", onnx_backend, "embed", embed,
         lambda _, result: {"infergate.texts": 2, "infergate.tokens": result.usage.input_tokens},
         span_kind=SpanKind.INTERNAL, propagates=False),
]  # fmt: skip
REMOTE = [c.param() for c in CASES if c.propagates]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
async def test_the_upstream_call_has_a_span_and_the_upstream_gets_its_traceparent(
    exporter: InMemorySpanExporter, case: Case
) -> None:
    async with case.backend(case.kind) as h:
        with spans.span("infergate.attempt") as attempt:
            result = await case.call(h.provider)
        done = exporter.get_finished_spans()
        upstream = one(done, "infergate.upstream")
        assert upstream.kind is case.span_kind
        assert dict(upstream.attributes or {}) == case.attributes(h.provider, result)
        assert parent_of(upstream) == attempt.get_span_context().span_id
        assert upstream.status.status_code is StatusCode.UNSET
        sent = [headers.get("traceparent") for headers in h.observed.headers]
        assert sent == ([traceparent(upstream)] if case.propagates else [])
        assert not case.propagates or sent[0].endswith(("-01", "-03"))  # sampled
        assert upstream.context is not None
        assert upstream.context.trace_id == attempt.get_span_context().trace_id


@dataclass(frozen=True)
class Failure:
    id: str
    backend: Factory
    kind: str
    call: Call
    status: int  # the fake's (HTTP; the Triton fake sends its gRPC code)
    attribute: tuple[str, int]  # on the span
    error: ErrorKind


FAILURES = [
    Failure("openai-generate", openai_backend, "chat", generate, 503, (HTTP_STATUS, 503),
            ErrorKind.UPSTREAM_5XX),
    Failure("openai-embed", openai_backend, "embed", embed, 429, (HTTP_STATUS, 429),
            ErrorKind.RATE_LIMITED),
    Failure("anthropic-generate", anthropic_backend, "chat", generate, 529, (HTTP_STATUS, 529),
            ErrorKind.UPSTREAM_5XX),
    Failure("anthropic-stream", anthropic_backend, "chat", stream, 401, (HTTP_STATUS, 401),
            ErrorKind.AUTH),
    Failure("triton-stream", triton_backend, "chat", stream, 503, (GRPC_STATUS, 14),
            ErrorKind.UNAVAILABLE),
    Failure("triton-embed", triton_backend, "embed", embed, 404, (GRPC_STATUS, 5),
            ErrorKind.NOT_FOUND),
]  # fmt: skip


@pytest.mark.parametrize("failure", [pytest.param(f, id=f.id) for f in FAILURES])
async def test_a_failed_upstream_call_marks_its_span_with_the_status(
    exporter: InMemorySpanExporter, failure: Failure
) -> None:
    async with failure.backend(failure.kind) as h:
        h.script.status = failure.status
        with pytest.raises(ProviderError) as raised:
            await failure.call(h.provider)
        assert raised.value.kind is failure.error
        upstream = one(exporter.get_finished_spans(), "infergate.upstream")
        name, value = failure.attribute
        assert upstream.attributes is not None and upstream.attributes[name] == value
        assert upstream.status.status_code is StatusCode.ERROR
        assert [x.get("traceparent") for x in h.observed.headers] == [traceparent(upstream)]


async def test_closing_a_triton_stream_early_ends_its_span_cancelled(
    exporter: InMemorySpanExporter,
) -> None:
    async with triton_backend("chat") as h:
        h.script.token_delay_s = 0.05
        chunks = h.provider.stream(ask(), soon(10))
        assert (await anext(chunks)).delta == "Hello"
        await chunks.aclose()
        upstream = one(exporter.get_finished_spans(), "infergate.upstream")
        assert upstream.attributes is not None and upstream.attributes[GRPC_STATUS] == 1
        assert upstream.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("case", REMOTE)
async def test_tracing_off_sends_no_traceparent(case: Case) -> None:
    assert not spans.ON
    async with case.backend(case.kind) as h:
        await case.call(h.provider)
        assert h.observed.headers and all("traceparent" not in x for x in h.observed.headers)


@pytest.fixture
def sampled_out() -> Iterator[InMemorySpanExporter]:
    """Tracing on with a sampler that keeps no new trace."""
    found = InMemorySpanExporter()
    config = tracing.TracingConfig(enabled=True, sampler_ratio=0.0)
    provider = tracing.setup(config, SimpleSpanProcessor(found), environ={})
    assert provider is not None
    yield found
    tracing.shutdown(provider)


@pytest.mark.parametrize("case", REMOTE)
async def test_in_a_dropped_trace_no_span_is_made_and_the_upstream_is_told_so(
    sampled_out: InMemorySpanExporter, case: Case
) -> None:
    async with case.backend(case.kind) as h:
        root = spans.start("rpc", kind=SpanKind.SERVER)
        with spans.current(root):
            await case.call(h.provider)
        root.end()
        assert sampled_out.get_finished_spans() == ()
        found = root.get_span_context()
        assert not found.trace_flags.sampled
        unsampled = f"00-{found.trace_id:032x}-{found.span_id:016x}-{found.trace_flags:02x}"
        # The root is valid but unrecorded: its id goes on, flagged not sampled.
        assert [x.get("traceparent") for x in h.observed.headers] == [unsampled]
