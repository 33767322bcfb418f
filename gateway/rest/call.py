"""Run an RPC in-process through the gRPC server's own interceptors.

The handlers come from the method table (gateway/rest/methods.py), built from
the services' descriptors as the gRPC server registers them, and every call
goes through `interceptors` exactly as the gRPC server chains them, so auth,
rate limits, usage and metrics see REST calls as they see gRPC ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor

from gateway.rest.context import Aborted, Metadata, RestContext
from gateway.rest.methods import MethodTable, full_name


@dataclass(frozen=True, slots=True)
class CallDetails(grpc.HandlerCallDetails):  # type: ignore[misc]
    method: str
    invocation_metadata: Metadata


@dataclass
class CallError(Exception):
    """The call ended with a non-OK status."""

    code: grpc.StatusCode
    message: str
    context: RestContext | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


_END = object()
_HEADERS = object()
# What `Calls.batches` yields when a server-streaming handler sent its initial
# metadata before any message: the response can start (its headers) now.
STARTED: list[Any] = []
SHUTTING_DOWN = "the server is shutting down"


class Calls:
    """Runs unary, server-streaming and client-streaming RPCs in-process.

    `interceptors` is the server's own list, read on every call, so an
    interceptor added to it later applies to REST calls too.
    """

    def __init__(
        self, methods: MethodTable, interceptors: list[grpc.aio.ServerInterceptor]
    ) -> None:
        self.methods = methods
        self._interceptors = interceptors
        self._running: set[asyncio.Task[Any]] = set()  # what runs each call in flight
        self._ending = False
        self._over = False  # the grace period is over: a new call ends at once
        self._cut: set[asyncio.Task[Any]] = set()  # the tasks _end_all cancelled

    def end_after(self, grace_s: float) -> None:
        """Shut down: the calls still running `grace_s` from now are cancelled
        and end UNAVAILABLE, so that every surface sends its error event and
        ends its response, instead of the HTTP server cutting it mid-body."""
        if not self._ending:
            self._ending = True
            asyncio.get_running_loop().call_later(grace_s, self._end_all)

    def _end_all(self) -> None:
        self._over = True
        for task in list(self._running):
            self._cut.add(task)
            task.cancel(SHUTTING_DOWN)

    def _ended(self, context: RestContext) -> CallError | None:
        """The CallError for a call that `_end_all` cancelled; None for any other
        cancellation (the client went away), which goes on propagating. Told by
        the task, not the exception: an awaited grpc.aio call re-raises a fresh
        CancelledError without the message."""
        task = asyncio.current_task()
        if task is None or task not in self._cut:
            return None
        self._cut.discard(task)
        return CallError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, context)

    def _refuse_when_over(self, context: RestContext) -> None:
        if self._over:
            raise CallError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, context)

    async def _handler(self, method: MethodDescriptor, metadata: Metadata) -> grpc.RpcMethodHandler:
        chain = self._interceptors
        served = self.methods.get(method)

        async def step(index: int, details: grpc.HandlerCallDetails) -> Any:
            if index == len(chain):
                return served.handler if served is not None else None
            nxt: Callable[[grpc.HandlerCallDetails], Awaitable[Any]] = lambda d: step(  # noqa: E731
                index + 1, d
            )
            return await chain[index].intercept_service(nxt, details)

        handler = await step(0, CallDetails(full_name(method), metadata))
        if handler is None:
            raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"method {full_name(method)} not found")
        return handler

    async def unary(
        self,
        method: MethodDescriptor,
        request: Any,
        context: RestContext,
        requests: AsyncIterator[Any] | None = None,
    ) -> Any:
        """The response message, or CallError. `requests` feeds a client-streaming
        call. Cancelling the caller cancels the handler; past the context's
        deadline the call ends DEADLINE_EXCEEDED."""
        self._refuse_when_over(context)
        running = asyncio.current_task()
        assert running is not None
        self._running.add(running)
        try:
            handler = await self._handler(method, context.invocation_metadata())
            async with asyncio.timeout(context.time_remaining()):
                if handler.stream_unary is not None:
                    context.requests = requests
                    response = await handler.stream_unary(requests, context)
                elif handler.unary_unary is not None:
                    response = await handler.unary_unary(request, context)
                else:
                    raise CallError(
                        grpc.StatusCode.UNIMPLEMENTED, f"{full_name(method)} is streaming"
                    )
        except asyncio.CancelledError:
            context.finish(cancelled=True)
            if (ended := self._ended(context)) is None:
                raise
            running.uncancel()
            raise ended from None
        except Exception as exc:
            raise _call_error(exc, context) from exc
        finally:
            self._running.discard(running)
            context.finish()
        _check(context)
        return response

    async def stream(
        self, method: MethodDescriptor, request: Any, context: RestContext
    ) -> AsyncGenerator[Any, None]:
        """The response messages one by one; otherwise as `batches`."""
        batches = self.batches(method, request, context)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for message in batch:  # STARTED has none
                    yield message

    async def batches(
        self, method: MethodDescriptor, request: Any, context: RestContext
    ) -> AsyncGenerator[list[Any], None]:
        """The response messages, in lists of those ready at once (never waiting
        for more), so a fast producer costs one HTTP write per list; first
        `STARTED` (an empty list) when the handler sends its initial metadata
        before its first message; CallError when the call ends non-OK (before
        or after the first message). The
        handler runs in one task of its own, as grpc.aio runs it, so context
        variables it binds hold for the whole call; closing the iterator (the
        client went away) cancels it; past the deadline it ends DEADLINE_EXCEEDED."""
        self._refuse_when_over(context)
        handler = await self._handler(method, context.invocation_metadata())
        if handler.unary_stream is None:
            raise CallError(
                grpc.StatusCode.UNIMPLEMENTED, f"{full_name(method)} is not server-streaming"
            )
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=32)  # backpressure beyond this
        outcome: list[BaseException] = []

        def headers() -> None:
            context.on_initial_metadata = None  # once
            with contextlib.suppress(asyncio.QueueFull):  # full: messages flow already
                queue.put_nowait(_HEADERS)

        context.on_initial_metadata = headers
        pump = asyncio.create_task(self._pump(handler, request, context, queue, outcome))
        self._running.add(pump)
        pump.add_done_callback(self._running.discard)
        try:
            ended = False
            while not ended:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                if batch[0] is _HEADERS:
                    batch.pop(0)
                    if not batch:
                        yield STARTED
                        continue
                ended = batch[-1] is _END
                if ended:
                    batch.pop()
                if batch:
                    yield batch
            if outcome:
                raise outcome[0]
            _check(context)
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                context.finish(cancelled=True)
            context.finish()

    async def _pump(
        self,
        handler: grpc.RpcMethodHandler,
        request: Any,
        context: RestContext,
        queue: asyncio.Queue[Any],
        outcome: list[BaseException],
    ) -> None:
        try:
            async with asyncio.timeout(context.time_remaining()):
                result = handler.unary_stream(request, context)
                if inspect.isasyncgen(result):
                    async with contextlib.aclosing(result):
                        async for message in result:
                            await queue.put(message)
                else:  # a coroutine that calls context.write()
                    context.writes = queue
                    await result
        except asyncio.CancelledError:
            if (ended := self._ended(context)) is None:
                raise
            outcome.append(ended)
        except Exception as exc:
            outcome.append(_call_error(exc, context))
        await queue.put(_END)


def _check(context: RestContext) -> None:
    """A handler may end a call with set_code() instead of abort()."""
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        raise CallError(code, context.details(), context)


def _call_error(exc: Exception, context: RestContext) -> CallError:
    if isinstance(exc, CallError):
        exc.context = exc.context or context
        return exc
    if isinstance(exc, Aborted):
        code = context.code() or grpc.StatusCode.UNKNOWN
        return CallError(code, context.details(), context)
    if isinstance(exc, TimeoutError):
        return CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded", context)
    # What grpc.aio answers for an exception the handler let escape.
    return CallError(grpc.StatusCode.UNKNOWN, f"unexpected {type(exc).__name__}", context)


def deadline_from(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s
