"""The router core on its own: no gRPC, mock providers."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from adapters import build_provider
from router.balance import SmoothWeightedRoundRobin
from router.config import ConfigError
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
)
from router.router import Router
from router.types import Message, Params, Request
from tests.conftest import make_config


def request(model: str, text: str = "one two three", **kw: object) -> Request:
    return Request(model=model, messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


def test_smooth_wrr_interleaves_exactly() -> None:
    wrr = SmoothWeightedRoundRobin([3, 1])
    picks = [wrr.pick() for _ in range(8)]
    assert picks == [0, 0, 1, 0, 0, 0, 1, 0]


def test_smooth_wrr_matches_weights_per_cycle_over_10000_picks() -> None:
    weights = [5, 3, 2]
    wrr = SmoothWeightedRoundRobin(weights)
    for _ in range(10_000 // sum(weights)):
        cycle = [wrr.pick() for _ in range(sum(weights))]
        assert [cycle.count(i) for i in range(3)] == weights
        # smooth: never more than 2 of the heaviest in a row within a cycle of 5:3:2
        assert max(len(list(g)) for _, g in itertools.groupby(cycle)) <= 2


def test_smooth_wrr_pick_without_advance_does_not_advance() -> None:
    wrr = SmoothWeightedRoundRobin([1, 1])
    assert wrr.pick(advance=False) == wrr.pick(advance=False) == wrr.pick()
    assert wrr.pick(advance=False) == 1


def test_smooth_wrr_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        SmoothWeightedRoundRobin([1, 0])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (Params(temperature=2.5), "params.temperature"),
        (Params(temperature=-0.1), "params.temperature"),
        (Params(top_p=1.5), "params.top_p"),
        (Params(max_tokens=0), "params.max_tokens"),
        (Params(stop=("",)), "params.stop[0]"),
    ],
)
async def test_invalid_params_name_the_field(params: Params, field: str) -> None:
    router = Router(make_config(), build_provider)
    with pytest.raises(InvalidRequest) as exc:
        await router.generate(request("chat", params=params))
    assert exc.value.field == field


async def test_bad_role_and_empty_messages() -> None:
    router = Router(make_config(), build_provider)
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.role"):
        await router.generate(Request("chat", (Message("robot", "hi"),)))
    with pytest.raises(InvalidRequest, match="messages: must not be empty"):
        await router.generate(Request("chat", ()))


async def test_unknown_model_and_unknown_deployment() -> None:
    router = Router(make_config(), build_provider)
    with pytest.raises(ModelNotFound):
        await router.generate(request("nope"))
    with pytest.raises(InvalidRequest) as exc:
        await router.generate(request("chat", deployment="nope"))
    assert exc.value.field == "deployment"


async def test_failover_before_first_token_records_the_failure() -> None:
    router = Router(make_config(), build_provider)
    routed = await router.generate(request("failover"))
    assert routed.deployment == "good"
    assert routed.response.text == "one two three one"
    bad, good = router.model("failover").deployments
    assert (bad.state.requests, bad.state.failures, bad.state.in_flight) == (1, 1, 0)
    assert bad.state.last_error is not None
    assert bad.state.last_error.kind is ErrorKind.UPSTREAM_5XX
    assert (good.state.requests, good.state.failures, good.state.last_error) == (1, 0, None)


async def test_all_failed_carries_every_attempt() -> None:
    models = {
        "dead": {
            "deployments": [
                {"name": "x", "provider": "mock", "model": "error"},
                {"name": "y", "provider": "mock", "model": "error?error_kind=rate_limited"},
            ]
        }
    }
    router = Router(make_config(models), build_provider)
    with pytest.raises(AllProvidersFailed) as exc:
        await router.generate(request("dead"))
    # two rounds (retries: 1 by default) over both deployments
    assert [name for name, _ in exc.value.attempts] == ["x", "y", "x", "y"]
    assert exc.value.kind is ErrorKind.UNAVAILABLE  # kinds differ


async def test_fallback_alias_is_tried_after_own_deployments() -> None:
    models = {
        "primary": {
            "deployments": [{"name": "p", "provider": "mock", "model": "error"}],
            "fallbacks": ["backup"],
        },
        "backup": {"deployments": [{"name": "b", "provider": "mock", "model": "echo"}]},
    }
    router = Router(make_config(models), build_provider)
    assert (await router.generate(request("primary"))).deployment == "b"


async def test_stream_failure_after_first_token_is_raised_not_retried() -> None:
    models = {
        "cut": {
            "deployments": [
                {"name": "c", "provider": "mock", "model": "echo?fail_after_tokens=2"},
                {"name": "ok", "provider": "mock", "model": "echo"},
            ]
        }
    }
    router = Router(make_config(models), build_provider)
    stream = router.stream(request("cut"))
    got = []
    with pytest.raises(ProviderError) as exc:
        async for chunk in stream:
            got.append(chunk.delta)
    assert got == ["one", " two"]
    assert exc.value.kind is ErrorKind.INTERRUPTED
    assert stream.deployment == "c"
    assert router.model("cut").deployments[1].state.requests == 0


async def test_route_is_a_dry_run() -> None:
    router = Router(make_config(), build_provider)
    bad = router.model("failover").deployments[0].provider
    decision = router.route(request("failover"))
    assert (decision.deployment, decision.strategy) == ("bad", "weighted_round_robin")
    assert [c.deployment for c in decision.candidates] == ["bad", "good"]
    assert decision.upstream_request["model"] == "error"
    assert decision.upstream_request["messages"] == [{"role": "user", "content": "one two three"}]
    assert bad.calls == 0  # type: ignore[attr-defined]
    # no balancer state consumed: the next real pick is the one announced
    assert router.route(request("failover")).deployment == "bad"


def test_provider_errors_name_the_deployment_path() -> None:
    models = {"m": {"deployments": [{"name": "d", "provider": "nope", "model": "x"}]}}
    with pytest.raises(ConfigError, match=r"models\.m\.deployments\.0: .*'nope' is not available"):
        Router(make_config(models), build_provider)
    models = {"m": {"deployments": [{"name": "d", "provider": "mock", "model": "echo?bogus=1"}]}}
    with pytest.raises(
        ConfigError, match=r"models\.m\.deployments\.0: mock: bogus=.1.: Extra inputs"
    ):
        Router(make_config(models), build_provider)


async def test_dry_run_order_is_the_real_order_and_fallbacks_keep_their_rotation() -> None:
    models = {
        "primary": {
            "deployments": [
                {"name": "p1", "provider": "mock", "model": "error"},
                {"name": "p2", "provider": "mock", "model": "error"},
            ],
            "fallbacks": ["backup"],
        },
        "backup": {
            "deployments": [
                {"name": "b1", "provider": "mock", "model": "echo"},
                {"name": "b2", "provider": "mock", "model": "echo"},
            ]
        },
    }
    router = Router(make_config(models), build_provider)
    for _ in range(3):
        planned = [c.deployment for c in router.route(request("primary")).candidates]
        assert planned == [d.name for d in router.plan(request("primary"), False).candidates]
    # primary's traffic never rotated backup's own balancer
    assert [d.name for d in router.plan(request("backup"), False).candidates] == ["b1", "b2"]
    assert [d.name for d in router.plan(request("backup"), False).candidates] == ["b2", "b1"]


def test_a_model_cannot_fall_back_to_itself() -> None:
    models = {
        "m": {
            "deployments": [{"name": "d", "provider": "mock", "model": "echo"}],
            "fallbacks": ["m"],
        }
    }
    with pytest.raises(ConfigError, match="cannot fall back to itself"):
        make_config(models)


async def test_stalls_are_cut_when_each_chunk_is_pulled_from_a_new_task() -> None:
    models = {"s": {"deployments": [{"name": "d", "provider": "mock",
                                     "model": "echo?tokens=5&tokens_per_second=1"}]}}  # fmt: skip
    config = make_config(models, {"retry": {"inter_token_timeout_s": 0.1, "retries": 0}})
    router = Router(config, build_provider)
    chunks = router.stream(request("s")).chunks()
    first = await asyncio.wait_for(anext(chunks), 5)  # wait_for: a task per pull
    assert first.delta == "one"
    started = time.monotonic()
    with pytest.raises(ProviderError, match="stream stalled"):
        await asyncio.wait_for(anext(chunks), 5)
    assert time.monotonic() - started < 0.5


async def test_a_filter_block_stops_the_upstream_before_the_last_chunk_goes_out() -> None:
    fast = "echo?tokens=50&tokens_per_second=1000"
    models = {"f": {"deployments": [{"name": "d", "provider": "mock", "model": fast}]}}
    config = make_config(models, {"filter": {"terms": ["two"], "action": "block"}})
    router = Router(config, build_provider)
    provider = router.model("f").deployments[0].provider
    chunks = router.stream(request("f")).chunks()
    async for chunk in chunks:
        if chunk.finish_reason:
            break
    assert chunk.finish_reason == "content_filter"
    assert provider.active_streams == 0  # type: ignore[attr-defined]
    assert router.model("f").deployments[0].state.in_flight == 0
    await chunks.aclose()
