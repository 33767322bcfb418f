"""Per-deployment routing state as Prometheus metrics: calls and failures,
health, breaker state, in-flight calls, learned time to first chunk and the
breaker window's error ratio, labelled by model alias, deployment and provider.

The router keeps this state in plain attributes that only the event loop
touches (reading a breaker's state may turn it half-open), so a task on the
loop copies it into metrics every `interval_s`, instead of a collector reading
it from the scrape thread. Series of deployments a reload dropped are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge

from gateway.live import LiveRouter
from router.breaker import BreakerState
from router.plan import Deployment

log = logging.getLogger("infergate.metrics")
_LABELS = ["model", "deployment", "provider"]

CALLS = Counter("infergate_deployment_calls", "Upstream attempts finished, by deployment", _LABELS)
FAILURES = Counter(
    "infergate_deployment_failures", "Upstream attempts that failed, by deployment", _LABELS
)
HEALTHY = Gauge(
    "infergate_deployment_healthy",
    "1 when the router may send calls to the deployment now (breaker, rate limit, probe)",
    _LABELS,
    multiprocess_mode="livemin",
)
BREAKER = Gauge(
    "infergate_deployment_breaker_state",
    "1 for the circuit breaker's current state (closed, open, half_open), else 0",
    [*_LABELS, "state"],
    multiprocess_mode="livemax",
)
IN_FLIGHT = Gauge(
    "infergate_deployment_in_flight", "Upstream calls running now", _LABELS,
    multiprocess_mode="livesum",
)  # fmt: skip
TTFT = Gauge(
    "infergate_deployment_ttft_ewma_seconds",
    "Streams: time to the first chunk, exponentially weighted (routing.ewma_alpha)",
    _LABELS,
    multiprocess_mode="livemax",
)
ERROR_RATIO = Gauge(
    "infergate_deployment_error_ratio",
    "Failed share of the calls in the breaker's window",
    _LABELS,
    multiprocess_mode="livemax",
)
_GAUGES = (HEALTHY, IN_FLIGHT, TTFT, ERROR_RATIO)


class DeploymentMetrics:
    """Copies one process's router state into the metrics above."""

    def __init__(self, live: LiveRouter) -> None:
        self._live = live
        self._counted: dict[tuple[str, str, str], tuple[int, int]] = {}  # calls, failures

    def publish(self) -> None:
        """Bring every series up to date with the live snapshot. Synchronous, on
        the event loop; no I/O."""
        present = set()
        for model in self._live.router.models.values():
            for deployment in model.deployments:
                labels = (model.alias, deployment.name, deployment.config.provider)
                present.add(labels)
                self._publish(labels, deployment)
        for labels in set(self._counted) - present:
            self._remove(labels)

    def _publish(self, labels: tuple[str, str, str], deployment: Deployment) -> None:
        state = deployment.state
        calls, failed = state.breaker.window()
        HEALTHY.labels(*labels).set(0 if state.skip_reason() else 1)
        IN_FLIGHT.labels(*labels).set(state.in_flight)
        TTFT.labels(*labels).set(state.ewma_ttft_s or 0.0)
        ERROR_RATIO.labels(*labels).set(failed / calls if calls else 0.0)
        current = state.breaker.state
        for value in BreakerState:
            BREAKER.labels(*labels, value.value).set(1 if value is current else 0)
        # The state's totals restart when a reload rebuilds it: count from zero again.
        seen_calls, seen_failures = self._counted.get(labels, (0, 0))
        if state.requests < seen_calls or state.failures < seen_failures:
            seen_calls = seen_failures = 0
        CALLS.labels(*labels).inc(state.requests - seen_calls)
        FAILURES.labels(*labels).inc(state.failures - seen_failures)
        self._counted[labels] = (state.requests, state.failures)

    def _remove(self, labels: tuple[str, str, str]) -> None:
        del self._counted[labels]
        for metric in (*_GAUGES, CALLS, FAILURES):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
        for value in BreakerState:
            with contextlib.suppress(KeyError):
                BREAKER.remove(*labels, value.value)

    def clear(self) -> None:
        """Remove every series this publisher made."""
        for labels in list(self._counted):
            self._remove(labels)

    async def publish_forever(self, interval_s: float) -> None:
        while True:
            try:
                self.publish()
            except Exception:  # a metrics bug must not stop the next refresh
                log.exception("publishing the deployment metrics failed")
            await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def published(live: LiveRouter, interval_s: float = 5.0) -> AsyncIterator[DeploymentMetrics]:
    """Publish `live`'s deployment state every `interval_s` while inside; on
    exit the task stops and this router's series are removed."""
    metrics = DeploymentMetrics(live)
    task = asyncio.create_task(metrics.publish_forever(interval_s))
    try:
        yield metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.clear()
