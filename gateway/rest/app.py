"""The Starlette application: compatible surfaces first, then the transcoded
routes for everything else; X-Request-Id on every response."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import console
from gateway.graphql.app import routes as graphql_routes
from gateway.rest import anthropic, openai, rerank
from gateway.rest.call import CallError
from gateway.rest.methods import HEALTH_CHECK
from gateway.rest.openapi import openapi_document
from gateway.rest.responses import JSONResponse, error_response
from gateway.rest.routes import generate_socket, transcode
from gateway.rest.shim import HttpError, Shim
from gateway.rest.status import HTTP_STATUS, status_json
from gateway.rest.transcode import BadRequest

log = logging.getLogger("infergate.rest")
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class RequestId:
    """ASGI middleware: the caller's X-Request-Id (if sane) or a new one, kept in
    the request's state and returned on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        sane = 0 < len(given) <= 128 and given.isascii() and given.decode().isprintable()
        rid = given if sane else b"req-" + secrets.token_hex(12).encode()
        scope.setdefault("state", {})["request_id"] = rid.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def healthz(request: Request) -> Response:
    """200 while the gRPC health service says SERVING, else 503."""
    shim: Shim = request.app.state.shim
    context = shim.context(request)
    try:
        reply = await shim.calls.unary(HEALTH_CHECK, health_pb2.HealthCheckRequest(), context)
    except CallError as exc:
        return error_response(exc)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return JSONResponse({"status": status}, 200 if status == "SERVING" else 503)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    status = exc.http_status or HTTP_STATUS.get(exc.code, 500)
    return JSONResponse(status_json(exc.code, exc.message), status, exc.headers)


def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse(status_json(grpc.StatusCode.INVALID_ARGUMENT, str(exc)), 400)


def _internal(request: Request, exc: Exception) -> Response:
    log.exception("REST %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_json(grpc.StatusCode.INTERNAL, "internal error"), 500)


def build_app(shim: Shim) -> ASGIApp:
    document: dict[str, Any] = openapi_document(shim.routes.bindings)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *openai.routes(),
            *anthropic.routes(),
            *rerank.routes(),
            WebSocketRoute("/v1/ws/generate", generate_socket),
            *(console.routes() if shim.config.console else []),
            *graphql_routes(shim, shim.config.graphql, shim.config.max_body_bytes),
            Route("/{path:path}", transcode, methods=_ALL_METHODS),
        ],
        exception_handlers={
            HttpError: _http_error,
            BadRequest: _bad_request,
            Exception: _internal,
        },
    )
    app.state.shim = shim
    # Outermost, so that even a 500 from Starlette's error middleware carries the id.
    return RequestId(app)
