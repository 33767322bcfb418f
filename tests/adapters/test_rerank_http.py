"""The cohere provider (adapters/rerank_http.py) against a local fake of a
Cohere-style rerank API: the request on the wire, the answer, and every
failure translated to the router's kinds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters import build_provider
from adapters.rerank_http import RerankHttpProvider
from router.config import DeploymentConfig
from router.errors import ErrorKind, ProviderError
from router.types import Message, Ranked, Request
from tests.fakes.rerank_server import RerankFake

DOCS = ["cats sleep all day", "dogs chase cats", "the weather is cold"]


@pytest.fixture
async def fake() -> AsyncIterator[RerankFake]:
    started = await RerankFake().start()
    yield started
    await started.close()


@pytest.fixture
async def provider(
    fake: RerankFake, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RerankHttpProvider]:
    monkeypatch.setenv("TEST_RERANK_KEY", "secret-key-123")
    made = RerankHttpProvider(
        "rerank-v3", {"base_url": fake.base_url, "api_key_env": "TEST_RERANK_KEY", "timeout_s": 5}
    )
    yield made
    await made.aclose()


async def test_rerank_sends_cohere_s_body_and_reads_the_answer(
    fake: RerankFake, provider: RerankHttpProvider
) -> None:
    ranking = await provider.rerank("dogs chase cats", DOCS, 2, time.monotonic() + 5)
    assert ranking.results == [Ranked(1, 1.0), Ranked(0, pytest.approx(1 / 3))]
    assert ranking.search_units == 1 and ranking.usage.input_tokens == 0
    assert fake.observed.paths == ["POST /v1/rerank"]
    assert fake.observed.requests == [
        {"model": "rerank-v3", "query": "dogs chase cats", "documents": DOCS, "top_n": 2,
         "return_documents": False}
    ]  # fmt: skip
    assert fake.observed.headers[0]["authorization"] == "Bearer secret-key-123"


async def test_top_n_zero_asks_for_every_document_and_params_merge_under(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = await RerankFake(path="/rerank").start()
    options = {"base_url": fake.base_url + "/", "path": "/rerank",
               "params": {"max_chunks_per_doc": 4, "top_n": 99}}  # fmt: skip
    built = build_provider(
        DeploymentConfig(name="j", provider="cohere", model="jina-m", options=options)
    )
    try:
        ranking = await built.rerank("cats", DOCS, 0, None)
        assert [r.index for r in ranking.results][:2] == [0, 1]
        assert len(ranking.results) == 3
        sent = fake.observed.requests[0]
        assert (sent["top_n"], sent["max_chunks_per_doc"]) == (3, 4)  # the request's own wins
        assert "authorization" not in fake.observed.headers[0]  # no key configured
    finally:
        await built.aclose()
        await fake.close()


async def test_a_jina_answer_reports_its_tokens(
    fake: RerankFake, provider: RerankHttpProvider
) -> None:
    fake.answer = {"model": "m", "results": [{"index": 2, "relevance_score": 0.25,
                   "document": {"text": "x"}}], "usage": {"total_tokens": 42}}  # fmt: skip
    ranking = await provider.rerank("q", DOCS, 0, None)
    assert ranking.results == [Ranked(2, 0.25)]
    assert (ranking.usage.input_tokens, ranking.search_units) == (42, 0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ErrorKind.BAD_REQUEST), (401, ErrorKind.AUTH), (404, ErrorKind.NOT_FOUND),
     (402, ErrorKind.AUTH), (499, ErrorKind.UPSTREAM_5XX),  # billing limit; Cohere's "retry"
     (429, ErrorKind.RATE_LIMITED), (500, ErrorKind.UPSTREAM_5XX),
     (503, ErrorKind.UPSTREAM_5XX)],
)  # fmt: skip
async def test_http_errors_map_to_router_kinds(
    fake: RerankFake, provider: RerankHttpProvider, status: int, kind: ErrorKind
) -> None:
    fake.script.status = status
    fake.script.retry_after = "7"
    fake.script.error_message = "invalid request: secret-key-123"
    with pytest.raises(ProviderError) as failed:
        await provider.rerank("q", DOCS, 0, None)
    assert failed.value.kind is kind
    assert f"HTTP {status}" in str(failed.value)
    assert failed.value.retry_after == (7.0 if status == 429 else None)
    if kind is ErrorKind.AUTH:
        assert "secret-key-123" not in str(failed.value)
    else:
        assert "invalid request" in str(failed.value)  # the vendor's `message`


@pytest.mark.parametrize(
    "answer",
    [{"results": [{"index": 3, "relevance_score": 1.0}]}, {"results": [{"index": 0}]},
     {"no": "results"}],
)  # fmt: skip
async def test_a_malformed_answer_is_the_upstream_s_fault(
    fake: RerankFake, provider: RerankHttpProvider, answer: dict[str, Any]
) -> None:
    fake.answer = answer
    with pytest.raises(ProviderError) as failed:
        await provider.rerank("q", DOCS, 0, None)
    assert failed.value.kind is ErrorKind.UPSTREAM_5XX


async def test_deadlines_and_a_dead_upstream(
    fake: RerankFake, provider: RerankHttpProvider
) -> None:
    with pytest.raises(ProviderError) as past:
        await provider.rerank("q", DOCS, 0, time.monotonic() - 1)
    assert past.value.kind is ErrorKind.TIMEOUT and not fake.observed.requests
    fake.script.delay_s = 2.0
    with pytest.raises(ProviderError) as slow:
        await provider.rerank("q", DOCS, 0, time.monotonic() + 0.2)
    assert slow.value.kind is ErrorKind.TIMEOUT
    await fake.close()
    with pytest.raises(ProviderError) as down:
        await provider.rerank("q", DOCS, 0, None)
    assert down.value.kind is ErrorKind.UNAVAILABLE


async def test_it_serves_nothing_but_rerank(provider: RerankHttpProvider) -> None:
    ask = Request("m", (Message("user", "hi"),))
    for call in (provider.generate(ask, None), provider.embed(["x"])):
        with pytest.raises(ProviderError) as refused:
            await call
        assert refused.value.kind is ErrorKind.UNIMPLEMENTED
    await provider.probe()  # sends nothing: no free call to make


def test_the_hosted_default_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="COHERE_API_KEY"):
        build_provider(DeploymentConfig(name="c", provider="cohere", model="rerank-v3.5"))
