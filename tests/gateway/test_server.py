"""The gateway over a real gRPC channel to a real grpc.aio server on port 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from adapters import build_provider
from adapters.mock import MockProvider
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.server import Gateway
from router.config import DeploymentConfig
from tests.conftest import MODELS, chat

Stub = router_pb2_grpc.RouterStub


async def test_health_overall_and_per_service(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    expected = {
        "": "SERVING",
        "infergate.v1.Router": "SERVING",
        "infergate.v1.Dataset": "SERVING",
        "infergate.v1.App": "SERVING",
        "infergate.v1.Tasks": "SERVING",
    }
    for service, status in expected.items():
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == status
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_four_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
    assert {"infergate.v1.Router", "infergate.v1.Dataset", "infergate.v1.App",
            "infergate.v1.Tasks", "grpc.health.v1.Health"} <= names  # fmt: skip


async def test_generate(stub: Stub) -> None:
    reply = await stub.Generate(chat("chat", "red green blue"))
    assert reply.text == "red green blue red green blue red green"
    assert (reply.model, reply.deployment, reply.finish_reason) == ("chat", "chat-a", "stop")
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (
        3, 8, 11,
    )  # fmt: skip
    assert reply.id.startswith("gen-")


async def test_stream_order_content_and_final_usage(stub: Stub) -> None:
    chunks = [c async for c in stub.GenerateStream(chat("chat", "one two three"))]
    assert "".join(c.delta for c in chunks) == "one two three one two three one two"
    assert chunks[0].deployment == "chat-a"
    assert all(not c.deployment for c in chunks[1:])
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.output_tokens == 8
    assert all(not c.finish_reason for c in chunks[:-1])


async def test_stream_first_chunk_arrives_before_the_last_is_generated(stub: Stub) -> None:
    started = time.monotonic()
    arrivals = [time.monotonic() - started async for _ in stub.GenerateStream(chat("paced"))]
    assert len(arrivals) == 21  # 20 tokens at 100/s, then the usage chunk
    assert arrivals[0] < 0.1 < 0.15 < arrivals[-1]


async def test_client_cancel_stops_the_upstream(gateway: Gateway, stub: Stub) -> None:
    provider = gateway.router.model("paced").deployments[0].provider
    call = stub.GenerateStream(chat("paced"))
    await call.read()
    assert provider.active_streams == 1  # type: ignore[attr-defined]
    call.cancel()
    for _ in range(100):
        if provider.active_streams == 0:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert provider.active_streams == 0  # type: ignore[attr-defined]
    assert provider.cancelled_streams == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("streaming", [False, True])
async def test_deadline_exceeded(stub: Stub, streaming: bool) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        if streaming:
            async for _ in stub.GenerateStream(chat("slow"), timeout=0.2):
                pass
        else:
            await stub.Generate(chat("slow"), timeout=0.2)
    assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.9  # the mock would take 1 s


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GenerateRequest(model="chat"), "messages"),
        (chat("chat", params=pb.GenerationParams(temperature=3.0)), "params.temperature"),
        (chat("chat", params=pb.GenerationParams(max_tokens=0)), "params.max_tokens"),
        (chat("chat", params=pb.GenerationParams(max_tokens=-5)), "params.max_tokens"),
        (chat("chat", deployment="nope"), "deployment"),
        (pb.GenerateRequest(model="chat", messages=[pb.Message(role="x")]), "messages[0].role"),
    ],
)
async def test_invalid_arguments_name_the_field(
    stub: Stub, request_: pb.GenerateRequest, field: str
) -> None:
    for call in (stub.Generate(request_), _drain(stub.GenerateStream(request_))):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert exc.value.details().startswith(f"{field}:")


async def _drain(call: grpc.aio.UnaryStreamCall) -> list[pb.GenerateChunk]:
    return [c async for c in call]


async def test_unknown_model_is_not_found(stub: Stub) -> None:
    for call in (stub.Generate(chat("nope")), _drain(stub.GenerateStream(chat("nope")))):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND
        assert "'nope'" in exc.value.details()


async def test_stream_failing_after_first_token_ends_with_an_error(stub: Stub) -> None:
    call = stub.GenerateStream(chat("cut", "a b c d"))
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for chunk in call:
            got.append(chunk.delta)
    assert got == ["a", " b", " c"]
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "stream cut after 3 tokens" in exc.value.details()


async def test_failover_and_health_report(stub: Stub) -> None:
    reply = await stub.Generate(chat("failover"))
    assert reply.deployment == "good"
    health = await stub.GetModelHealth(pb.GetModelHealthRequest(model="failover"))
    by_name = {d.deployment: d for d in health.deployments}
    bad, good = by_name["bad"], by_name["good"]
    assert "upstream_5xx" in bad.last_error
    assert (bad.requests, bad.failures, bad.error_rate, bad.breaker_state) == (1, 1, 1.0, "closed")
    assert bad.healthy  # one failure does not open its breaker (5 consecutive do)
    assert good.healthy and good.error_rate == 0.0 and not good.last_error
    assert good.ewma_ms_per_token > 0
    everything = await stub.GetModelHealth(pb.GetModelHealthRequest())
    assert len(everything.deployments) == 7


async def test_all_deployments_failing_is_unavailable_with_each_error(
    start_gateway: object,
) -> None:
    models = {"dead": {"deployments": [{"name": "x", "provider": "mock", "model": "error"}]}}
    gateway = await start_gateway(models)  # type: ignore[operator]
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await Stub(channel).Generate(chat("dead"))
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "x: upstream_5xx: mock 'error': injected failure" in exc.value.details()


async def test_route_and_dry_run_show_the_upstream_request(stub: Stub) -> None:
    decision = await stub.Route(chat("failover", params=pb.GenerationParams(max_tokens=3)))
    assert (decision.deployment, decision.provider) == ("bad", "mock")
    assert [c.deployment for c in decision.candidates] == ["bad", "good"]
    upstream = json_format.MessageToDict(decision.upstream_request)
    assert upstream["model"] == "error" and upstream["max_tokens"] == 3
    dry = await stub.Generate(chat("failover", dry_run=True))
    assert dry.route.deployment == "bad" and dry.text == ""


async def test_list_models_and_embed(stub: Stub) -> None:
    models = await stub.ListModels(pb.ListModelsRequest())
    failover = next(m for m in models.models if m.alias == "failover")
    assert [(d.name, d.weight) for d in failover.deployments] == [("bad", 5), ("good", 1)]
    reply = await stub.Embed(pb.EmbedRequest(model="embed", inputs=["a", "b"]))
    assert [len(e.values) for e in reply.embeddings] == [8, 8]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Embed(pb.EmbedRequest(model="embed"))
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_from_the_interceptor(stub: Stub) -> None:
    method = "/infergate.v1.Router/GenerateStream"
    ok = {"method": method, "code": "OK"}
    bad = {"method": method, "code": "NOT_FOUND"}
    before = (
        _sample("infergate_grpc_requests_total", ok),
        _sample("infergate_grpc_requests_total", bad),
        _sample("infergate_grpc_time_to_first_message_seconds_count", {"method": method}),
        _sample("infergate_tokens_streamed_total", {"model": "chat"}),
    )
    await _drain(stub.GenerateStream(chat("chat")))
    with pytest.raises(grpc.aio.AioRpcError):
        await _drain(stub.GenerateStream(chat("nope")))
    after = (
        _sample("infergate_grpc_requests_total", ok),
        _sample("infergate_grpc_requests_total", bad),
        _sample("infergate_grpc_time_to_first_message_seconds_count", {"method": method}),
        _sample("infergate_tokens_streamed_total", {"model": "chat"}),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 8]
    assert _sample("infergate_grpc_in_flight", {"method": method}) == 0


class Exploding(MockProvider):
    """A provider with a bug: it raises something that is not a ProviderError."""

    async def generate(self, request: Any, deadline: float | None) -> Any:
        raise RuntimeError("bug")


async def test_metrics_codes_for_cancel_deadline_and_unexpected_errors(
    start_gateway: Any,
) -> None:
    def factory(d: DeploymentConfig) -> Any:
        return Exploding(d.model) if d.name == "boom" else build_provider(d)

    models = {
        **MODELS,
        "boom": {"deployments": [{"name": "boom", "provider": "mock", "model": "echo"}]},
    }
    gateway = await start_gateway(models, factory=factory)
    unary, stream = "/infergate.v1.Router/Generate", "/infergate.v1.Router/GenerateStream"
    watched = [(unary, "UNKNOWN"), (unary, "DEADLINE_EXCEEDED"), (stream, "CANCELLED")]

    def counts() -> list[float]:
        return [
            _sample("infergate_grpc_requests_total", {"method": m, "code": c}) for m, c in watched
        ]

    before = counts()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = Stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Generate(chat("boom"))
        assert exc.value.code() is grpc.StatusCode.UNKNOWN
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(chat("slow"), timeout=0.1)
        call = stub.GenerateStream(chat("paced"))
        await call.read()
        call.cancel()
        for _ in range(100):
            if counts()[2] > before[2]:
                break
            await asyncio.sleep(0.01)
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 1, 1]
    for method in (unary, stream):
        assert _sample("infergate_grpc_in_flight", {"method": method}) == 0


async def test_access_log_names_each_rpc_and_never_its_key(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(MODELS, access_log=True)
    metadata = (("x-request-id", "req-42"), ("authorization", "Bearer igk_secret"))
    with caplog.at_level("INFO", logger="infergate.access"):
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            await stub.Generate(chat("chat"), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Generate(chat("nope"))
        for _ in range(200):  # the server logs once a call ended, maybe after its client saw it
            lines = [r.getMessage() for r in caplog.records if r.name == "infergate.access"]
            if len(lines) == 2:
                break
            await asyncio.sleep(0.01)
    assert len(lines) == 2
    assert lines[0].startswith("/infergate.v1.Router/Generate OK ")
    assert "request_id=req-42" in lines[0]
    assert lines[1].startswith("/infergate.v1.Router/Generate NOT_FOUND ")
    assert "request_id=-" in lines[1]
    assert not any("igk_secret" in line for line in lines)
