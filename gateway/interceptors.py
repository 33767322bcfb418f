"""What the server's interceptors share: each wraps a method's handler once
(the wrapped handler is kept per method and reused for every later call) with
a behaviour of its own, in a handler of the same kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class Wrapping(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc: untyped
    """A subclass says how to wrap a handler (`wrap`); per-call work belongs in
    the behaviour it wraps the handler's in, never here."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        wrapped = self._handlers[method] = self.wrap(handler, method)
        return wrapped

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


def behaviour_of(handler: grpc.RpcMethodHandler) -> Any:
    """The servicer method a handler runs, whatever its kind."""
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary
        or handler.stream_stream
    )  # fmt: skip


def streams_out(handler: grpc.RpcMethodHandler) -> bool:
    return bool(handler.unary_stream or handler.stream_stream)


def same_kind(handler: grpc.RpcMethodHandler, behaviour: Any) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s kind and (de)serializers running `behaviour`."""
    if handler.unary_unary:
        make = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        make = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        make = grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.stream_stream_rpc_method_handler
    return make(behaviour, handler.request_deserializer, handler.response_serializer)
