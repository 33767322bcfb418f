"""/graphql on the REST port: queries and mutations over HTTP, subscriptions
over WebSocket (graphql-transport-ws), on the REST server's event loop."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from gateway.graphql.config import GraphqlConfig
from gateway.graphql.context import GraphContext
from gateway.graphql.gate import Shim
from gateway.graphql.schema import build_schema


class GraphView(GraphQL[GraphContext, None]):
    """Strawberry's ASGI view with the gateway's context: each request's (or
    socket's) calls carry its own credentials through the shim."""

    def __init__(self, shim: Shim, config: GraphqlConfig) -> None:
        super().__init__(
            build_schema(config),
            graphql_ide="graphiql" if config.graphiql else None,
            keep_alive=True,
            keep_alive_interval=15,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=config.max_subscriptions,
        )
        self.shim = shim

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GraphContext:
        return GraphContext(self.shim, request)


def routes(shim: Shim, config: GraphqlConfig, max_body_bytes: int) -> list[BaseRoute]:
    """The /graphql routes; none when the config turns GraphQL off. A POST body
    is held to `max_body_bytes` like every REST body (else 413)."""
    if not config.enabled:
        return []
    view = GraphView(shim, config)
    return [
        Route("/graphql", _Limited(view, max_body_bytes), methods=["GET", "POST"]),
        WebSocketRoute("/graphql", view),
    ]


class _Limited:
    """`app` given the request body read whole first, or a 413 when it is
    larger than `limit` (declared or as it arrives); nothing reaches `app` then.
    (A class, not a function: Starlette's Route takes a plain function for a
    request -> response endpoint, an object for an ASGI app.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.limit
        parts: list[bytes] = []
        size, more = 0, not too_large
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                too_large, more = True, False
        if too_large:
            error = {"message": f"request body: larger than {self.limit} bytes",
                     "extensions": {"code": "INVALID_ARGUMENT"}}  # fmt: skip
            await JSONResponse({"errors": [error]}, status_code=413)(scope, receive, send)
            return
        whole: list[Message] = [{"type": "http.request", "body": b"".join(parts)}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)
