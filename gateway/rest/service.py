"""Start and stop the REST shim beside a running gRPC server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from gateway.rest.app import build_app
from gateway.rest.bindings import RouteTable, read_bindings
from gateway.rest.call import Calls
from gateway.rest.config import RestConfig
from gateway.rest.methods import MethodTable
from gateway.rest.server import HttpServer
from gateway.rest.shim import Shim


class RestService:
    """The shim's HTTP server. Routes come from the google.api.http rules of
    the services it was given."""

    def __init__(self, shim: Shim, server: HttpServer, grace_period_s: float) -> None:
        self.shim = shim
        self._server = server
        self._grace = grace_period_s

    @property
    def port(self) -> int:
        return self._server.port

    @classmethod
    async def start(
        cls,
        config: RestConfig,
        services: Iterable[tuple[ServiceDescriptor, Any]],
        interceptors: list[grpc.aio.ServerInterceptor],
        grace_period_s: float,
        *,
        reuse_port: bool = False,
    ) -> RestService:
        """Serve `services` (each a service's descriptor and its servicer) on the
        running event loop; returns once it accepts connections. `interceptors`
        is the gRPC server's own list (read on every call)."""
        methods = MethodTable(services)
        routes = RouteTable(read_bindings(methods.services))
        shim = Shim(Calls(methods, interceptors), routes, config)
        server = HttpServer(build_app(shim), config, grace_period_s, reuse_port)
        await server.start()
        return cls(shim, server, grace_period_s)

    async def stop(self) -> None:
        """Stop accepting; requests in flight get the grace period, then end
        UNAVAILABLE, each in its surface's error shape (a stream with its error
        event). Idempotent."""
        self.shim.calls.end_after(self._grace)
        await self._server.stop()
