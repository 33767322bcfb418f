"""Recording spans in tests: tracing on with the SDK's in-memory exporter, and
small readers of what it finished."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import tracing
from router import spans

Finished = tuple[ReadableSpan, ...]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on (every trace sampled) for the test; off again after it."""
    found = InMemorySpanExporter()
    config = tracing.TracingConfig(enabled=True)
    provider = tracing.setup(config, SimpleSpanProcessor(found), environ={})
    assert provider is not None and spans.ON
    yield found
    tracing.shutdown(provider)
    assert not spans.ON


def by_name(finished: Finished, name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def one(finished: Finished, name: str) -> ReadableSpan:
    [found] = by_name(finished, name)
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def traceparent(span: ReadableSpan) -> str:
    """The W3C header that names `span` as the parent (flags: sampled, and
    the SDK's "random trace id" of W3C level 2)."""
    assert span.context is not None
    return f"00-{hex_trace(span)}-{span_id(span):016x}-{span.context.trace_flags:02x}"


async def finished_when(exporter: InMemorySpanExporter, name: str) -> Finished:
    """The server ends its span once the call ended, maybe after its client saw it."""
    for _ in range(200):
        done = exporter.get_finished_spans()
        if by_name(done, name):
            return done
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name} span")
