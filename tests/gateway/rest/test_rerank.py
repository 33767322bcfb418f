"""POST /v1/rerank, the Cohere/Jina-compatible route, over HTTP through a
started gateway: both document shapes, return_documents, both vendors' usage
fields, and errors in Cohere's `{"message"}` shape with the shim's statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.conftest import StartGateway

DOCS = ["the weather is cold", "dogs chase cats", "cats chase mice"]
MODELS: dict[str, Any] = {
    "rerank": {"deployments": [{"name": "words", "provider": "mock", "model": "echo"}]},
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo"}]},
}


@pytest.fixture
async def http(start_gateway: StartGateway) -> AsyncIterator[httpx2.AsyncClient]:
    gateway = await start_gateway(MODELS)
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx2.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def test_cohere_body_with_text_objects_and_documents_back(http: httpx2.AsyncClient) -> None:
    body = {"model": "rerank", "query": "cats chase mice", "top_n": 2, "return_documents": True,
            "documents": [{"text": d} for d in DOCS]}  # fmt: skip
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["model"] == "rerank" and reply["id"].startswith("rerank-")
    assert [(r["index"], r["document"]["text"]) for r in reply["results"]] == [
        (2, DOCS[2]), (1, DOCS[1])
    ]  # fmt: skip
    assert reply["results"][0]["relevance_score"] == pytest.approx(1.0)
    assert reply["meta"]["billed_units"] == {"search_units": 0}
    assert reply["usage"]["total_tokens"] == 3 * 3 + 4 + 3 + 3


async def test_jina_body_with_strings_and_no_documents_back(http: httpx2.AsyncClient) -> None:
    answer = await http.post("/v1/rerank", json={"model": "rerank", "query": "cold weather",
                                                 "documents": DOCS})  # fmt: skip
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]  # all of them: no top_n
    assert all("document" not in r for r in results)


async def test_the_transcoded_rpc_lives_beside_it(http: httpx2.AsyncClient) -> None:
    body = {"model": "rerank", "query": "cats", "documents": DOCS, "topN": 1}
    answer = await http.post("/v1/router/rerank", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == [{"index": 1, "relevanceScore": 1.0}]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "q", "documents": ["d"]}, 400, "model: required"),
        ({"model": "rerank", "query": "q", "documents": "d"}, 400, "documents: must be a list"),
        ({"model": "rerank", "query": "q", "documents": [{"t": 1}]}, 400, "documents[0]:"),
        ({"model": "rerank", "query": "q", "documents": ["d"], "top_n": 1.5}, 400, "top_n:"),
        ({"model": "rerank", "query": "", "documents": ["d"]}, 400, "query: must not be empty"),
        ({"model": "rerank", "query": "q", "documents": []}, 400, "documents: must hold"),
        ({"model": "rerank", "query": "q", "documents": ["d"], "top_n": -1}, 400, "top_n: must"),
        ({"model": "nope", "query": "q", "documents": ["d"]}, 404, "'nope'"),
    ],
)
async def test_errors_have_cohere_s_shape(
    http: httpx2.AsyncClient, body: dict[str, Any], status: int, message: str
) -> None:
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == status
    assert message in answer.json()["message"]


async def test_a_top_n_above_the_documents_returns_them_all(http: httpx2.AsyncClient) -> None:
    # What Cohere's and Jina's clients send with a fixed top_n over fewer documents.
    body = {"model": "rerank", "query": "cats", "documents": ["cats", "dogs"], "top_n": 3}
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 200
    assert sorted(r["index"] for r in answer.json()["results"]) == [0, 1]


async def test_a_body_that_is_not_json_is_a_400(http: httpx2.AsyncClient) -> None:
    answer = await http.post(
        "/v1/rerank", content=b"{", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and "message" in answer.json()
