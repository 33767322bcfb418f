"""The Router's own API on scripted providers: the request cache and the output
filter around unary calls, hot reload, dry runs, plans with rules and fallbacks,
embeddings, probes, deadlines, cancellation, idling and ROUTING_DEBUG lines."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from router.breaker import BreakerState
from router.cache import CachedAnswer, MemoryCache
from router.config import BreakerConfig, ConfigError
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
)
from router.plan import Candidate, Decision
from router.router import Routed, Router
from router.types import Params, Response, ToolCall, Usage
from tests.router.scripted import (
    FakeClock,
    Providers,
    answer,
    config,
    dep,
    fail,
    memory_cache,
    raising,
    request,
    sleeping,
    until,
    waiting,
)

DETERMINISTIC = Params(temperature=0)


def router_for(models: dict[str, Any], providers: Providers, **top: Any) -> Router:
    return Router(config(models, **top), providers)


def probe_failed(router: Router, alias: str, name: str) -> None:
    deployment = router.model(alias).deployments[router.model(alias).index(name)]
    deployment.state.probe_error = "down"


# --- the request cache around generate -------------------------------------------------------


async def test_a_cacheable_answer_comes_from_the_cache_the_second_time() -> None:
    providers = Providers()
    call = ToolCall("c1", "lookup", '{"q": 1}')
    router = Router(
        config({"m": {"deployments": [dep("a")]}}, cache={"enabled": True}),
        providers,
        cache=memory_cache(),
    )
    providers["a"].steps.append(
        answer("found it", "tool_calls", usage=Usage(3, 2), tool_calls=(call,))
    )
    expected = Response("found it", "tool_calls", Usage(3, 2), (call,))
    assert await router.generate(request(params=DETERMINISTIC)) == Routed(expected, "a", "miss")
    await router.flush()
    hit = await router.generate(request(params=DETERMINISTIC))
    assert (hit.response, hit.deployment, hit.cache) == (expected, "", "hit")
    assert hit.hit is not None and (hit.hit.kind, hit.hit.similarity) == ("exact", 1.0)
    assert len(providers["a"].requests) == 1
    # An opted-in request is cacheable too; a sampled one is neither looked up nor stored.
    assert (await router.generate(request(cache=True))).cache == "miss"
    sampled = request(params=Params(temperature=0.7))
    assert await router.generate(sampled) == Routed(Response("ok", "stop", Usage(1, 1)), "a", "")
    await router.flush()
    assert (await router.generate(sampled)).cache == ""
    assert len(providers["a"].requests) == 4


async def test_a_cache_handed_to_a_router_whose_config_disables_it_is_not_used() -> None:
    providers, cache = Providers(), memory_cache()
    router = Router(config({"m": {"deployments": [dep("a")]}}), providers, cache=cache)
    assert router.cache is None
    for _ in range(2):
        assert (await router.generate(request(params=DETERMINISTIC))).cache == ""
        await router.flush()
    assert len(providers["a"].requests) == 2


async def test_cached_answers_pass_the_output_filter_as_fresh_ones_do() -> None:
    providers = Providers()
    router = Router(
        config(
            {"m": {"deployments": [dep("a")]}},
            cache={"enabled": True},
            filter={"terms": ["secret"]},
        ),
        providers,
        cache=memory_cache(),
    )
    providers["a"].steps.append(answer("a secret word"))
    first = await router.generate(request(params=DETERMINISTIC))
    await router.flush()
    second = await router.generate(request(params=DETERMINISTIC))
    assert first.response.text == second.response.text == "a ****** word"
    assert (first.cache, second.cache) == ("miss", "hit")


@pytest.mark.parametrize(
    ("action", "text", "finish"),
    [("mask", "our ****** plan", "length"), ("block", "our ", "content_filter")],
)
async def test_the_filter_applies_to_unary_answers(action: str, text: str, finish: str) -> None:
    providers = Providers()
    terms = {"terms": ["secret"], "action": action}
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, filter=terms)
    providers["a"].steps.append(answer("our secret plan", "length", usage=Usage(2, 3)))
    routed = await router.generate(request())
    assert routed.response == Response(text, finish, Usage(2, 3))


async def test_flush_waits_for_cache_writes_in_flight() -> None:
    gate = asyncio.Event()

    class SlowCache(MemoryCache):
        async def put(self, key: str, answer: CachedAnswer) -> None:
            await gate.wait()
            await super().put(key, answer)

    providers = Providers()
    router = Router(
        config({"m": {"deployments": [dep("a")]}}, cache={"enabled": True}),
        providers,
        cache=memory_cache(SlowCache()),
    )
    await router.generate(request(params=DETERMINISTIC))
    flushing = asyncio.create_task(router.flush())
    await asyncio.sleep(0.01)
    assert not flushing.done()
    gate.set()
    await asyncio.wait_for(flushing, 1)
    assert router._writes == set()  # a finished write is not kept
    assert (await router.generate(request(params=DETERMINISTIC))).cache == "hit"


async def test_a_failing_cache_write_fails_neither_flush_nor_aclose() -> None:
    class BrokenCache(MemoryCache):
        async def put(self, key: str, answer: CachedAnswer) -> None:
            raise RuntimeError("disk full")

    providers = Providers()
    router = Router(
        config({"m": {"deployments": [dep("a")]}}, cache={"enabled": True}),
        providers,
        cache=memory_cache(BrokenCache()),
    )
    assert (await router.generate(request(params=DETERMINISTIC))).response.text == "ok"
    await router.flush()
    await router.aclose()
    assert providers["a"].closed


# --- hot reload ---------------------------------------------------------------------------


def test_a_reload_keeps_unchanged_deployments_and_retires_the_rest() -> None:
    providers, clock = Providers(), FakeClock()
    models = {"m": {"deployments": [dep("a"), dep("b"), dep("gone")]}}
    old = Router(
        config(models, breaker={"consecutive_failures": 1, "cooldown_s": 30}),
        providers,
        clock=clock,
    )
    a_old, b_old, gone_old = old.model("m").deployments
    a_old.state.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))  # opens it
    models = {"m": {"deployments": [dep("a"), dep("b", "other-model"), dep("new")]}}
    new_config = config(
        models,
        breaker={"consecutive_failures": 2, "cooldown_s": 30},
        routing={"ewma_alpha": 0.9},
    )
    new = Router(new_config, providers, previous=old, clock=old.clock, rng=old.rng)
    a, b, added = new.model("m").deployments
    assert (a.config, a.provider, a.state) == (
        new_config.models["m"].deployments[0],
        a_old.provider,
        a_old.state,
    )
    assert a.state.breaker.state is BreakerState.OPEN  # a reload forgets no open breaker
    assert a.state.breaker.config == BreakerConfig(consecutive_failures=2, cooldown_s=30)
    assert a.state.alpha == 0.9
    assert b.provider is not b_old.provider and b.state is not b_old.state
    assert (b.name, added.name) == ("b", "new")
    assert new.retired == [b_old.provider, gone_old.provider]
    assert providers.builds == ["a", "b", "gone", "b", "new"]
    # New deployments run on the same clock: `a` is skipped until its cooldown passes.
    assert [c.deployment for c in new.route(request()).candidates] == ["b", "new", "a"]
    assert new.route(request()).candidates[2].skip_reason.startswith("circuit open")
    clock.advance(30)
    assert [c.deployment for c in new.route(request()).candidates] == ["a", "b", "new"]
    added.state.failed(ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=5))
    assert added.state.skip_reason() == "rate limited by the upstream for 5.0s more"
    assert new.clock is clock  # the gateway hands it on to the next reload


def test_a_reload_that_changes_nothing_retires_nothing_and_keeps_the_window() -> None:
    providers, clock = Providers(), FakeClock()
    models = {"m": {"deployments": [dep("a"), dep("b")]}}
    old = Router(config(models, breaker={"consecutive_failures": 2}), providers, clock=clock)
    a_old = old.model("m").deployments[0]
    a_old.state.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    new = Router(config(models, breaker={"consecutive_failures": 2}), providers, previous=old)
    assert new.retired == []
    assert [d.provider for d in new.model("m").deployments] == [
        d.provider for d in old.model("m").deployments
    ]
    assert a_old.state.breaker.window() == (1, 1)  # the same config: the window is kept
    a_old.state.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    assert a_old.state.breaker.state is BreakerState.OPEN  # the second in a row opens it


def test_a_deployment_that_cannot_be_built_names_its_path_and_hands_back_the_rest() -> None:
    providers = Providers()
    models = {"m": {"deployments": [dep("a"), dep("b", "refuse")]}}
    with pytest.raises(ConfigError) as refused:
        Router(config(models), providers)
    assert str(refused.value) == "models.m.deployments.1: cannot build b"
    assert refused.value.unused == [providers["a"]]


# --- idling and calls in flight -------------------------------------------------------------


async def test_idle_returns_only_once_every_call_has_finished() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    await asyncio.wait_for(router.idle(), 1)  # a fresh router is idle
    gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    providers["a"].steps += [waiting(gates[0]), waiting(gates[1])]
    providers["a"].embeddings.append(waiting(gates[2]))
    calls = [asyncio.create_task(router.generate(request())) for _ in range(2)]
    calls.append(asyncio.create_task(router.embed("m", ["x"])))
    await until(lambda: len(providers["a"].requests) == 3)
    state = router.model("m").deployments[0].state
    assert (router.active, state.in_flight) == (3, 3)
    idle = asyncio.create_task(router.idle())
    for gate, call in zip(gates[:2], calls, strict=False):
        gate.set()
        await call
        await asyncio.sleep(0.01)
        assert not idle.done()
    gates[2].set()
    await calls[2]
    await asyncio.wait_for(idle, 1)
    assert (router.active, state.in_flight) == (0, 0)


# --- dry runs and plans ---------------------------------------------------------------------


def test_a_dry_run_names_the_choice_the_request_and_the_skipped() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b"), dep("c")]}}, providers)
    probe_failed(router, "m", "b")
    assert router.route(request(text="hi")) == Decision(
        model="m",
        strategy="weighted_round_robin",
        deployment="a",
        provider="scripted",
        candidates=(
            Candidate("a", "scripted"),
            Candidate("c", "scripted"),
            Candidate("b", "scripted", "health probe failed: down"),
        ),
        upstream_request={"deployment": "a", "text": "hi"},
        upstream_body=b"a:hi",
    )


def test_a_dry_run_with_nothing_usable_chooses_nothing() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    probe_failed(router, "m", "a")
    assert router.route(request()) == Decision(
        model="m",
        strategy="weighted_round_robin",
        deployment="",
        provider="",
        candidates=(Candidate("a", "scripted", "health probe failed: down"),),
        upstream_request={},
        upstream_body=b"",
    )


FALLBACKS = {
    "primary": {
        "deployments": [dep("p1"), dep("p2")],
        "fallbacks": ["backup"],
        "routing_strategy": {
            "override": [
                {"when": {"tier": "gold"}, "then": {"strategy": "specific_provider",
                                                     "provider": "p2"}},
                {"when": {"tier": "silver", "zone": "eu"},
                 "then": {"strategy": "least_in_flight"}},
            ]
        },
    },
    "backup": {
        "deployments": [dep("b1"), dep("b2")],
        "routing_strategy": {
            "override": [
                {"when": {"tier": "bronze"}, "then": {"strategy": "specific_provider",
                                                       "provider": "b2"}},
            ]
        },
    },
}  # fmt: skip


def names(router: Router, **fields: Any) -> tuple[str, list[str]]:
    decision = router.route(request("primary", **fields))
    return decision.strategy, [c.deployment for c in decision.candidates]


def test_fallbacks_follow_the_own_deployments_with_their_skipped_ones_last() -> None:
    router = router_for(FALLBACKS, Providers())
    assert names(router) == ("weighted_round_robin", ["p1", "p2", "b1", "b2"])
    probe_failed(router, "primary", "p1")
    probe_failed(router, "backup", "b2")
    decision = router.route(request("primary"))
    assert decision.candidates == (
        Candidate("p2", "scripted"),
        Candidate("b1", "scripted"),
        Candidate("p1", "scripted", "health probe failed: down"),
        Candidate("b2", "scripted", "health probe failed: down"),
    )
    assert router.plan(request("primary"), stream=False).alias == "primary"


def test_a_manual_or_pinned_choice_gets_no_fallbacks() -> None:
    router = router_for(FALLBACKS, Providers())
    assert names(router, deployment="p2") == ("manual", ["p2"])
    assert names(router, metadata={"tier": "gold"}) == ("specific_provider", ["p2"])
    with pytest.raises(InvalidRequest) as refused:
        router.route(request("primary", deployment="p9"))
    assert str(refused.value) == "deployment: model 'primary' has no deployment 'p9'"


def test_a_rule_needs_all_its_metadata_and_the_first_match_wins() -> None:
    router = router_for(FALLBACKS, Providers())
    both = {"tier": "silver", "zone": "eu"}
    assert names(router, metadata=both) == ("least_in_flight", ["p1", "p2", "b1", "b2"])
    assert names(router, metadata={"tier": "silver"})[0] == "weighted_round_robin"
    assert names(router, metadata={"tier": "gold", "zone": "eu"})[0] == "specific_provider"


def test_a_fallback_model_ignores_its_own_rules() -> None:
    router = router_for(FALLBACKS, Providers())
    assert names(router, metadata={"tier": "bronze"}) == (
        "weighted_round_robin",
        ["p1", "p2", "b1", "b2"],
    )


async def test_an_unknown_model_is_named() -> None:
    router = router_for({"m": {"deployments": [dep("a")]}}, Providers())
    with pytest.raises(ModelNotFound) as refused:
        await router.generate(request("nope"))
    assert (refused.value.model, str(refused.value)) == ("nope", "model 'nope' is not configured")


async def test_streams_rank_by_first_chunk_and_unary_calls_by_token_time() -> None:
    providers = Providers()
    models = {
        "fast": {"strategy": "lowest_latency", "deployments": [dep("a"), dep("b")]},
        "edge": {"deployments": [dep("e")], "fallbacks": ["fast"]},
    }
    router = router_for(models, providers, routing={"exploration": 0})
    a, b = router.model("fast").deployments
    a.state.ewma_ttft_s, a.state.ewma_token_s = 0.1, 0.5  # a: quick to start, slow to finish
    b.state.ewma_ttft_s, b.state.ewma_token_s = 0.5, 0.1
    for alias, stream, expected in [
        ("fast", True, ["a", "b"]),
        ("fast", False, ["b", "a"]),
        ("edge", True, ["e", "a", "b"]),
        ("edge", False, ["e", "b", "a"]),
    ]:
        plan = router.plan(request(alias), stream=stream)
        assert [d.name for d in plan.candidates] == expected, (alias, stream)
    assert router.route(request("fast")).deployment == "b"
    assert (await router.generate(request("fast"))).deployment == "b"
    assert (await router.embed("fast", ["x"])).deployment == "b"
    stream = router.stream(request("fast"))
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert stream.deployment == "a"


# --- deadlines, attempt limits, cancellation ---------------------------------------------------


async def test_the_callers_deadline_reaches_the_provider_and_bounds_the_walk() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b")]}}, providers)
    deadline = time.monotonic() + 30
    await router.generate(request(), deadline)
    assert providers["a"].deadlines == [deadline]
    providers["b"].steps.append(sleeping(10))
    started = time.monotonic()
    with pytest.raises(AllProvidersFailed) as failed:
        await asyncio.wait_for(router.generate(request(), time.monotonic() + 0.05), 2)
    assert time.monotonic() - started < 1
    assert [(name, str(err)) for name, err in failed.value.attempts] == [
        ("b", "no answer: the caller's deadline passed")
    ]
    assert failed.value.kind is ErrorKind.TIMEOUT
    b = router.model("m").deployments[1]
    assert (b.state.failures, b.state.in_flight) == (0, 0)  # the caller gave up, not b


async def test_a_slow_attempt_is_cut_at_its_limit_and_the_next_one_serves() -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a"), dep("b")]}},
        providers,
        retry={"attempt_timeout_s": 0.05, "backoff_base_s": 0},
    )
    providers["a"].steps.append(sleeping(10))
    routed = await asyncio.wait_for(router.generate(request()), 2)
    assert routed.deployment == "b"
    a = router.model("m").deployments[0]
    assert a.state.last_error is not None
    assert (a.state.last_error.kind, str(a.state.last_error)) == (
        ErrorKind.TIMEOUT,
        "no answer within 0.05s",
    )
    assert (a.state.failures, a.state.in_flight) == (1, 0)


async def test_a_cancelled_call_is_cancelled_and_frees_its_trial_slot() -> None:
    providers, clock = Providers(), FakeClock()
    router = Router(
        config({"m": {"deployments": [dep("a"), dep("b")]}}, breaker={"consecutive_failures": 1}),
        providers,
        clock=clock,
    )
    a = router.model("m").deployments[0]
    a.state.failed(ProviderError(ErrorKind.UPSTREAM_5XX, "boom"))
    clock.advance(15)  # half-open: one trial call may go
    providers["a"].steps.append(waiting(asyncio.Event()))
    call = asyncio.create_task(router.generate(request()))
    await until(lambda: len(providers["a"].requests) == 1)
    assert not a.state.breaker.available()  # the trial slot is taken
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert providers["b"].requests == []  # a cancelled call tries nothing else
    assert (a.state.failures, a.state.in_flight) == (1, 0)
    assert a.state.breaker.available()  # ... and gave the slot back


async def test_a_provider_bug_propagates_and_frees_the_trial_slot() -> None:
    providers, clock = Providers(), FakeClock()
    router = Router(
        config({"m": {"deployments": [dep("a")]}}, breaker={"consecutive_failures": 1}),
        providers,
        clock=clock,
    )
    a = router.model("m").deployments[0]
    a.state.failed(ProviderError(ErrorKind.UPSTREAM_5XX, "boom"))
    clock.advance(15)
    providers["a"].steps.append(raising(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match=r"^bug$"):
        await router.generate(request())
    assert a.state.breaker.state is BreakerState.HALF_OPEN
    assert a.state.breaker.available()


# --- embeddings -----------------------------------------------------------------------------


async def test_embed_refuses_a_missing_model_or_no_inputs() -> None:
    router = router_for({"m": {"deployments": [dep("a")]}}, Providers())
    with pytest.raises(InvalidRequest) as refused:
        await router.embed("", ["x"])
    assert (refused.value.field, str(refused.value)) == ("model", "model: is required")
    with pytest.raises(InvalidRequest) as refused:
        await router.embed("m", [])
    assert (refused.value.field, str(refused.value)) == ("inputs", "inputs: must not be empty")


async def test_embed_fails_over_and_names_the_deployment() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b")]}}, providers)
    providers["a"].embeddings.append(fail())
    routed = await router.embed("m", ["a", "bb"])
    assert (routed.deployment, routed.embeddings.vectors) == ("b", [[1.0, 1.0], [2.0, 1.0]])
    assert [m.content for m in providers["b"].requests[0].messages] == ["a", "bb"]
    a, b = router.model("m").deployments
    assert (a.state.failures, b.state.requests, b.state.failures) == (1, 1, 0)
    assert b.state.ewma_token_s is not None


async def test_embed_stops_at_the_callers_deadline() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    providers["a"].embeddings.append(sleeping(10))
    with pytest.raises(AllProvidersFailed, match="the caller's deadline passed"):
        await asyncio.wait_for(router.embed("m", ["x"], time.monotonic() + 0.05), 2)


# --- probes ---------------------------------------------------------------------------------


async def test_probes_record_each_deployments_verdict_and_when() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep(n) for n in "abcd"]}}, providers)

    async def unhealthy() -> None:
        raise ProviderError(ErrorKind.UNAVAILABLE, "maintenance")

    async def silent() -> None:
        await asyncio.sleep(10)

    async def buggy() -> None:
        raise KeyError("status")

    providers["b"].probe_step, providers["c"].probe_step = unhealthy, silent
    providers["d"].probe_step = buggy
    started = time.time()
    await asyncio.wait_for(router.probe(0.05), 2)
    states = [d.state for d in router.model("m").deployments]
    assert [s.probe_error for s in states] == [
        "",
        "unavailable: maintenance",
        "no answer within 0.05s",
        "probe raised KeyError: 'status'",
    ]
    assert all(s.last_probe_time is not None and s.last_probe_time >= started for s in states)
    providers["b"].probe_step = None  # recovered
    await asyncio.wait_for(router.probe(0.05), 2)
    assert states[1].probe_error == ""
    assert [d.name for d in router.plan(request(), stream=False).candidates] == ["a", "b"]


# --- ROUTING_DEBUG --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "debug"), [(None, False), ("1", True), ("true", True), ("yes", False)]
)
def test_routing_debug_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, debug: bool
) -> None:
    if value is None:
        monkeypatch.delenv("INFERGATE_ROUTING_DEBUG", raising=False)
    else:
        monkeypatch.setenv("INFERGATE_ROUTING_DEBUG", value)
    router = router_for({"m": {"deployments": [dep("a")]}}, Providers())
    assert router.debug is debug
    assert router.walk_context.debug is debug
    on = router_for({"m": {"deployments": [dep("a")]}}, Providers(), routing={"debug": True})
    assert on.debug is True


def debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "infergate.routing" and r.getMessage().startswith("ROUTING_DEBUG ")
    ]


def line(**fields: Any) -> str:
    return "ROUTING_DEBUG " + json.dumps(fields, separators=(",", ":"))


async def test_debug_lines_explain_the_plan_each_failure_and_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    providers = Providers()
    router = Router(
        config(
            {"m": {"deployments": [dep("a"), dep("b"), dep("c")]}},
            routing={"debug": True},
            cache={"enabled": True},
        ),
        providers,
        cache=memory_cache(),
    )
    probe_failed(router, "m", "c")
    providers["a"].steps.append(fail(ErrorKind.UPSTREAM_5XX, "bad gateway"))
    caplog.set_level(logging.INFO, logger="infergate.routing")
    await router.generate(request(request_id="r1", params=DETERMINISTIC))
    await router.flush()
    await router.generate(request(request_id="r2", params=DETERMINISTIC))
    await router.embed("m", ["x"])
    m = "m"
    assert debug_lines(caplog) == [
        line(request_id="r1", alias=m, strategy="weighted_round_robin",
             candidates=[{"deployment": "a", "skip": ""}, {"deployment": "b", "skip": ""},
                         {"deployment": "c", "skip": "health probe failed: down"}],
             chosen="a"),
        line(request_id="r1", alias=m, failed="a", kind="upstream_5xx", error="bad gateway"),
        line(request_id="r1", alias=m, served="b"),
        line(request_id="r2", alias=m, cache="hit", kind="exact", similarity=1.0, source="r1"),
        line(request_id="", alias=m, served="b"),  # the rotation moved on
    ]  # fmt: skip


async def test_a_call_with_nothing_to_try_logs_no_choice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = router_for({"m": {"deployments": [dep("a")]}}, Providers(), routing={"debug": True})
    probe_failed(router, "m", "a")
    caplog.set_level(logging.INFO, logger="infergate.routing")
    with pytest.raises(AllProvidersFailed) as failed:
        await router.generate(request(request_id="r3"))
    assert str(failed.value) == (
        "no deployment of 'm' is available (a skipped: health probe failed: down)"
    )
    assert debug_lines(caplog) == [
        line(request_id="r3", alias="m", strategy="weighted_round_robin",
             candidates=[{"deployment": "a", "skip": "health probe failed: down"}], chosen=None)
    ]  # fmt: skip


async def test_no_debug_lines_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    router = router_for({"m": {"deployments": [dep("a")]}}, Providers())
    caplog.set_level(logging.INFO, logger="infergate.routing")
    await router.generate(request())
    assert [c.delta async for c in router.stream(request())] == ["o", "k", ""]
    assert debug_lines(caplog) == []
