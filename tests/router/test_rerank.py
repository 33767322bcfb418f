"""Router.rerank on scripted providers: routing, failover, deployments that
cannot rerank (UNIMPLEMENTED), validation, and the Provider default."""

from __future__ import annotations

import time
from typing import Any

import pytest

from adapters import build_provider
from router.breaker import BreakerState
from router.config import DeploymentConfig
from router.errors import AllProvidersFailed, ErrorKind, InvalidRequest, ProviderError
from router.router import Router
from router.types import Ranked, ranked
from tests.router.scripted import Providers, config, dep, fail

DOCS = ["a", "ccc", "bb"]


def router_for(models: dict[str, Any], providers: Providers, **top: Any) -> Router:
    return Router(config(models, **top), providers)


async def test_rerank_routes_to_the_plan_and_cuts_to_top_n() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    deadline = time.monotonic() + 60
    routed = await router.rerank("m", "q", DOCS, 2, deadline)
    assert routed.deployment == "a"
    assert routed.ranking.results == [Ranked(1, 3.0), Ranked(2, 2.0)]
    assert routed.ranking.usage.input_tokens == 3
    assert providers["a"].requests[0].messages[0].content == "q"
    assert providers["a"].deadlines == [deadline]
    every = await router.rerank("m", "q", DOCS)  # top_n 0: all
    assert [r.index for r in every.ranking.results] == [1, 2, 0]


async def test_rerank_fails_over_and_counts_the_failure() -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a"), dep("b")]}}, providers)
    providers["a"].rerankings.append(fail(ErrorKind.UPSTREAM_5XX))
    routed = await router.rerank("m", "q", DOCS)
    assert routed.deployment == "b"
    a, b = router.model("m").deployments
    assert (a.state.failures, b.state.requests, b.state.failures) == (1, 1, 0)


async def test_a_deployment_that_cannot_rerank_is_passed_over_without_blame() -> None:
    providers = Providers()
    models = {"m": {"deployments": [dep("a"), dep("b")]}}
    router = router_for(models, providers, retry={"retries": 2, "backoff_base_s": 0})
    unable = fail(ErrorKind.UNIMPLEMENTED, "no reranker")
    providers["a"].rerankings.extend([unable, unable])
    providers["b"].rerankings.append(fail(ErrorKind.UPSTREAM_5XX))
    routed = await router.rerank("m", "q", DOCS)
    # a refused once and was not asked again; b failed once, then served.
    assert routed.deployment == "b"
    assert len(providers["a"].requests) == 1 and len(providers["b"].requests) == 2
    a, _ = router.model("m").deployments
    # Not a failure of a's upstream: its state and breaker never heard of it.
    assert (a.state.failures, a.state.last_error) == (0, None)
    assert a.state.breaker.state is BreakerState.CLOSED


async def test_an_alias_with_no_reranker_answers_unimplemented_at_once() -> None:
    providers = Providers()
    router = router_for(
        {"m": {"deployments": [dep("a"), dep("b")]}}, providers, retry={"retries": 3}
    )
    for name in "ab":
        providers[name].rerankings.append(fail(ErrorKind.UNIMPLEMENTED, "no reranker"))
    with pytest.raises(AllProvidersFailed) as failed:
        await router.rerank("m", "q", DOCS)
    assert failed.value.kind is ErrorKind.UNIMPLEMENTED
    assert [name for name, _ in failed.value.attempts] == ["a", "b"]  # no second round


@pytest.mark.parametrize(
    ("model", "query", "documents", "top_n", "field"),
    [
        ("", "q", ["x"], 0, "model"),
        ("m", " ", ["x"], 0, "query"),
        ("m", "q", [], 0, "documents"),
        ("m", "q", ["x"] * 1001, 0, "documents"),
        ("m", "q", ["x"], -1, "top_n"),
    ],
)
async def test_rerank_validation_names_the_field(
    model: str, query: str, documents: list[str], top_n: int, field: str
) -> None:
    providers = Providers()
    router = router_for({"m": {"deployments": [dep("a")]}}, providers)
    with pytest.raises(InvalidRequest) as refused:
        await router.rerank(model, query, documents, top_n)
    assert refused.value.field == field
    assert "a" not in providers.made or not providers["a"].requests


@pytest.mark.parametrize(
    ("provider", "options"),
    [
        ("openai", {"base_url": "http://127.0.0.1:9/v1"}),
        ("anthropic", {"base_url": "http://127.0.0.1:9"}),
    ],
)
async def test_chat_providers_answer_unimplemented_by_default(
    provider: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    built = build_provider(
        DeploymentConfig(name="d", provider=provider, model="x", options=options)
    )
    try:
        with pytest.raises(ProviderError) as refused:
            await built.rerank("q", ["doc"], 0, None)
        assert refused.value.kind is ErrorKind.UNIMPLEMENTED
        assert refused.value.retryable  # another deployment of the alias may serve it
    finally:
        await built.aclose()


def test_ranked_orders_best_first_and_keeps_ties_in_order() -> None:
    assert ranked([0.5, 0.9, 0.5, 0.1], 0) == [
        Ranked(1, 0.9),
        Ranked(0, 0.5),
        Ranked(2, 0.5),
        Ranked(3, 0.1),
    ]
    assert ranked([0.5, 0.9], 1) == [Ranked(1, 0.9)]


async def test_a_reranker_s_own_error_is_reported_beside_deployments_that_cannot_rerank() -> None:
    # [chat-only, reranker]: the reranker's 400 stays a 400, not a mixed "unavailable".
    providers = Providers()
    router = Router(config({"m": {"deployments": [dep("chat"), dep("rr")]}}), providers)
    providers["chat"].rerankings.append(fail(ErrorKind.UNIMPLEMENTED, "no rerank here"))
    providers["rr"].rerankings.append(fail(ErrorKind.BAD_REQUEST, "too many tokens"))
    with pytest.raises(AllProvidersFailed) as failed:
        await router.rerank("m", "q", ["a", "b"], 0)
    assert failed.value.kind is ErrorKind.BAD_REQUEST
