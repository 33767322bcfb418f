"""/graphql on the REST port: queries and mutations over HTTP, subscriptions
over WebSocket (graphql-transport-ws), on the REST server's event loop."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
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


def routes(shim: Shim, config: GraphqlConfig) -> list[BaseRoute]:
    """The /graphql routes; none when the config turns GraphQL off."""
    if not config.enabled:
        return []
    view = GraphView(shim, config)
    return [
        Route("/graphql", view, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", view),
    ]
