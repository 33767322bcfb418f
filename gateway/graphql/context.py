"""One GraphQL request's (or WebSocket connection's) view of the gateway: its
credentials, the in-process calls that carry them, and its DataLoaders."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import MethodDescriptor
from starlette.requests import HTTPConnection
from strawberry.types import Info

from gateway.graphql.errors import translated
from gateway.graphql.gate import Shim


@dataclass
class GraphContext:
    shim: Shim
    connection: HTTPConnection
    # The graphql-transport-ws `connection_init` payload (set by strawberry).
    connection_params: Any = None
    _loaders: dict[str, Any] = field(default_factory=dict)

    def _credentials(self) -> tuple[tuple[str, str], ...]:
        """A browser's WebSocket cannot send an Authorization header: its key
        comes in the connection_init payload. A real header wins."""
        params = self.connection_params
        if "authorization" in self.connection.headers or not isinstance(params, dict):
            return ()
        value = params.get("authorization", params.get("Authorization"))
        return (("authorization", value),) if isinstance(value, str) else ()

    def _call_context(self) -> Any:
        try:
            return self.shim.context(self.connection, self._credentials())
        except Exception as exc:
            raise translated(exc) from None

    async def unary(self, method: MethodDescriptor, request: Any) -> Any:
        """The RPC's response, run through the gRPC server's interceptors (auth,
        roles, tenant, limits, usage, audit); a coded GraphQLError if refused."""
        try:
            return await self.shim.calls.unary(method, request, self._call_context())
        except Exception as exc:
            raise translated(exc) from None

    async def stream(self, method: MethodDescriptor, request: Any) -> AsyncIterator[Any]:
        """The messages of a server-streaming RPC, as `unary`; closing this
        iterator (the subscriber left) cancels the call."""
        messages = self.shim.calls.stream(method, request, self._call_context())
        async with contextlib.aclosing(messages):
            try:
                async for message in messages:
                    yield message
            except Exception as exc:
                raise translated(exc) from None

    def loader(self, name: str, make: Any) -> Any:
        """This request's DataLoader `name`, made by `make(self)` on first use."""
        if name not in self._loaders:
            self._loaders[name] = make(self)
        return self._loaders[name]


def context_of(info: Info[GraphContext, None]) -> GraphContext:
    return info.context
