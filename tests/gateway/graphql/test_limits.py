"""Protection: depth, cost, token and alias limits refuse a query before it
runs, with a clear message; GraphiQL and introspection follow the config;
errors never carry a trace; `rest.graphql: false` removes the endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx

from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.graphql.client import codes, query


async def test_depth_limit(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "graphql": {"max_depth": 3}}})
    reply = await query(gateway.http_port, "{ apps { nodes { name } } }")
    assert "errors" not in reply, reply
    reply = await query(gateway.http_port, "{ apps { nodes { model { deployments { name } } } } }")
    assert codes(reply) == ["INVALID_ARGUMENT"] and reply["data"] is None
    assert "exceeds maximum operation depth of 3" in reply["errors"][0]["message"]


async def test_a_query_that_fans_out_past_the_cost_limit_is_refused(gateway: Gateway) -> None:
    # 100 apps x 100 documents x 2 fields each is far past 5000.
    wide = """{ apps(first: 100) { nodes { name collections {
                documents(first: 100) { nodes { id source } } } } } }"""
    reply = await query(gateway.http_port, wide)
    assert codes(reply) == ["INVALID_ARGUMENT"] and reply["data"] is None
    message = reply["errors"][0]["message"]
    assert message.startswith("query cost ") and "above the limit of 5000" in message
    # The same shape, asking for fewer items, is allowed (here: refused only for no key).
    narrow = wide.replace("first: 100", "first: 5")
    assert codes(await query(gateway.http_port, narrow)) == ["UNAUTHENTICATED"]
    # A variable `first` counts as the largest page it could be.
    variable = """query Q($n: Int!) { apps(first: $n) { nodes { collections {
                    documents(first: $n) { nodes { id } } } } } }"""
    assert codes(await query(gateway.http_port, variable, {"n": 1})) == ["INVALID_ARGUMENT"]


async def test_too_many_tokens_or_aliases_are_refused(gateway: Gateway) -> None:
    aliases = "{ " + " ".join(f"a{i}: caller {{ tenant }}" for i in range(31)) + " }"
    reply = await query(gateway.http_port, aliases)
    assert codes(reply) == ["INVALID_ARGUMENT"] and "aliases" in reply["errors"][0]["message"]
    tokens = "{ caller { " + "tenant " * 2100 + "} }"
    reply = await query(gateway.http_port, tokens)
    assert codes(reply) == ["INVALID_ARGUMENT"] and "token" in reply["errors"][0]["message"]


async def test_graphiql_is_off_and_introspection_follows_the_config(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404 and "graphiql" not in page.text.lower()
    schema = await query(gateway.http_port, "{ __schema { queryType { name } } }")
    assert schema["data"] == {"__schema": {"queryType": {"name": "Query"}}}

    closed = await start_gateway(
        top={"rest": {"port": 0, "graphql": {"introspection": False, "graphiql": True}}}
    )
    reply = await query(closed.http_port, "{ __schema { queryType { name } } }")
    assert set(codes(reply)) == {"INVALID_ARGUMENT"} and reply["data"] is None
    assert "introspection" in reply["errors"][0]["message"].lower()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{closed.http_port}") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_graphql_can_be_turned_off(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "graphql": False}})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        response = await client.post("/graphql", json={"query": "{ caller { tenant } }"})
    assert response.status_code == 404


async def test_a_broken_resolver_is_internal_without_its_text(
    start_gateway: StartGateway,
) -> None:
    """A bug's exception text and trace never reach the client."""
    gateway = await start_gateway()
    assert gateway.rest is not None

    class Broken:
        async def unary(self, *_: object) -> object:
            raise RuntimeError("secret detail")

    shim = gateway.rest.shim
    real = shim.calls
    shim.calls = Broken()  # type: ignore[assignment]
    try:
        reply = await query(gateway.http_port, "{ caller { tenant } }")
    finally:
        shim.calls = real
    assert reply["errors"][0] == {
        "message": "internal error", "locations": [{"line": 1, "column": 3}], "path": ["caller"],
        "extensions": {"code": "INTERNAL"},
    }  # fmt: skip


async def test_a_body_over_the_rest_limit_is_refused(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "max_body_bytes": 2048}})
    url = f"http://127.0.0.1:{gateway.http_port}/graphql"
    padding = " " * 4096
    async with httpx.AsyncClient() as http:
        declared = await http.post(url, json={"query": "{ caller { tenant } }" + padding})

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
            yield b'{"query": "{ caller { tenant } }'
            yield padding.encode()
            yield b'"}'

        streamed = await http.post(
            url, content=chunks(), headers={"content-type": "application/json"}
        )
        small = await http.post(url, json={"query": "{ caller { tenant } }"})
    for reply in (declared, streamed):
        assert reply.status_code == 413
        [error] = reply.json()["errors"]
        assert error["extensions"]["code"] == "INVALID_ARGUMENT"
        assert "larger than 2048 bytes" in error["message"]
    assert small.status_code == 200 and small.json()["data"]["caller"]["tenant"]
