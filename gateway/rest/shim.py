"""What every REST endpoint shares: the in-process calls, the route table, and
turning an HTTP request into a call's context (metadata, deadline, peer)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from starlette.requests import HTTPConnection, Request

from gateway.rest.bindings import RouteTable
from gateway.rest.call import Calls, deadline_from
from gateway.rest.config import RestConfig
from gateway.rest.context import RestContext
from gateway.rest.status import metadata_from, timeout_from


class HttpError(Exception):
    """Ends an HTTP request with a google.rpc.Status body."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        http_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.headers = headers


@dataclass
class Shim:
    calls: Calls
    routes: RouteTable
    config: RestConfig

    def context(
        self, request: HTTPConnection, extra: tuple[tuple[str, str], ...] = ()
    ) -> RestContext:
        """The call's context; HttpError for a malformed Grpc-Timeout."""
        try:
            timeout = timeout_from(request.headers.get("grpc-timeout"))
        except ValueError as exc:
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        metadata = metadata_from(request.headers.items(), request.state.request_id) + extra
        client = request.client
        peer = "unknown"
        if client and ":" in client.host:  # as grpc.aio writes a peer
            peer = f"ipv6:[{client.host}]:{client.port}"
        elif client:
            peer = f"ipv4:{client.host}:{client.port}"
        return RestContext(metadata, deadline_from(timeout), peer)

    async def body(self, request: Request) -> bytes:
        """The whole body, up to `max_body_bytes` (else 413)."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(limit: int) -> HttpError:
    return HttpError(
        grpc.StatusCode.INVALID_ARGUMENT, f"request body: larger than {limit} bytes", 413
    )
