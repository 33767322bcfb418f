"""Start and stop the REST shim beside a running gRPC server."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from gateway.rest.app import build_app
from gateway.rest.bindings import RouteTable, read_bindings
from gateway.rest.call import Calls, collect_handlers
from gateway.rest.config import RestConfig
from gateway.rest.server import HttpServer
from gateway.rest.shim import Shim


class RestService:
    """The shim's HTTP server. Routes come from the google.api.http rules of
    the services whose servicers it was given."""

    def __init__(self, shim: Shim, server: HttpServer) -> None:
        self.shim = shim
        self._server = server

    @property
    def port(self) -> int:
        return self._server.port

    @classmethod
    async def start(
        cls,
        config: RestConfig,
        servicers: Iterable[tuple[Any, Callable[[Any, Any], None]]],
        interceptors: list[grpc.aio.ServerInterceptor],
        grace_period_s: float,
        *,
        reuse_port: bool = False,
    ) -> RestService:
        """Serve on the running event loop; returns once it accepts connections.
        `interceptors` is the gRPC server's own list (read on every call)."""
        handlers = collect_handlers(servicers)
        pool = descriptor_pool.Default()
        names = sorted({method.split("/")[1] for method in handlers})
        services = [pool.FindServiceByName(name) for name in names]
        shim = Shim(Calls(handlers, interceptors), RouteTable(read_bindings(services)), config)
        server = HttpServer(build_app(shim), config, grace_period_s, reuse_port)
        await server.start()
        return cls(shim, server)

    async def stop(self) -> None:
        """Stop accepting; requests in flight get the grace period. Idempotent."""
        await self._server.stop()
