"""deploy/postman: the committed collection is what `make postman` writes now,
has the v2.1 shape, covers every operation of a running gateway's
/openapi.json and the OpenAI and Anthropic routes, and its requests work
against that gateway as Postman would send them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jsonschema
import pytest

from deploy.postman import generate
from gateway.server import Gateway
from tests.conftest import StartGateway

COLLECTION = json.loads((generate.HERE / generate.COLLECTION).read_text())
ENVIRONMENT = json.loads((generate.HERE / generate.ENVIRONMENT).read_text())
METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE", "COPY", "HEAD", "OPTIONS"]

# The parts of the v2.1 collection format this collection uses, with their
# required fields (schema.getpostman.com/json/collection/v2.1.0/collection.json).
_URL = {
    "type": "object",
    "required": ["raw", "host", "path"],
    "properties": {
        "raw": {"type": "string"},
        "host": {"type": "array", "items": {"type": "string"}},
        "path": {"type": "array", "items": {"type": "string"}},
        "query": {"type": "array", "items": {"type": "object", "required": ["key"]}},
        "variable": {"type": "array", "items": {"type": "object", "required": ["key"]}},
    },
}
_AUTH = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["noauth", "apikey", "bearer", "basic"]}},
}
_ITEM = {
    "type": "object",
    "required": ["name", "request"],
    "properties": {
        "name": {"type": "string"},
        "request": {
            "type": "object",
            "required": ["method", "url"],
            "properties": {
                "method": {"enum": METHODS},
                "url": _URL,
                "auth": _AUTH,
                "header": {"type": "array", "items": {"required": ["key", "value"]}},
                "body": {"properties": {"mode": {"enum": ["raw"]}, "raw": {"type": "string"}}},
            },
        },
        "response": {"type": "array"},
    },
}
SHAPE = {
    "type": "object",
    "required": ["info", "item"],
    "properties": {
        "info": {
            "type": "object",
            "required": ["name", "schema"],
            "properties": {"schema": {"const": generate.SCHEMA}},
        },
        "auth": _AUTH,
        "item": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "item"],
                "properties": {"item": {"type": "array", "items": _ITEM}},
            },
        },
    },
}


def requests() -> Iterator[dict[str, Any]]:
    for folder in COLLECTION["item"]:
        for item in folder["item"]:
            yield item["request"]


def route(request: dict[str, Any]) -> tuple[str, str]:
    """(method, OpenAPI-style path) of a Postman request."""
    path = "/" + "/".join(request["url"]["path"])
    return request["method"], re.sub(r"(?<=/):(\w+)", r"{\1}", path)


def test_the_committed_files_are_what_make_postman_writes(tmp_path: Path) -> None:
    generate.write(tmp_path)
    for name in (generate.COLLECTION, generate.ENVIRONMENT):
        assert (tmp_path / name).read_text() == (generate.HERE / name).read_text(), (
            f"deploy/postman/{name} is stale: run `make postman`"
        )


def test_the_collection_has_the_v2_1_shape() -> None:
    jsonschema.validate(COLLECTION, SHAPE)
    for request in requests():
        assert request["url"]["raw"] == "{{baseUrl}}" + route(request)[1].replace("{", ":").replace(
            "}", ""
        )
        if "body" in request:
            json.loads(request["body"]["raw"])


def test_the_environment_holds_the_base_url_and_the_key() -> None:
    values = {v["key"]: v for v in ENVIRONMENT["values"]}
    assert set(values) == {"baseUrl", "apiKey"}
    assert values["apiKey"]["type"] == "secret" and values["apiKey"]["value"] == ""
    assert ENVIRONMENT["_postman_variable_scope"] == "environment"
    used = set(re.findall(r"\{\{(\w+)\}\}", json.dumps(COLLECTION)))
    assert used == set(values)


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def http(gateway: Gateway) -> Any:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def test_every_operation_of_the_served_openapi_document_is_a_request(http: Any) -> None:
    document = (await http.get("/openapi.json")).json()
    served = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert len(served) > 40
    assert served <= {route(r) for r in requests()}


def test_the_openai_and_anthropic_routes_are_requests() -> None:
    routes = {route(r) for r in requests()}
    assert {
        ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("GET", "/v1/models"),
        ("POST", "/v1/messages"), ("GET", "/healthz"),
    } <= routes  # fmt: skip
    (messages,) = [r for r in requests() if route(r) == ("POST", "/v1/messages")]
    assert messages["auth"]["type"] == "apikey"  # x-api-key, as Anthropic's SDK sends it


def send(request: dict[str, Any], key: str) -> dict[str, Any]:
    """httpx arguments for a request as Postman would send it with the environment."""
    headers = {h["key"]: h["value"] for h in request["header"]}
    auth = request.get("auth", COLLECTION["auth"])
    if auth["type"] == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    else:
        fields = {f["key"]: f["value"] for f in auth["apikey"]}
        headers[fields["key"]] = key
    return {
        "method": request["method"],
        "url": request["url"]["raw"].removeprefix("{{baseUrl}}"),
        "headers": headers,
        "content": request.get("body", {}).get("raw"),
    }


async def test_the_vendor_and_parameterless_read_requests_work(start_gateway: StartGateway) -> None:
    mock = {"provider": "mock", "model": "echo"}
    models = {m: {"deployments": [{"name": m, **mock}]} for m in ("mock-chat", "mock-embed")}
    gateway = await start_gateway(
        models,
        top={"apps": {"auth": {"enabled": True}, "usage": {"enabled": False},
                      "store": {"url": "sqlite+aiosqlite://"}}}
    )  # fmt: skip
    key = gateway.apps.admin_secret
    assert key
    chosen = [
        r for r in requests()
        if (r["method"] == "GET" and "variable" not in r["url"] and "query" not in r["url"])
        or route(r)[1] in {"/v1/chat/completions", "/v1/embeddings", "/v1/messages"}
    ]  # fmt: skip
    assert len(chosen) >= 8
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        for request in chosen:
            reply = await http.request(**send(request, key))
            assert reply.status_code == 200, (route(request), reply.text)
        bad = await http.request(**send(chosen[0], "not-a-key"))
        assert bad.status_code == 401  # the key is what authorised them
