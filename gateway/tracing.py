"""OpenTelemetry tracing: the `tracing:` config section and the SDK set-up.

Off by default. On with `tracing.enabled`, or with the standard variables
(`OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...) when the
section leaves it off; `OTEL_SDK_DISABLED=true` turns it off either way.
Spans go to an OTLP/HTTP collector in batches, from a thread of the SDK's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from pydantic import Field

from router import spans
from router.config import Frozen


class TracingConfig(Frozen):
    enabled: bool = Field(default=False, description="or by the standard OTEL_* variables")
    sampler_ratio: float = Field(
        default=1.0, ge=0, le=1,
        description="share of new traces kept; a caller's sampled traceparent is always followed",
    )  # fmt: skip
    endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces URL (http://collector:4318/v1/traces); "
        "empty: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT or localhost",
    )
    service_name: str = Field(default="", description="empty: OTEL_SERVICE_NAME, else infergate")


_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if config.enabled:
        return True
    exporter = environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return any(environ.get(name) for name in _ENDPOINTS)


def setup(
    config: TracingConfig,
    processor: SpanProcessor | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TracerProvider | None:
    """Turn tracing on when `wanted` (router.spans then makes spans) and return
    the provider, to `shutdown` at exit; None when off. `processor`: instead of
    a batch to the OTLP exporter (tests pass the in-memory exporter's)."""
    if not wanted(config, environ):
        return None
    name = config.service_name or environ.get("OTEL_SERVICE_NAME") or "infergate"
    # Without the section, OTEL_TRACES_SAMPLER(_ARG) choose (the SDK reads them).
    sampler = ParentBased(TraceIdRatioBased(config.sampler_ratio)) if config.enabled else None
    provider = TracerProvider(sampler=sampler, resource=Resource.create({SERVICE_NAME: name}))
    if processor is None:
        exporter: SpanExporter = OTLPSpanExporter(endpoint=config.endpoint or None)
        processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    spans.enable(provider.get_tracer("infergate"))
    return provider


def shutdown(provider: TracerProvider) -> None:
    """Tracing off; the spans still queued are exported first."""
    spans.enable(None)
    provider.shutdown()
