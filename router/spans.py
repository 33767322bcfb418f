"""Trace spans through the OpenTelemetry API, for the core and the edges alike.

Off (the default) every helper returns a shared no-op: no span object is made
and the one check is a module global. The gateway turns it on with a tracer
from its SDK set-up (gateway/tracing.py); the API package is vendor-neutral,
so the core may import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

Attributes = Mapping[str, str | int | float | bool]

NO_SPAN: Span = INVALID_SPAN  # what the helpers give with tracing off
_OFF: contextlib.nullcontext[Span] = contextlib.nullcontext(INVALID_SPAN)
_tracer: Tracer | None = None
ON = False  # read as `spans.ON`: rebinding by enable() must be seen


def enable(tracer: Tracer | None) -> None:
    """Spans from `tracer` from now on; None: tracing off again."""
    global _tracer, ON
    _tracer, ON = tracer, tracer is not None


def _sampled_out(parent: otel_context.Context | None) -> bool:
    """The parent (default: the current span; or a caller's, remote) belongs
    to a trace that is not sampled: its children would not be recorded either,
    so none is made (a 1% ratio sampler otherwise still paid for ~8 unrecorded
    spans a call). A trace's root is made, and sampled or not, as usual."""
    found = trace.get_current_span(parent).get_span_context()
    return found.is_valid and not found.trace_flags.sampled


def span(
    name: str,
    attributes: Attributes | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A child of `parent` (default: the current span), current inside the
    `with`; an exception that leaves it is recorded and sets the status to ERROR."""
    if _tracer is None or _sampled_out(parent):
        return _OFF
    return _tracer.start_as_current_span(name, parent, kind, attributes)


def start(
    name: str,
    attributes: Attributes | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
) -> Span:
    """A span that is not made current (ended by the caller): for work that
    crosses the yields of a generator another task may drive."""
    if _tracer is None or _sampled_out(parent):
        return INVALID_SPAN
    return _tracer.start_span(name, context=parent, attributes=attributes, kind=kind)


UPSTREAM = "infergate.upstream"  # the span of one call an adapter makes to its upstream


def start_upstream(
    attributes: Attributes, headers: dict[str, str] | None = None, kind: SpanKind = SpanKind.CLIENT
) -> Span:
    """The span of one call to an upstream, not made current (ended by the
    caller: a stream that outlives a `with`). Its W3C `traceparent` (and
    `tracestate`) go into `headers`, the HTTP headers or gRPC metadata the
    caller then sends, so the upstream's spans join this trace; in a trace the
    sampler dropped, no span is made and the parent's (unsampled) one goes."""
    made = start(UPSTREAM, attributes, kind)
    if headers is not None and _tracer is not None:
        found = trace.set_span_in_context(made) if made is not INVALID_SPAN else None
        propagate.inject(headers, context=found)
    return made


def upstream(
    attributes: Attributes, headers: dict[str, str] | None = None, kind: SpanKind = SpanKind.CLIENT
) -> contextlib.AbstractContextManager[Span]:
    """`start_upstream`'s span, current inside the `with` and ended by it (an
    exception that leaves it is recorded and sets the status to ERROR);
    `headers` is filled on this call, before the `with` is entered."""
    made = start_upstream(attributes, headers, kind)
    if made is INVALID_SPAN:
        return _OFF
    return trace.use_span(made, end_on_exit=True)


@contextlib.contextmanager
def _current(span_: Span) -> Iterator[Span]:
    with trace.use_span(span_, end_on_exit=False, record_exception=False):
        yield span_


def current(span_: Span) -> contextlib.AbstractContextManager[Span]:
    """`span_` current inside the `with` (not ended by it). NO_SPAN (a span
    not made: its trace was sampled out) leaves the current span current:
    made current, it would hide the unsampled parent, and a span under it
    would start a trace of its own (a root, with a traceparent upstream that
    names neither the caller's trace nor, at 1%, the RPC's)."""
    if _tracer is None or span_ is INVALID_SPAN:
        return _OFF
    return _current(span_)


def annotate(attributes: Attributes) -> None:
    """Attributes on the current span."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(attributes)


def failed(span_: Span, error: BaseException | str) -> None:
    """Mark `span_` failed, with the exception as an event when there is one."""
    if isinstance(error, BaseException):
        span_.record_exception(error)
    span_.set_status(Status(StatusCode.ERROR, str(error)))


def trace_id() -> str:
    """The current trace's id in hex, or "" (tracing off, or no trace)."""
    if _tracer is None:
        return ""
    found = trace.get_current_span().get_span_context()
    return format(found.trace_id, "032x") if found.is_valid else ""


def inject(carrier: dict[str, str], span_: Span | None = None) -> None:
    """W3C `traceparent` (and `tracestate`) for the current span, or `span_`, into headers."""
    if _tracer is None:
        return
    parent = trace.set_span_in_context(span_) if span_ is not None else None
    propagate.inject(carrier, context=parent)


def extract(carrier: Mapping[str, Any]) -> otel_context.Context | None:
    """The remote parent a `traceparent` in `carrier` names (None when off)."""
    if _tracer is None:
        return None
    return propagate.extract(carrier)
