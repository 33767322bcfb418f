"""Routing end to end through gRPC, with mock deployments that fail, stall or flap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client import REGISTRY

from adapters.mock import MockProvider
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.server import Gateway
from router.config import DeploymentConfig
from tests.conftest import chat

Stub = router_pb2_grpc.RouterStub


class Switchable(MockProvider):
    """A mock whose behaviour the test changes while it serves."""

    def set(self, **changes: Any) -> None:
        self.settings = self.settings.model_copy(update=changes)


class Providers(dict[str, Switchable]):
    def __call__(self, d: DeploymentConfig) -> Switchable:
        return self.setdefault(d.name, Switchable(d.model, d.options))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, model: str = "echo?tokens=3", **kw: Any) -> dict[str, Any]:
    return {"name": name, "provider": "mock", "model": model, **kw}


async def served_by(stub: Stub, model: str, n: int, **fields: Any) -> list[str]:
    return [(await stub.Generate(chat(model, **fields))).deployment for _ in range(n)]


@pytest.fixture
async def channel_to(start_gateway: Any) -> Any:
    channels: list[grpc.aio.Channel] = []

    async def connect(**kw: Any) -> tuple[Gateway, Stub]:
        gateway = await start_gateway(**kw)
        channels.append(grpc.aio.insecure_channel(gateway.address))
        return gateway, Stub(channels[-1])

    yield connect
    for channel in channels:
        await channel.close()


async def test_breaker_opens_traffic_shifts_and_it_recovers_after_the_cooldown(
    channel_to: Any,
) -> None:
    providers, clock = Providers(), FakeClock()
    models = {"flappy": {"deployments": [dep("a", "error"), dep("b")]}}
    top = {"breaker": {"consecutive_failures": 3, "cooldown_s": 10}, "retry": {"retries": 0}}
    _, stub = await channel_to(models=models, top=top, factory=providers, clock=clock)
    a = providers["a"]
    # a fails; every call still succeeds on b (failover before the first token)
    assert await served_by(stub, "flappy", 6) == ["b"] * 6
    assert a.calls == 3  # WRR sent a its share until 3 consecutive failures opened it
    assert await served_by(stub, "flappy", 6) == ["b"] * 6
    assert a.calls == 3  # open: no traffic at all
    health = await stub.GetModelHealth(pb.GetModelHealthRequest(model="flappy"))
    a_health = next(d for d in health.deployments if d.deployment == "a")
    assert (a_health.healthy, a_health.breaker_state) == (False, "open")
    assert "3 consecutive failures" in a_health.reason
    # the upstream recovers; after the cooldown one trial call closes the breaker
    a.set(error_rate=0.0)
    clock.now += 9.9
    assert await served_by(stub, "flappy", 2) == ["b", "b"]
    clock.now += 0.2
    assert "a" in await served_by(stub, "flappy", 2)
    assert Counter(await served_by(stub, "flappy", 10)) == {"a": 5, "b": 5}
    health = await stub.GetModelHealth(pb.GetModelHealthRequest(model="flappy"))
    assert {d.breaker_state for d in health.deployments} == {"closed"}


async def test_a_single_deployment_is_cooled_down_too(channel_to: Any) -> None:
    providers, clock = Providers(), FakeClock()
    models = {"solo": {"deployments": [dep("only", "error")]}}
    top = {"breaker": {"consecutive_failures": 2, "cooldown_s": 30}, "retry": {"retries": 0}}
    _, stub = await channel_to(models=models, top=top, factory=providers, clock=clock)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(chat("solo"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Generate(chat("solo"))
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "only skipped: circuit open (2 consecutive failures)" in exc.value.details()
    assert providers["only"].calls == 2  # failed fast, the upstream was spared


async def test_rules_route_by_metadata_and_the_header_overrides(channel_to: Any) -> None:
    models = {
        "chat": {
            "routing_strategy": {
                "default": "weighted_round_robin",
                "override": [
                    {
                        "when": {"model_type": "code_generation"},
                        "then": {"strategy": "specific_provider", "provider": "coder"},
                    }
                ],
            },
            "deployments": [dep("general"), dep("coder")],
        }
    }
    _, stub = await channel_to(models=models)
    code = {"metadata": {"model_type": "code_generation"}}
    assert await served_by(stub, "chat", 4, **code) == ["coder"] * 4
    assert sorted(await served_by(stub, "chat", 4)) == ["coder", "coder", "general", "general"]
    pinned = (("x-infergate-deployment", "general"),)
    for _ in range(3):
        reply = await stub.Generate(chat("chat", **code), metadata=pinned)
        assert reply.deployment == "general"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Generate(chat("chat"), metadata=(("x-infergate-deployment", "nope"),))
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("deployment: model 'chat' has no deployment 'nope'")


async def test_lowest_latency_converges_on_the_fastest_and_returns_to_a_recovered_one(
    channel_to: Any,
) -> None:
    providers = Providers()
    fast, slow = "echo?tokens=2&latency_ms=1", "echo?tokens=2&latency_ms=25"
    models = {"ll": {"strategy": "lowest_latency", "deployments": [dep("x", fast), dep("y", slow)]}}
    top = {"routing": {"probe_interval_s": 0, "exploration": 0.1, "ewma_alpha": 0.5}}
    _, stub = await channel_to(models=models, top=top, factory=providers)

    async def stream_once() -> str:
        chunks = [c async for c in stub.GenerateStream(chat("ll"))]
        return chunks[0].deployment

    async def share(name: str, warm_up: int, measured: int = 40) -> int:
        for _ in range(warm_up):
            await stream_once()
        return Counter([await stream_once() for _ in range(measured)])[name]

    # With 10% exploration the fastest gets ~36 of 40 (sd ~1.9): 28 is 4 sd below.
    assert await share("x", warm_up=10) >= 28
    providers["x"].set(latency_ms=25.0)  # x degrades, y recovers
    providers["y"].set(latency_ms=1.0)
    # x's EWMA catches up on its next call; y's only when exploration tries it
    assert await share("y", warm_up=60) >= 28


async def test_retry_after_is_respected_then_reported(channel_to: Any) -> None:
    limited = "error?error_kind=rate_limited&retry_after_s=0.3"
    models = {
        "waits": {"deployments": [dep("w", limited)]},
        "gives_up": {"deployments": [dep("g", "error?error_kind=rate_limited&retry_after_s=5")]},
    }
    top = {"retry": {"retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 1.0}}
    providers = Providers()
    _, stub = await channel_to(models=models, top=top, factory=providers)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Generate(chat("waits"))
    assert time.monotonic() - started >= 0.3  # the second try waited for Retry-After
    assert providers["w"].calls == 2
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "0.3") in tuple(exc.value.trailing_metadata() or ())
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Generate(chat("gives_up"))
    assert time.monotonic() - started < 0.25  # 5 s is beyond backoff_max_s: no waiting
    assert providers["g"].calls == 1
    assert ("retry-after", "5") in tuple(exc.value.trailing_metadata() or ())


async def test_a_stalled_stream_is_cut_and_a_slow_first_token_fails_over(
    channel_to: Any,
) -> None:
    providers = Providers()
    models = {
        "stalls": {"deployments": [dep("s", "echo?tokens=5&tokens_per_second=2")]},
        "slow_start": {"deployments": [dep("late", "slow"), dep("quick")]},
    }
    top = {"retry": {"inter_token_timeout_s": 0.1, "attempt_timeout_s": 0.2, "retries": 0}}
    _, stub = await channel_to(models=models, top=top, factory=providers)
    started, got = time.monotonic(), []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for chunk in stub.GenerateStream(chat("stalls")):
            got.append(chunk.delta)
    assert got == ["hello"]
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "stream stalled: no chunk for 0.1s" in exc.value.details()
    assert time.monotonic() - started < 0.45  # the next token was due at 0.5 s
    assert providers["s"].active_streams == 0
    started = time.monotonic()
    chunks = [c async for c in stub.GenerateStream(chat("slow_start"))]
    assert chunks[0].deployment == "quick"
    assert time.monotonic() - started < 0.6


def _cache_lookups(result: str) -> float:
    labels = {"kind": "exact", "result": result}
    return REGISTRY.get_sample_value("infergate_cache_lookups_total", labels) or 0.0


async def test_cache_hits_are_marked_counted_and_replayed_as_streams(channel_to: Any) -> None:
    providers = Providers()
    models = {"c": {"deployments": [dep("d", "echo?tokens=5")]}}
    _, stub = await channel_to(models=models, top={"cache": {"enabled": True}}, factory=providers)
    cold = pb.GenerationParams(temperature=0.0)
    hits = _cache_lookups("hit")
    first = await stub.Generate(chat("c", "one two", params=cold))
    call = stub.Generate(chat("c", "one two", params=cold))
    second = await call
    assert (first.cached, second.cached) == (False, True)
    metadata = tuple(await call.initial_metadata())
    assert ("x-infergate-cache", "hit") in metadata
    assert ("x-infergate-cache-kind", "exact") in metadata
    assert (second.cache_hit.kind, second.cache_hit.similarity) == ("exact", 1.0)
    assert second.cache_hit.request_id == first.id
    assert (second.text, second.usage) == (first.text, first.usage)
    assert providers["d"].calls == 1
    streamed = [c async for c in stub.GenerateStream(chat("c", "three four", params=cold))]
    replayed = [c async for c in stub.GenerateStream(chat("c", "three four", params=cold))]
    assert [c.delta for c in replayed] == [c.delta for c in streamed]
    assert replayed[-1].usage == streamed[-1].usage and replayed[0].cached
    assert providers["d"].calls == 2
    warm = pb.GenerationParams(temperature=0.7)
    for _ in range(2):  # not deterministic and not opted in: never cached
        assert not (await stub.Generate(chat("c", "x", params=warm))).cached
    await stub.Generate(chat("c", "x", params=warm, cache=True))
    assert (await stub.Generate(chat("c", "x", params=warm, cache=True))).cached
    assert _cache_lookups("hit") - hits == 3


@pytest.mark.parametrize("action", ["mask", "block"])
async def test_sensitive_words_split_across_chunks(channel_to: Any, action: str) -> None:
    models = {"f": {"deployments": [dep("d", "echo?tokens=6")]}}
    top = {"filter": {"terms": ["secret plan"], "action": action}}
    _, stub = await channel_to(models=models, top=top)
    text = "our secret plan works"  # one word per chunk: the term spans two chunks
    streamed = [c async for c in stub.GenerateStream(chat("f", text))]
    unary = await stub.Generate(chat("f", text))
    if action == "mask":
        expected = "our *********** works our secret"
        assert "".join(c.delta for c in streamed) == expected == unary.text
        assert streamed[-1].finish_reason == unary.finish_reason == "stop"
    else:
        assert "".join(c.delta for c in streamed) == "our " == unary.text
        assert streamed[-1].finish_reason == unary.finish_reason == "content_filter"


async def test_routing_debug_explains_each_decision(
    channel_to: Any, caplog: pytest.LogCaptureFixture
) -> None:
    providers, clock = Providers(), FakeClock()
    models = {"dbg": {"deployments": [dep("broken", "error"), dep("fine")]}}
    top = {"routing": {"probe_interval_s": 0, "debug": True},
           "breaker": {"consecutive_failures": 1}, "retry": {"retries": 0}}  # fmt: skip
    _, stub = await channel_to(models=models, top=top, factory=providers, clock=clock)
    with caplog.at_level(logging.INFO, logger="infergate.routing"):
        await stub.Generate(chat("dbg"), metadata=(("x-request-id", "req-1"),))
        await stub.Generate(chat("dbg"), metadata=(("x-request-id", "req-2"),))
    lines = [r.getMessage() for r in caplog.records if "ROUTING_DEBUG" in r.getMessage()]
    decision, failure, served = [line for line in lines if '"request_id":"req-1"' in line]
    assert '"strategy":"weighted_round_robin"' in decision and '"chosen":"broken"' in decision
    assert '"failed":"broken","kind":"upstream_5xx"' in failure
    assert '"served":"fine"' in served
    second = next(line for line in lines if '"request_id":"req-2"' in line)
    assert '"chosen":"fine"' in second
    assert '{"deployment":"broken","skip":"circuit open (1 consecutive failures)' in second


async def test_active_probes_take_a_failing_deployment_out(channel_to: Any) -> None:
    providers = Providers()
    models = {"p": {"deployments": [dep("sick", "error"), dep("well")]}}
    top = {"routing": {"probe_interval_s": 0.05}}
    _, stub = await channel_to(models=models, top=top, factory=providers)
    for _ in range(100):
        health = await stub.GetModelHealth(pb.GetModelHealthRequest(model="p"))
        sick = next(d for d in health.deployments if d.deployment == "sick")
        if sick.last_probe_time.seconds:
            break
        await asyncio.sleep(0.01)
    assert not sick.healthy and sick.reason.startswith("health probe failed: upstream_5xx")
    assert abs(sick.last_probe_time.seconds - time.time()) < 5
    assert await served_by(stub, "p", 4) == ["well"] * 4
    assert providers["sick"].calls == 0


def _write(path: Path, models: dict[str, Any], **top: Any) -> None:
    path.write_text(yaml.safe_dump({"routing": {"probe_interval_s": 0}, **top, "models": models}))


def _reloads(result: str) -> float:
    return REGISTRY.get_sample_value("infergate_config_reloads_total", {"result": result}) or 0.0


async def test_reload_swaps_keeps_state_and_rejects_bad_files(
    channel_to: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    models = {"m": {"deployments": [dep("a", "error"), dep("b")]}}
    top = {"breaker": {"consecutive_failures": 1, "cooldown_s": 60}, "retry": {"retries": 0}}
    _write(path, models, **top)
    providers = Providers()
    gateway, stub = await channel_to(models=models, top=top, factory=providers, config_path=path)
    await served_by(stub, "m", 2)  # a fails once: its breaker opens
    a_state = gateway.router.model("m").deployments[0].state
    assert a_state.breaker.state == "open"
    rejected = _reloads("rejected")
    path.write_text("models: {m: {deployments: []}}")
    assert gateway.reloader is not None
    assert not await gateway.reloader.reload()
    assert _reloads("rejected") == rejected + 1
    assert await served_by(stub, "m", 2) == ["b", "b"]  # the old config still serves
    _write(path, {**models, "extra": {"deployments": [dep("e")]}}, **top)
    assert await gateway.reloader.reload()
    assert (await stub.Generate(chat("extra"))).deployment == "e"
    kept = gateway.router.model("m").deployments[0]
    assert kept.state is a_state and kept.state.breaker.state == "open"
    assert kept.provider is providers["a"]  # same upstream: same client


async def test_reload_under_concurrent_load_loses_no_request(
    channel_to: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    models = {"m": {"deployments": [dep("a", "echo?tokens=10&tokens_per_second=200")]}}
    _write(path, models)
    built: list[MockProvider] = []

    def factory(d: DeploymentConfig) -> MockProvider:
        built.append(MockProvider(d.model, d.options))
        return built[-1]

    gateway, stub = await channel_to(models=models, config_path=path, factory=factory)

    async def one() -> str:
        return "".join([c.delta async for c in stub.GenerateStream(chat("m", "ok"))])

    async def reload_repeatedly() -> None:
        for seed in range(1, 6):  # a changed upstream each time: the old client retires
            model = f"echo?tokens=10&tokens_per_second=200&seed={seed}"
            _write(path, {"m": {"deployments": [dep("a", model, weight=seed)]}})
            assert await gateway.reloader.reload()
            await asyncio.sleep(0.02)

    results = await asyncio.gather(*(one() for _ in range(150)), reload_repeatedly())
    assert results[:150] == [" ".join(["ok"] * 10)] * 150  # a closed client would fail one
    assert gateway.router.model("m").deployments[0].config.weight == 5
    assert len(built) == 6
    await gateway.router.flush()
    for _ in range(100):  # retired clients close once their snapshot is idle
        if all(p.closed for p in built[:-1]):
            break
        await asyncio.sleep(0.02)
    assert [p.closed for p in built] == [True] * 5 + [False]


async def test_the_file_is_watched(channel_to: Any, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    models = {"m": {"deployments": [dep("a")]}}
    _write(path, models)
    _, stub = await channel_to(models=models, config_path=path)
    for i in range(100):
        if i % 10 == 0:  # again now and then: a write before the watcher started is missed
            _write(path, {**models, "new": {"deployments": [dep("n")]}})
        listed = await stub.ListModels(pb.ListModelsRequest())
        if "new" in {m.alias for m in listed.models}:
            break
        await asyncio.sleep(0.05)
    assert (await stub.Generate(chat("new"))).deployment == "n"


async def test_a_callers_short_deadline_does_not_count_against_the_upstream(
    channel_to: Any,
) -> None:
    models = {"s": {"deployments": [dep("d", "echo?latency_ms=200")]}}
    top = {"breaker": {"consecutive_failures": 2}, "retry": {"retries": 0}}
    gateway, stub = await channel_to(models=models, top=top)
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Generate(chat("s"), timeout=0.05)
        assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    state = gateway.router.model("s").deployments[0].state
    for _ in range(200):  # the abandoned attempts finish on the server
        if not state.in_flight:
            break
        await asyncio.sleep(0.01)
    assert state.in_flight == 0
    assert state.breaker.state == "closed"
    assert (await stub.Generate(chat("s"), timeout=5)).deployment == "d"


async def test_a_rejected_reload_changes_no_live_state_and_closes_what_it_built(
    channel_to: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    models = {"m": {"deployments": [dep("a")]}}
    _write(path, models)
    providers = Providers()
    gateway, stub = await channel_to(models=models, factory=providers, config_path=path)
    live = gateway.router.model("m").deployments[0].state.breaker.config
    broken = {
        "m": {"deployments": [dep("a")], "breaker": {"consecutive_failures": 1}},
        "n": {"deployments": [dep("fresh"), {"name": "x", "provider": "nope", "model": "y"}]},
    }
    path.write_text(yaml.safe_dump({"routing": {"probe_interval_s": 0}, "models": broken}))
    assert not await gateway.reloader.reload()
    assert gateway.router.model("m").deployments[0].state.breaker.config is live
    assert providers["fresh"].closed  # built for the rejected config, then closed
    assert not providers["a"].closed
    assert (await stub.Generate(chat("m"))).deployment == "a"


async def test_smooth_wrr_through_grpc_is_exact_per_cycle(channel_to: Any) -> None:
    models = {"w": {"deployments": [dep("a", weight=3), dep("b", weight=1)]}}
    _, stub = await channel_to(models=models)
    picks = await served_by(stub, "w", 400)
    cycles = [picks[i : i + 4] for i in range(0, 400, 4)]
    assert all(cycle == ["a", "a", "b", "a"] for cycle in cycles)
