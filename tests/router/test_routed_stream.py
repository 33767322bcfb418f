"""Routed streams on scripted providers: failover before the first chunk, the
first-chunk and deadline limits, what a served stream records, the request
cache (recording and replay) and the sensitive-word filter over chunks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import pytest

from router.cache import CachedAnswer
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
)
from router.router import Router
from router.types import Chunk, Params, Response, ToolCall, Usage
from tests.router.scripted import (
    FakeClock,
    Providers,
    StreamItem,
    config,
    dep,
    memory_cache,
    request,
    until,
)

DETERMINISTIC = Params(temperature=0)
CALL = ToolCall("c1", "lookup", '{"q": 1}')


def router_for(models: dict[str, Any], providers: Providers, **top: Any) -> Router:
    cache = memory_cache() if top.get("cache", {}).get("enabled") else None
    return Router(config(models, **top), providers, cache=cache)


async def collect(router: Router, **fields: Any) -> list[Chunk]:
    return [chunk async for chunk in router.stream(request(**fields))]


async def collect_until(router: Router, deadline: float) -> list[Chunk]:
    return [chunk async for chunk in router.stream(request(), deadline)]


# --- the attempt walk for streams ----------------------------------------------------------


async def test_a_served_stream_records_its_time_to_first_chunk() -> None:
    providers, clock = Providers(), FakeClock()
    router = Router(config({"m": {"deployments": [dep("a")]}}), providers, clock=clock)
    providers["a"].streams.append(
        [
            lambda: clock.advance(0.25),
            Chunk("o"),
            lambda: clock.advance(1.0),
            Chunk("k"),
            Chunk(finish_reason="stop", usage=Usage(1, 2)),
        ]
    )
    stream = router.stream(request())
    assert (stream.deployment, stream.cache) == ("", "")  # nothing known before it starts
    chunks = [chunk async for chunk in stream]
    assert chunks == [Chunk("o"), Chunk("k"), Chunk(finish_reason="stop", usage=Usage(1, 2))]
    assert stream.deployment == "a"
    state = router.model("m").deployments[0].state
    assert (state.requests, state.failures, state.in_flight) == (1, 0, 0)
    assert (state.ewma_ttft_s, state.ewma_token_s) == (0.25, None)


async def test_a_failure_before_the_first_chunk_fails_over() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b")]}}, providers)
    providers["a"].streams.append([ProviderError(ErrorKind.UNAVAILABLE, "refused")])
    stream = router.stream(request())
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert stream.deployment == "b"
    a, b = router.model("m").deployments
    assert (a.state.failures, b.state.requests, b.state.failures) == (1, 1, 0)


async def test_a_stream_pinned_to_a_deployment_and_bad_names_fail_at_once() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b")]}}, providers)
    stream = router.stream(request(deployment="b"))
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert (stream.deployment, providers["a"].requests) == ("b", [])
    with pytest.raises(InvalidRequest, match="has no deployment 'x'"):
        router.stream(request(deployment="x"))  # before any chunk is asked for
    with pytest.raises(ModelNotFound):
        router.stream(request("nope"))


async def test_a_slow_first_chunk_is_cut_at_the_attempt_limit() -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a"), dep("b")]}},
        providers,
        retry={"attempt_timeout_s": 0.05, "inter_token_timeout_s": 10, "backoff_base_s": 0},
    )
    providers["a"].streams.append([10.0, Chunk("late")])
    stream = router.stream(request())
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert stream.deployment == "b"
    error = router.model("m").deployments[0].state.last_error
    assert error is not None
    assert (error.kind, str(error)) == (ErrorKind.TIMEOUT, "no first chunk within 0.05s")


async def test_the_first_chunk_may_take_the_attempt_limit_not_the_inter_token_one() -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a")]}},
        providers,
        retry={"attempt_timeout_s": 5, "inter_token_timeout_s": 0.05},
    )
    providers["a"].streams.append([0.2, Chunk("o"), Chunk(finish_reason="stop")])
    assert [c.delta async for c in router.stream(request())] == ["o", ""]
    assert router.model("m").deployments[0].state.failures == 0


async def test_the_callers_deadline_reaches_the_provider_and_ends_the_wait() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    providers["a"].streams.append([10.0])
    deadline = time.monotonic() + 0.05
    started = time.monotonic()
    with pytest.raises(AllProvidersFailed) as failed:
        await asyncio.wait_for(collect_until(router, deadline), 2)
    assert time.monotonic() - started < 1
    assert [(n, e.kind, str(e)) for n, e in failed.value.attempts] == [
        ("a", ErrorKind.TIMEOUT, "no first chunk: the caller's deadline passed")
    ]
    assert providers["a"].deadlines == [deadline]
    assert router.model("m").deployments[0].state.failures == 0  # the caller gave up


async def test_a_stall_past_the_callers_deadline_says_so() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    providers["a"].streams.append([Chunk("o"), 10.0])
    got: list[str] = []
    with pytest.raises(ProviderError) as failed:
        async with asyncio.timeout(2):
            async for chunk in router.stream(request(), time.monotonic() + 0.1):
                got.append(chunk.delta)
    assert got == ["o"]
    assert (failed.value.kind, str(failed.value)) == (
        ErrorKind.TIMEOUT,
        "stream stalled: the caller's deadline passed",
    )


async def test_an_upstream_that_ends_without_a_chunk_is_a_served_empty_stream() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    providers["a"].streams.append([])
    assert await collect(router) == []
    state = router.model("m").deployments[0].state
    assert (state.requests, state.failures, state.in_flight) == (1, 0, 0)


async def test_concurrent_streams_count_in_flight() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    gate = asyncio.Event()
    for _ in range(2):
        providers["a"].streams.append([Chunk("o"), gate, Chunk(finish_reason="stop")])
    streams = [asyncio.create_task(collect(router)) for _ in range(2)]
    state = router.model("m").deployments[0].state
    await until(lambda: len(providers["a"].requests) == 2)
    assert state.in_flight == 2
    gate.set()
    for task in streams:
        assert [c.delta for c in await task] == ["o", ""]
    assert state.in_flight == 0


# --- the request cache ----------------------------------------------------------------------


async def test_a_completed_stream_is_remembered_and_replayed_as_the_same_stream() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, cache={"enabled": True})
    script: list[StreamItem] = [
        Chunk("Hel"),
        Chunk("lo", tool_calls=(CALL,)),
        Chunk(finish_reason="tool_calls", usage=Usage(4, 2)),
    ]
    providers["a"].streams.append(script)
    first = router.stream(request(params=DETERMINISTIC))
    assert [c async for c in first] == script
    assert first.cache == "miss"
    await router.flush()
    second = router.stream(request(params=DETERMINISTIC))
    replayed = [c async for c in second]
    assert replayed == list(
        CachedAnswer(("Hel", "lo"), "tool_calls", Usage(4, 2), (CALL,)).chunks()
    )
    assert (second.cache, second.deployment) == ("hit", "")
    unary = await router.generate(request(params=DETERMINISTIC))
    assert (unary.cache, unary.response) == (
        "hit",
        Response("Hello", "tool_calls", Usage(4, 2), (CALL,)),
    )
    assert len(providers["a"].requests) == 1


async def test_a_stream_whose_last_chunk_has_no_usage_is_remembered_with_zero_usage() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, cache={"enabled": True})
    providers["a"].streams.append([Chunk("x"), Chunk(finish_reason="stop")])
    await collect(router, cache=True)
    await router.flush()
    routed = await router.generate(request(cache=True))
    assert (routed.cache, routed.response) == ("hit", Response("x", "stop", Usage(0, 0)))


async def test_an_unfinished_stream_is_not_remembered() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, cache={"enabled": True})
    providers["a"].streams.append([Chunk("x"), ProviderError(ErrorKind.INTERRUPTED, "cut")])
    with pytest.raises(ProviderError, match="cut"):
        await collect(router, params=DETERMINISTIC)
    chunks = router.stream(request(params=DETERMINISTIC)).chunks()
    async with contextlib.aclosing(chunks):
        assert (await anext(chunks)).delta == "o"  # the client stops reading here
    await router.flush()
    assert (await router.generate(request(params=DETERMINISTIC))).cache == "miss"
    assert len(providers["a"].requests) == 3


async def test_a_stream_that_ends_without_finishing_is_not_remembered() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, cache={"enabled": True})
    providers["a"].streams.append([Chunk("x")])
    assert await collect(router, params=DETERMINISTIC) == [Chunk("x")]
    await router.flush()
    assert (await router.generate(request(params=DETERMINISTIC))).cache == "miss"


async def test_without_a_cache_a_deterministic_stream_is_just_a_stream() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    stream = router.stream(request(params=DETERMINISTIC))
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert (stream.cache, stream.deployment) == ("", "a")


async def test_an_uncacheable_stream_says_so_and_is_not_stored() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, cache={"enabled": True})
    stream = router.stream(request())
    assert [c.delta async for c in stream] == ["o", "k", ""]
    assert stream.cache == ""
    await router.flush()
    assert (await router.generate(request(cache=True))).cache == "miss"


# --- the sensitive-word filter over chunks ------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (  # a term split across chunks is masked; the text around it flows
            [Chunk("our se"), Chunk("cret plan"), Chunk(finish_reason="stop", usage=Usage(1, 3))],
            [Chunk("our "), Chunk("****** plan"), Chunk(finish_reason="stop", usage=Usage(1, 3))],
        ),
        (  # text held back as a possible term goes out with the finishing chunk
            [Chunk("a se"), Chunk(finish_reason="stop")],
            [Chunk("a "), Chunk("se", finish_reason="stop")],
        ),
        (  # ... which keeps its own text too
            [Chunk("x"), Chunk(" end se", finish_reason="stop", usage=Usage(1, 1))],
            [Chunk("x"), Chunk(" end se", finish_reason="stop", usage=Usage(1, 1))],
        ),
        (  # chunks held back entirely send nothing; tool calls pass
            [Chunk("a"), Chunk("s"), Chunk("e"), Chunk("x", tool_calls=(CALL,)),
             Chunk(tool_calls=(CALL,)), Chunk(finish_reason="tool_calls")],
            [Chunk("a"), Chunk("sex", tool_calls=(CALL,)), Chunk(tool_calls=(CALL,)),
             Chunk(finish_reason="tool_calls")],
        ),
        (  # a stream that ends without a finishing chunk still gets the held text
            [Chunk("a se")],
            [Chunk("a "), Chunk("se")],
        ),
    ],
)  # fmt: skip
async def test_masking_streams(script: list[StreamItem], expected: list[Chunk]) -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers, filter={"terms": ["secret"]})
    providers["a"].streams.append(script)
    assert await collect(router) == expected


async def test_blocking_ends_the_stream_with_the_text_before_the_term() -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a")]}},
        providers,
        filter={"terms": ["secret"], "action": "block"},
    )
    providers["a"].streams.append(
        [Chunk("fine "), Chunk("our secret plan"), Chunk("more"), Chunk(finish_reason="stop")]
    )
    assert await collect(router) == [
        Chunk("fine "),
        Chunk("our ", finish_reason="content_filter"),
    ]


# --- ROUTING_DEBUG --------------------------------------------------------------------------


async def test_streams_write_debug_lines_too(caplog: pytest.LogCaptureFixture) -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a"), dep("b")]}},
        providers,
        routing={"debug": True},
        cache={"enabled": True},
    )
    providers["a"].streams.append([ProviderError(ErrorKind.AUTH, "bad key")])
    caplog.set_level(logging.INFO, logger="infergate.routing")
    await collect(router, request_id="s1", params=DETERMINISTIC)
    await router.flush()
    await collect(router, request_id="s2", params=DETERMINISTIC)
    lines = [r.getMessage() for r in caplog.records if r.name == "infergate.routing"]
    expected: list[dict[str, Any]] = [
        {"request_id": "s1", "alias": "m", "strategy": "weighted_round_robin",
         "candidates": [{"deployment": "a", "skip": ""}, {"deployment": "b", "skip": ""}],
         "chosen": "a"},
        {"request_id": "s1", "alias": "m", "failed": "a", "kind": "auth", "error": "bad key"},
        {"request_id": "s1", "alias": "m", "served": "b"},
        {"request_id": "s2", "alias": "m", "cache": "hit", "kind": "exact", "similarity": 1.0,
         "source": "s1"},
    ]  # fmt: skip
    assert lines == ["ROUTING_DEBUG " + json.dumps(e, separators=(",", ":")) for e in expected]
