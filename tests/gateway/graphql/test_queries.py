"""Queries through /graphql against a real gateway: the dashboard question in
one query (and one call per kind of data, however many apps), pagination over
the RPCs' page tokens, collection search (reranked too)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from prometheus_client import REGISTRY

from gateway.pb import app_pb2, app_pb2_grpc
from gateway.server import Gateway
from tests.gateway.apps.test_auth import bearer
from tests.gateway.graphql.client import codes, query
from tests.gateway.graphql.conftest import Keys

DASHBOARD = """
query Dashboard($since: DateTime!) {
  caller { tenant }
  apps(first: 10) {
    nodes {
      name
      collections { name documentCount chunkCount }
      model { alias health { deployment healthy breakerState ewmaTtftMs errorRate } }
    }
  }
  usage(start: $since, groupBy: [MODEL]) { model requests inputTokens outputTokens }
}
"""


def calls(method: str) -> float:
    """RPCs of `method` finished so far, whatever their code."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "infergate_grpc_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["method"].endswith(method):
                    total += sample.value
    return total


async def wait_for_usage(port: int, key: str, since: str) -> None:
    for _ in range(100):
        reply = await query(port, DASHBOARD, {"since": since}, key)
        if reply["data"]["usage"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("usage never recorded")


async def test_one_query_answers_the_dashboard_question(
    gateway: Gateway, channel: grpc.aio.Channel, keys: Keys
) -> None:
    apps = app_pb2_grpc.AppStub(channel)
    await apps.Completion(
        app_pb2.ChatRequest(app="apps/helpdesk", query="paid leave"), metadata=bearer(keys.acme_dev)
    )
    since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    await wait_for_usage(gateway.http_port, keys.acme_dev, since)

    reply = await query(gateway.http_port, DASHBOARD, {"since": since}, keys.acme_dev)

    assert "errors" not in reply, reply
    data = reply["data"]
    assert data["caller"] == {"tenant": "tenants/acme"}
    [app] = data["apps"]["nodes"]  # beta's app is not listed
    assert app["name"] == "apps/helpdesk"
    assert app["collections"] == [
        {"name": "collections/handbook", "documentCount": 3, "chunkCount": 3}
    ]
    assert app["model"]["alias"] == "chat"
    [health] = app["model"]["health"]
    assert health["deployment"] == "chat-a" and health["healthy"] is True
    assert health["breakerState"] == "closed"
    assert data["usage"] == [
        {"model": "chat", "requests": 1, "inputTokens": data["usage"][0]["inputTokens"],
         "outputTokens": 8}
    ]  # fmt: skip
    assert data["usage"][0]["inputTokens"] > 0


async def test_nested_fields_are_loaded_in_one_call_per_kind_not_per_app(
    gateway: Gateway, channel: grpc.aio.Channel, keys: Keys
) -> None:
    apps = app_pb2_grpc.AppStub(channel)
    spec = app_pb2.AppSpec(
        model="chat", retrieval=app_pb2.Retrieval(collections=["collections/handbook"])
    )
    for i in range(5):
        await apps.CreateApp(
            app_pb2.CreateAppRequest(app_id=f"more-{i}", app=spec), metadata=bearer(keys.acme_dev)
        )
    methods = ("ListCollections", "GetCollection", "GetModelHealth", "ListModels", "ListApps")
    before = {m: calls(m) for m in methods}
    since = datetime.now(UTC).isoformat()

    reply = await query(gateway.http_port, DASHBOARD, {"since": since}, keys.acme_dev)

    assert "errors" not in reply, reply
    assert len(reply["data"]["apps"]["nodes"]) == 6
    made = {m: calls(m) - before[m] for m in methods}
    assert made == {
        "ListCollections": 1, "GetCollection": 0, "GetModelHealth": 1, "ListModels": 1,
        "ListApps": 1,
    }  # fmt: skip


PAGE = """
query Page($first: Int!, $after: String) {
  apps(first: $first, after: $after) {
    edges { cursor node { name } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


async def test_pages_round_trip_over_the_page_tokens(
    gateway: Gateway, channel: grpc.aio.Channel, keys: Keys
) -> None:
    apps = app_pb2_grpc.AppStub(channel)
    for i in range(6):
        await apps.CreateApp(
            app_pb2.CreateAppRequest(app_id=f"page-{i}", app=app_pb2.AppSpec(model="chat")),
            metadata=bearer(keys.acme_dev),
        )
    everything = await query(gateway.http_port, PAGE, {"first": 100}, keys.acme_dev)
    expected = [e["node"]["name"] for e in everything["data"]["apps"]["edges"]]
    assert len(expected) == 7  # helpdesk and page-0..5

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        reply = await query(gateway.http_port, PAGE, {"first": 3, "after": after}, keys.acme_dev)
        connection = reply["data"]["apps"]
        seen += [e["node"]["name"] for e in connection["edges"]]
        pages += 1
        assert connection["pageInfo"]["hasPreviousPage"] is (pages > 1)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == expected and pages == 3

    # Any edge's cursor resumes right after that edge.
    first_page = await query(gateway.http_port, PAGE, {"first": 3}, keys.acme_dev)
    middle = first_page["data"]["apps"]["edges"][1]["cursor"]
    resumed = await query(gateway.http_port, PAGE, {"first": 2, "after": middle}, keys.acme_dev)
    assert [e["node"]["name"] for e in resumed["data"]["apps"]["edges"]] == expected[2:4]


async def test_bad_page_arguments_are_invalid_argument(gateway: Gateway, keys: Keys) -> None:
    for variables in ({"first": 0}, {"first": 101}, {"first": 2, "after": "not-a-cursor"}):
        reply = await query(gateway.http_port, PAGE, variables, keys.acme_dev)
        assert codes(reply) == ["INVALID_ARGUMENT"], reply
        assert "first" in reply["errors"][0]["message"] or "after" in reply["errors"][0]["message"]


SEARCH = """
query Search($mode: SearchMode!, $filter: [Condition!]) {
  collection(name: "collections/handbook") {
    documents(first: 2) { nodes { id chunks } pageInfo { hasNextPage } }
    search(query: "paid vacation leave", mode: $mode, k: 1, filter: $filter) {
      score chunk { documentId text }
    }
  }
}
"""


async def test_a_collection_lists_its_documents_and_searches(gateway: Gateway, keys: Keys) -> None:
    for mode in ("DENSE", "LEXICAL", "HYBRID"):
        reply = await query(gateway.http_port, SEARCH, {"mode": mode}, keys.acme_user)
        assert "errors" not in reply, reply
        collection = reply["data"]["collection"]
        assert collection["documents"]["nodes"] == [
            {"id": "leave", "chunks": 1}, {"id": "office", "chunks": 1}
        ]  # fmt: skip
        assert collection["documents"]["pageInfo"]["hasNextPage"] is True
        [hit] = collection["search"]
        assert hit["chunk"]["documentId"] == "leave" and "thirty days" in hit["chunk"]["text"]

    both = {"mode": "DENSE", "filter": [{"field": "lang", "eq": "en", "in": ["en"]}]}
    reply = await query(gateway.http_port, SEARCH, both, keys.acme_user)
    assert codes(reply) == ["INVALID_ARGUMENT"]
    assert "filter[0]: give exactly one of eq, in, or range bounds" in reply["errors"][0]["message"]


RERANKED = """
query Reranked($rerank: Boolean!, $topN: Int!) {
  collection(name: "collections/handbook") {
    search(query: "paid vacation leave", k: 3, rerank: $rerank, rerankTopN: $topN) {
      score rerankScore chunk { documentId }
    }
  }
}
"""


async def test_a_search_with_rerank_returns_rerank_scores_best_first(
    gateway: Gateway, keys: Keys
) -> None:
    plain = await query(gateway.http_port, RERANKED, {"rerank": False, "topN": 0}, keys.acme_user)
    assert "errors" not in plain, plain
    assert [h["rerankScore"] for h in plain["data"]["collection"]["search"]] == [None] * 3

    reply = await query(gateway.http_port, RERANKED, {"rerank": True, "topN": 3}, keys.acme_user)
    assert "errors" not in reply, reply
    hits = reply["data"]["collection"]["search"]
    scores = [h["rerankScore"] for h in hits]
    assert len(hits) == 3 and all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert hits[0]["chunk"]["documentId"] == "leave"  # it shares the query's words
    unranked = plain["data"]["collection"]["search"]
    retrieval = {h["chunk"]["documentId"]: h["score"] for h in unranked}
    assert {h["chunk"]["documentId"]: h["score"] for h in hits} == pytest.approx(retrieval)

    bad = await query(gateway.http_port, RERANKED, {"rerank": True, "topN": 1001}, keys.acme_user)
    assert codes(bad) == ["INVALID_ARGUMENT"], bad
    assert "rerank_top_n" in bad["errors"][0]["message"]
