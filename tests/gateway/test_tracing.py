# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""OpenTelemetry traces, recorded with the SDK's in-memory exporter: the span
tree of a routed call with a fallback, W3C traceparent in (gRPC, HTTP) and out
(upstream), a task's run in its submitter's trace, and nothing when off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing
from gateway.pb import router_pb2_grpc
from gateway.rpc_spans import TracingInterceptor
from gateway.tasks.handlers import TaskContext, TaskType, TaskTypes
from gateway.tasks.model import TaskState
from gateway.tasks.worker import Worker
from router import spans
from tests.conftest import StartGateway, chat
from tests.fakes.openai_server import OpenAIFake
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    QueueFactory,
    _s3_credentials,
    clock,
    make_memory_queue,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    config = tracing.TracingConfig(enabled=True)
    provider = tracing.setup(config, SimpleSpanProcessor(found), environ={})
    assert provider is not None and spans.ON
    yield found
    tracing.shutdown(provider)
    assert not spans.ON


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def one(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
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


async def finished_when(exporter: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, ...]:
    """The server ends its span once the call ended, maybe after its client saw it."""
    for _ in range(200):
        done = exporter.get_finished_spans()
        if by_name(done, name):
            return done
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name} span")


GENERATE = "infergate.v1.Router/Generate"


async def test_the_span_tree_of_a_call_with_a_failed_attempt_and_a_fallback(
    exporter: InMemorySpanExporter, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(top={"retry": {"retries": 0}})
    assert isinstance(gateway.interceptors[0], TracingInterceptor)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        await stub.Generate(chat("failover"), metadata=(("traceparent", TRACEPARENT),))
    done = await finished_when(exporter, GENERATE)
    server = one(done, GENERATE)
    assert server.kind is SpanKind.SERVER
    assert hex_trace(server) == TRACE_ID and parent_of(server) == int(CLIENT_SPAN, 16)
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 0
    route = one(done, "infergate.route")
    assert parent_of(route) == span_id(server)
    assert route.attributes == {
        "infergate.alias": "failover", "infergate.deployment": "good", "infergate.cache": "",
    }  # fmt: skip
    plan = one(done, "infergate.plan")
    assert parent_of(plan) == span_id(route)
    assert plan.attributes is not None and plan.attributes["infergate.candidates"] == "bad,good"
    failed, served = sorted(by_name(done, "infergate.attempt"), key=lambda s: s.start_time or 0)
    assert parent_of(failed) == parent_of(served) == span_id(route)
    assert failed.attributes is not None and served.attributes is not None
    assert failed.attributes["infergate.deployment"] == "bad"
    assert failed.attributes["infergate.outcome"] == "upstream_5xx"
    assert failed.attributes["infergate.attempt"] == 1
    assert failed.status.status_code is StatusCode.ERROR
    assert served.attributes["infergate.deployment"] == "good"
    assert served.attributes["infergate.outcome"] == "ok"
    assert served.attributes["infergate.attempt"] == 2
    assert served.attributes["infergate.fallback"] is True
    assert served.status.status_code is StatusCode.UNSET
    assert {hex_trace(s) for s in done} == {TRACE_ID}


async def test_auth_and_limits_have_spans_in_the_calls_trace(
    exporter: InMemorySpanExporter, start_gateway: StartGateway
) -> None:
    apps = {"auth": {"enabled": False}, "usage": {"enabled": True},
            "store": {"url": "sqlite+aiosqlite://"}}  # fmt: skip
    gateway = await start_gateway(top={"apps": apps})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        await router_pb2_grpc.RouterStub(channel).Generate(chat("chat"))
    done = await finished_when(exporter, GENERATE)
    server = one(done, GENERATE)
    for name in ("infergate.auth", "infergate.limits"):
        assert parent_of(one(done, name)) == span_id(server)


async def test_a_traceparent_header_continues_over_http(
    exporter: InMemorySpanExporter, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway()
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers={"traceparent": TRACEPARENT}) as answer:
            assert answer.status == 200
    done = await finished_when(exporter, GENERATE)
    server = one(done, GENERATE)
    assert hex_trace(server) == TRACE_ID and parent_of(server) == int(CLIENT_SPAN, 16)
    assert parent_of(one(done, "infergate.route")) == span_id(server)


async def test_the_upstream_request_carries_the_traceparent(
    exporter: InMemorySpanExporter,
    start_gateway: StartGateway,
    openai_fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERGATE_TEST_OPENAI_KEY", "sk-e2e")
    options = {"base_url": openai_fake.base_url, "api_key_env": "INFERGATE_TEST_OPENAI_KEY"}
    models = {"gpt": {"deployments": [{"name": "oa", "provider": "openai", "model": "gpt-fake",
                                       "options": options}]}}  # fmt: skip
    gateway = await start_gateway(models)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        await stub.Generate(chat("gpt"), metadata=(("traceparent", TRACEPARENT),))
        call = stub.GenerateStream(chat("gpt"), metadata=(("traceparent", TRACEPARENT),))
        assert [c async for c in call]
    await finished_when(exporter, GENERATE)
    done = await finished_when(exporter, "infergate.v1.Router/GenerateStream")
    upstream = sorted(by_name(done, "infergate.upstream"), key=lambda s: s.start_time or 0)
    assert len(upstream) == 2
    sent = [h.get("traceparent") for h in openai_fake.observed.headers]
    assert sent == [f"00-{TRACE_ID}-{span_id(s):016x}-01" for s in upstream]
    attempts = {span_id(s) for s in by_name(done, "infergate.attempt")}
    assert {parent_of(s) for s in upstream} == attempts
    assert upstream[0].kind is SpanKind.CLIENT
    assert upstream[0].attributes is not None
    assert upstream[0].attributes["http.response.status_code"] == 200


async def test_the_trace_id_is_in_the_access_log_and_routing_debug_lines(
    exporter: InMemorySpanExporter,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERGATE_ROUTING_DEBUG", "1")
    gateway = await start_gateway(access_log=True)
    with caplog.at_level(logging.INFO):
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            await stub.Generate(chat("chat"), metadata=(("traceparent", TRACEPARENT),))
        await finished_when(exporter, GENERATE)
    access = [r.getMessage() for r in caplog.records if r.name == "infergate.access"]
    assert access and access[0].endswith(f"trace_id={TRACE_ID}")
    debug = [r.getMessage() for r in caplog.records if "ROUTING_DEBUG" in r.getMessage()]
    assert debug and all(f'"trace_id":"{TRACE_ID}"' in line for line in debug)


async def test_a_tasks_run_continues_the_submitters_trace(
    exporter: InMemorySpanExporter, make_memory_queue: QueueFactory
) -> None:
    async def ok(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        with spans.span("inside"):
            return {}

    registry = TaskTypes()
    registry.add(TaskType("ok", ok))
    queue = make_memory_queue()
    with spans.span("submit") as submitter:
        task = await queue.submit("t1", "ok", {})
    worker = Worker(queue, registry, lambda: None, poll_s=0.05)  # type: ignore[arg-type, return-value]
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            async for seen in queue.watch("t1", task.id):
                if seen.state is TaskState.SUCCESS:
                    break
    finally:
        worker.stop(0)
        await running
    done = exporter.get_finished_spans()
    run = one(done, "infergate.task")
    assert run.kind is SpanKind.CONSUMER
    assert run.context is not None and run.parent is not None
    assert run.context.trace_id == submitter.get_span_context().trace_id
    assert run.parent.span_id == submitter.get_span_context().span_id
    assert parent_of(one(done, "inside")) == span_id(run)


async def test_tracing_off_records_nothing(start_gateway: StartGateway) -> None:
    found = InMemorySpanExporter()
    off = tracing.setup(tracing.TracingConfig(), SimpleSpanProcessor(found), environ={})
    assert off is None and not spans.ON
    gateway = await start_gateway()
    assert not any(isinstance(i, TracingInterceptor) for i in gateway.interceptors)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        await stub.Generate(chat("failover"), metadata=(("traceparent", TRACEPARENT),))
    assert found.get_finished_spans() == ()
    assert spans.trace_id() == "" and spans.span("x").__enter__() is spans.NO_SPAN


@pytest.mark.parametrize(
    ("enabled", "environ", "wanted"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (False, {"OTEL_TRACES_EXPORTER": "otlp"}, True),
        (False, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_on_by_config_or_the_standard_variables(
    enabled: bool, environ: dict[str, str], wanted: bool
) -> None:
    assert tracing.wanted(tracing.TracingConfig(enabled=enabled), environ) is wanted


def test_a_trace_the_sampler_drops_makes_no_child_spans() -> None:
    """At a sampler ratio of 0 the root is made (unrecorded) and every child
    helper is the shared no-op: no span objects per call; at 1 all are recorded."""
    for ratio, recorded in ((0.0, False), (1.0, True)):
        found = InMemorySpanExporter()
        config = tracing.TracingConfig(enabled=True, sampler_ratio=ratio)
        provider = tracing.setup(config, SimpleSpanProcessor(found), environ={})
        assert provider is not None
        try:
            root = spans.start("rpc", kind=SpanKind.SERVER)
            with spans.current(root), spans.span("child") as child:
                grandchild = spans.start("later")
                grandchild.end()
            root.end()
            assert (child is spans.NO_SPAN, grandchild is spans.NO_SPAN) == (not recorded,) * 2
            assert [s.name for s in found.get_finished_spans()] == (
                ["later", "child", "rpc"] if recorded else []
            )
        finally:
            tracing.shutdown(provider)
