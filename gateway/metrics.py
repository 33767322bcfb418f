"""Prometheus metrics, recorded by a gRPC server interceptor.

With `--workers N` the processes share one registry directory
(PROMETHEUS_MULTIPROC_DIR) and the parent serves the sum; gauges say how
they combine across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from gateway.interceptors import Wrapping, behaviour_of, same_kind, streams_out
from router import spans

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip

REQUESTS = Counter(
    "infergate_grpc_requests", "RPCs finished, by method and status code", ["method", "code"]
)
LATENCY = Histogram(
    "infergate_grpc_request_seconds", "RPC duration", ["method"], buckets=_LATENCY_BUCKETS
)
TIME_TO_FIRST_MESSAGE = Histogram(
    "infergate_grpc_time_to_first_message_seconds",
    "Server-streaming RPCs: time to the first message (time to first token for GenerateStream)",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "infergate_grpc_in_flight", "RPCs running now", ["method"], multiprocess_mode="livesum"
)
RELOADS = Counter("infergate_config_reloads", "Config reloads, by result", ["result"])
TOKENS_STREAMED = Counter(
    "infergate_tokens_streamed", "Output tokens streamed to clients, by model alias", ["model"]
)
COST = Counter(
    "infergate_cost_usd",
    "What model calls cost at their deployments' prices, by tenant, model alias and deployment",
    ["tenant", "model", "deployment"],
)
BUDGET_REFUSALS = Counter(
    "infergate_budget_refusals", "Calls refused by a spent budget, by its scope", ["scope"]
)


def count_cost(tenant: str, model: str, deployment: str, nanos: int) -> None:
    """COST for a model call made outside the access interceptor (workflow
    runs, task workers), which keeps its own label cache on the hot path."""
    COST.labels(tenant, model, deployment).inc(nanos / 1_000_000_000)


def count_budget_refusal(rule: Any) -> None:
    """BUDGET_REFUSALS for a spent budget (a gateway.apps.model.BudgetRule)."""
    BUDGET_REFUSALS.labels(rule.scope).inc()


BUDGET_ALERTS = Counter(
    "infergate_budget_alerts",
    "Budgets whose spend crossed their alert share (once per period), by scope",
    ["scope"],
)
GC_PAUSE = Histogram(
    "infergate_gc_pause_seconds",
    "Cyclic garbage collections (the event loop stopped meanwhile), by generation",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
ACCESS_LOG = logging.getLogger("infergate.access")


def status_name(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the client sees: the one the handler set (abort), else what
    the way it ended implies."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if error is None:
        return "OK"
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return "DEADLINE_EXCEEDED"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"  # what grpc.aio answers for an unexpected exception


class _Instruments:
    """The metric children for one method, resolved once."""

    __slots__ = ("access_log", "codes", "in_flight", "latency", "method", "ttfm")

    def __init__(self, method: str, access_log: bool) -> None:
        self.method = method
        self.access_log = access_log
        self.latency = LATENCY.labels(method)
        self.ttfm = TIME_TO_FIRST_MESSAGE.labels(method)
        self.in_flight = IN_FLIGHT.labels(method)
        self.codes: dict[str, Any] = {}

    def done(self, started: float, context: grpc.aio.ServicerContext, code: str) -> None:
        elapsed = time.perf_counter() - started
        self.in_flight.dec()
        self.latency.observe(elapsed)
        counter = self.codes.get(code)
        if counter is None:
            counter = self.codes[code] = REQUESTS.labels(self.method, code)
        counter.inc()
        if self.access_log:
            _log_access(self.method, code, elapsed, context)


def _log_access(method: str, code: str, elapsed: float, context: grpc.aio.ServicerContext) -> None:
    """One line per RPC: method, status, milliseconds, the caller's x-request-id, peer,
    and the trace id (tracing on: its interceptor runs first, so the span is current).
    Never metadata values beyond the request id (they carry keys)."""
    request_id = "-"
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            request_id = str(value)[:128]
            break
    ACCESS_LOG.info(
        "%s %s %.2fms request_id=%s peer=%s trace_id=%s",
        method, code, elapsed * 1000, request_id, context.peer(), spans.trace_id() or "-",
    )  # fmt: skip


class MetricsInterceptor(Wrapping):
    """Counts, times and tracks in-flight RPCs; streams also get time to first message.
    With `access_log`, each finished RPC is also one INFO line on `infergate.access`."""

    def __init__(self, access_log: bool = False) -> None:
        super().__init__()
        self._access_log = access_log

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The same handler, its behaviour timed. The request argument is a message or,
        for client-streaming RPCs, an iterator of them: both pass through untouched."""
        m = _Instruments(method, self._access_log)
        behaviour = behaviour_of(handler)
        # A streaming handler is an async generator, or a coroutine that calls context.write().
        streamed = streams_out(handler) and inspect.isasyncgenfunction(behaviour)
        timed = _timed_stream if streamed else _timed_unary
        return same_kind(handler, timed(behaviour, m))


def _timed_unary(behaviour: Any, m: _Instruments) -> Any:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        m.in_flight.inc()
        error: BaseException | None = None
        try:
            return await behaviour(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            m.done(started, context, status_name(context, error))

    return unary


def _timed_stream(behaviour: Any, m: _Instruments) -> Any:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        m.in_flight.inc()
        error: BaseException | None = None
        first = True
        try:
            async with contextlib.aclosing(behaviour(request, context)) as messages:
                async for message in messages:
                    if first:
                        m.ttfm.observe(time.perf_counter() - started)
                        first = False
                    yield message
        except BaseException as exc:
            error = exc
            raise
        finally:
            m.done(started, context, status_name(context, error))

    return stream
