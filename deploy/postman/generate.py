"""`make postman`: a Postman collection (v2.1) and environment for the REST
shim, generated from the OpenAPI document it serves at /openapi.json (the
same bindings, built here without starting a gateway) plus the routes that
document leaves out: the OpenAI and Anthropic ones, /healthz and /openapi.json.

Requests authenticate with the environment's `apiKey` (Bearer; Anthropic's
route with `x-api-key`, as its SDK sends it) against `baseUrl`. Bodies are
skeletons of the request schema's top-level fields. The output is
deterministic, so tests/deploy/test_postman.py can check the committed files
are current.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from gateway.rest import anthropic, openai
from gateway.rest.bindings import read_bindings
from gateway.rest.openapi import openapi_document
from gateway.server import SERVICES

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
HERE = Path(__file__).resolve().parent
COLLECTION = "infergate.postman_collection.json"
ENVIRONMENT = "infergate.postman_environment.json"
_VARIABLE = re.compile(r"\{([^}]+)\}")

# Example bodies for the vendor-compatible routes (their schemas are the vendors').
_COMPAT_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/chat/completions"): {
        "model": "mock-chat", "messages": [{"role": "user", "content": "hello"}], "stream": False,
    },
    ("POST", "/v1/embeddings"): {"model": "mock-embed", "input": ["hello"]},
    ("POST", "/v1/messages"): {
        "model": "mock-chat", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}],
    },
}  # fmt: skip


def openapi() -> dict[str, Any]:
    """The document the REST shim serves at /openapi.json."""
    return openapi_document(read_bindings(SERVICES.values()))


def compat_routes() -> list[tuple[str, str, str]]:
    """(folder, method, path) of the routes outside the OpenAPI document."""
    found = [("Gateway", "GET", "/healthz"), ("Gateway", "GET", "/openapi.json")]
    for folder, routes in (("OpenAI", openai.routes()), ("Anthropic", anthropic.routes())):
        found += [
            (folder, m, r.path) for r in routes for m in sorted(r.methods or ()) if m != "HEAD"
        ]
    return found


def _url(path: str, query: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    segments = [_VARIABLE.sub(r":\1", s) for s in path.strip("/").split("/")]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    names = _VARIABLE.findall(path)
    if names:
        url["variable"] = [{"key": name, "value": ""} for name in names]
    if query:
        url["query"] = query
    return url


def _skeleton(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """The schema's top-level fields, each an empty value of its type."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    if kind == "object":
        return {
            name: _empty(field, components) for name, field in schema.get("properties", {}).items()
        }
    return _empty(schema, components)


def _empty(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return {}
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}.get(
        schema.get("type", ""), {}
    )


def _request(
    name: str, method: str, url: dict[str, Any], body: Any = None, description: str = ""
) -> dict[str, Any]:
    request: dict[str, Any] = {"method": method, "header": [], "url": url}
    if description:
        request["description"] = description
    if body is not None:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    return {"name": name, "request": request, "response": []}


def _operations(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The OpenAPI operations as requests, one folder per service (tag)."""
    components = document["components"]["schemas"]
    folders: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVICES}  # their order
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            query = [
                {"key": p["name"], "value": "", "disabled": True}
                for p in op.get("parameters", ())
                if p["in"] == "query"
            ]
            body = None
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                body = _skeleton(content["schema"], components)
            folders.setdefault(op["tags"][0], []).append(
                _request(op["operationId"], method.upper(), _url(path, query), body)
            )
    return {name: items for name, items in folders.items() if items}


def collection(document: dict[str, Any]) -> dict[str, Any]:
    folders = _operations(document)
    for folder, method, path in compat_routes():
        item = _request(f"{method} {path}", method, _url(path), _COMPAT_BODIES.get((method, path)))
        if folder == "Anthropic":
            item["request"]["auth"] = {
                "type": "apikey",
                "apikey": [
                    {"key": "key", "value": "x-api-key", "type": "string"},
                    {"key": "value", "value": "{{apiKey}}", "type": "string"},
                    {"key": "in", "value": "header", "type": "string"},
                ],
            }
            item["request"]["header"].append({"key": "anthropic-version", "value": "2023-06-01"})
        folders.setdefault(folder, []).append(item)
    return {
        "info": {
            "name": "infergate",
            "description": "The REST shim, generated by `make postman` from /openapi.json.",
            "schema": SCHEMA,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
        },
        "item": [{"name": name, "item": items} for name, items in folders.items()],
    }


def environment() -> dict[str, Any]:
    return {
        "name": "infergate (local)",
        "values": [
            {
                "key": "baseUrl",
                "value": "http://127.0.0.1:8080",
                "type": "default",
                "enabled": True,
            },
            {"key": "apiKey", "value": "", "type": "secret", "enabled": True},
        ],
        "_postman_variable_scope": "environment",
    }


def write(directory: Path) -> list[Path]:
    written = []
    for name, data in ((COLLECTION, collection(openapi())), (ENVIRONMENT, environment())):
        path = directory / name
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="the directory to write into")
    for path in write(parser.parse_args().out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
