"""The Cohere/Jina-compatible rerank route: POST /v1/rerank.

The body is what Cohere's (v1) and Jina's clients send: `model`, `query`,
`documents` as strings or as `{"text": ...}` objects, optional `top_n`
(absent: all) and `return_documents` (default false, as Cohere's). The answer
has both vendors' shapes at once: `results` of `index`, `relevance_score` and,
when asked, `document: {"text"}`; Cohere's `meta.billed_units.search_units`
and Jina's `usage.total_tokens`. Errors are Cohere's `{"message": ...}`.

It calls Router.Rerank in-process through the server's interceptors, like
the OpenAI routes, so keys, limits and usage apply as on gRPC. The
transcoded RPC itself is at `/v1/router/rerank` (proto JSON, camelCase).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.pb import router_pb2 as pb
from gateway.rest import compat
from gateway.rest.call import CallError
from gateway.rest.compat import CompatError, bad, number
from gateway.rest.methods import RERANK
from gateway.rest.responses import JSONResponse
from gateway.rest.shim import Shim


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": message}, status, headers)


def _documents(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise bad("documents: must be a list of strings or of {text} objects")
    texts = []
    for i, document in enumerate(value):
        if isinstance(document, dict):
            document = document.get("text")
        if not isinstance(document, str):
            raise bad(f"documents[{i}]: must be a string or an object with a text string")
        texts.append(document)
    return texts


def _request(body: dict[str, Any]) -> pb.RerankRequest:
    model, query = body.get("model"), body.get("query")
    if not isinstance(model, str) or not model:
        raise bad("model: required")
    if not isinstance(query, str):
        raise bad("query: must be a string")
    return_documents = body.get("return_documents", False)
    if not isinstance(return_documents, bool):
        raise bad("return_documents: must be a boolean")
    top_n = number(body, "top_n", int)
    return pb.RerankRequest(
        model=model,
        query=query,
        documents=_documents(body.get("documents")),
        top_n=top_n or 0,
        return_documents=return_documents,
    )


def _reply(reply: pb.RerankResponse, asked: bool) -> dict[str, Any]:
    results = []
    for result in reply.results:
        item: dict[str, Any] = {"index": result.index, "relevance_score": result.relevance_score}
        if asked:
            item["document"] = {"text": result.document}
        results.append(item)
    return {
        "id": "rerank-" + secrets.token_hex(12),
        "model": reply.model,
        "results": results,
        "meta": {"api_version": {"version": "1"},
                 "billed_units": {"search_units": reply.search_units}},
        "usage": {"total_tokens": reply.usage.total_tokens},
    }  # fmt: skip


async def rerank(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    try:
        message = _request(await compat.json_body(shim, request))
        ctx = compat.context(shim, request)
    except CompatError as exc:
        return _error(exc.status, exc.message)
    try:
        reply = await compat.call(shim, RERANK, message, ctx)
    except CallError as exc:
        status, headers = compat.failed_call(exc)
        return _error(status, exc.message, headers)
    return JSONResponse(_reply(reply, message.return_documents))


def routes() -> list[Route]:
    return [Route("/v1/rerank", rerank, methods=["POST"])]
