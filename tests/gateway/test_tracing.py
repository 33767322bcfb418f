# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""OpenTelemetry traces, recorded with the SDK's in-memory exporter: the span
tree of a routed call with a fallback, W3C traceparent in (gRPC, HTTP) and out
(upstream), a task's run in its submitter's trace, and nothing when off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import struct_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing
from gateway.pb import app_pb2, app_pb2_grpc, dataset_pb2, dataset_pb2_grpc, router_pb2_grpc
from gateway.rpc_spans import TracingInterceptor
from gateway.tasks.handlers import TaskContext, TaskType, TaskTypes
from gateway.tasks.model import TaskState
from gateway.tasks.worker import Worker
from router import spans
from tests.conftest import StartGateway, chat
from tests.fakes.openai_server import OpenAIFake
from tests.gateway.apps.test_auth import bearer, new_key, secure_top
from tests.gateway.dataset.test_service import dataset_top
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    QueueFactory,
    _s3_credentials,
    clock,
    make_memory_queue,
)
from tests.traces import (  # noqa: F401 (fixtures)
    by_name,
    exporter,
    finished_when,
    hex_trace,
    one,
    parent_of,
    span_id,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


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


RAG_FLOW: dict[str, Any] = {
    "inputs": {"question": {"type": "string", "required": True}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "search", "type": "retrieval",
         "config": {"collections": ["handbook"], "query": "{{ start.question }}", "k": 2}},
        {"id": "reply", "type": "llm", "config": {"model": "chat", "messages": [
            {"role": "user", "content": "{{ search.chunks[0].text }}"}]}},
        {"id": "say", "type": "answer", "config": {"text": "{{ reply.text }}"}},
    ],
    "edges": [{"from": "start", "to": "search"}, {"from": "search", "to": "reply"},
              {"from": "reply", "to": "say"}],
}  # fmt: skip


async def test_workflow_nodes_and_their_retrieval_have_spans_in_the_runs_trace(
    exporter: InMemorySpanExporter,
    start_gateway: StartGateway,
    tmp_path: Path,
    tiny_model: Path,
) -> None:
    """A run over gRPC: a span per node (id, type, attempt) under the RPC's;
    the retrieval node's search (collection, mode, hits) with its query
    embedding under it, and the llm node's routed call under that node, all
    in the caller's trace."""
    embedder = {"model_dir": str(tiny_model)}
    top = {**secure_top(tmp_path), **dataset_top(tmp_path / "data", embedder=embedder)}
    gateway = await start_gateway(top=top)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        dev = bearer(await new_key(channel, gateway, "acme", "developer"))
        datasets = dataset_pb2_grpc.DatasetStub(channel)
        await datasets.CreateCollection(
            dataset_pb2.CreateCollectionRequest(collection_id="handbook"), metadata=dev
        )
        documents = [dataset_pb2.Document(id="leave", text="30 days of paid leave."),
                     dataset_pb2.Document(id="office", text="The office opens at 8.")]  # fmt: skip
        await datasets.UpsertDocuments(
            dataset_pb2.UpsertDocumentsRequest(collection="collections/handbook",
                                               documents=documents), metadata=dev,
        )  # fmt: skip
        apps = app_pb2_grpc.AppStub(channel)
        definition = struct_pb2.Struct()
        definition.update(RAG_FLOW)
        await apps.CreateWorkflow(
            app_pb2.CreateWorkflowRequest(
                workflow_id="rag", workflow=app_pb2.Workflow(definition=definition)
            ),
            metadata=dev,
        )
        inputs = struct_pb2.Struct()
        inputs.update({"question": "how much leave"})
        exporter.clear()
        run = await apps.RunWorkflowUnary(
            app_pb2.RunWorkflowRequest(name="workflows/rag", inputs=inputs),
            metadata=(*dev, ("traceparent", TRACEPARENT)),
        )
        assert run.status == "succeeded"
    done = await finished_when(exporter, "infergate.v1.App/RunWorkflowUnary")
    server = one(done, "infergate.v1.App/RunWorkflowUnary")
    assert hex_trace(server) == TRACE_ID
    nodes = {
        str((s.attributes or {})["infergate.node.id"]): s
        for s in by_name(done, "infergate.workflow.node")
    }
    assert set(nodes) == {"start", "search", "reply", "say"}
    types = {n["id"]: n["type"] for n in RAG_FLOW["nodes"]}
    for node_id, node in nodes.items():
        assert node.attributes is not None
        assert node.attributes["infergate.node.type"] == types[node_id]
        assert node.attributes["infergate.attempt"] == 1
        assert node.status.status_code is StatusCode.UNSET
        assert hex_trace(node) == TRACE_ID and parent_of(node) == span_id(server)
    search = one(done, "infergate.retrieval.search")
    assert parent_of(search) == span_id(nodes["search"])
    assert search.attributes == {
        "infergate.collection": "handbook", "infergate.mode": "auto", "infergate.hits": 2,
    }  # fmt: skip
    assert parent_of(one(done, "infergate.retrieval.embed")) == span_id(search)
    # The llm node streams: its plan and attempt (no route span on the streamed path).
    for name in ("infergate.plan", "infergate.attempt"):
        assert parent_of(one(done, name)) == span_id(nodes["reply"])


def test_a_span_not_made_leaves_the_unsampled_parent_current() -> None:
    """An attempt's span is not made in a dropped trace; made current, the
    no-op used to hide the RPC's unsampled span, and the upstream span
    under it started a trace of its own (a root, its traceparent naming it)."""
    found = InMemorySpanExporter()
    config = tracing.TracingConfig(enabled=True, sampler_ratio=0.0)
    provider = tracing.setup(config, SimpleSpanProcessor(found), environ={})
    assert provider is not None
    try:
        root = spans.start("rpc", kind=SpanKind.SERVER)
        with spans.current(root):
            attempt = spans.start("infergate.attempt")
            assert attempt is spans.NO_SPAN
            with spans.current(attempt):
                headers: dict[str, str] = {}
                with spans.upstream({}, headers) as upstream:
                    assert upstream is spans.NO_SPAN
                assert spans.trace_id() == format(root.get_span_context().trace_id, "032x")
        root.end()
        context = root.get_span_context()
        expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        assert headers["traceparent"] == expected
        assert found.get_finished_spans() == ()
    finally:
        tracing.shutdown(provider)
