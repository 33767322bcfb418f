"""A SERVER span per RPC (gRPC, and REST through gateway/rest/call.py), recorded
by a server interceptor that is installed only when tracing is on.

The span continues the caller's W3C `traceparent` (metadata; the REST shim
forwards the HTTP header) and is current while the handler runs, so every
span the call makes (auth, routing, attempts, upstream) joins its trace.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from gateway.interceptors import Wrapping, behaviour_of, same_kind, streams_out
from gateway.metrics import status_name
from router import spans

_PROPAGATED = ("traceparent", "tracestate")


class TracingInterceptor(Wrapping):
    """Put it first in the chain: the other interceptors (the access log
    included) then run inside the RPC's span."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        behaviour = behaviour_of(handler)
        # A streaming handler is an async generator, or a coroutine that calls context.write().
        streamed = streams_out(handler) and inspect.isasyncgenfunction(behaviour)
        traced = _traced_stream if streamed else _traced_unary
        return same_kind(handler, traced(behaviour, method.lstrip("/"), attributes))


def _parent(context: grpc.aio.ServicerContext) -> Context | None:
    found = {k: v for k, v in context.invocation_metadata() or () if k in _PROPAGATED}
    return spans.extract(found) if found else None


def _ended(span: Span, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
    code = status_name(context, error)
    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
    if code != "OK":
        if isinstance(error, Exception):
            span.record_exception(error)
        span.set_status(StatusCode.ERROR, code)


def _traced_unary(behaviour: Any, name: str, attributes: dict[str, str]) -> Any:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with spans.span(name, attributes, SpanKind.SERVER, _parent(context)) as span:
            error: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                _ended(span, context, error)

    return unary


def _traced_stream(behaviour: Any, name: str, attributes: dict[str, str]) -> Any:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # Current for each step, not across the yields: the generator may be
        # closed from another context (a finalizer), where a detach would fail.
        span = spans.start(name, attributes, SpanKind.SERVER, _parent(context))
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(behaviour(request, context)) as messages:
                while True:
                    with spans.current(span):
                        try:
                            message = await anext(messages)
                        except StopAsyncIteration:
                            break
                    yield message
        except BaseException as exc:
            error = exc
            raise
        finally:
            _ended(span, context, error)
            span.end()

    return stream
