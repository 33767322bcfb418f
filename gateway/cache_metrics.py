"""The request cache as Prometheus metrics: lookups by kind and result and the
similarity of semantic hits (counted as they happen), bytes held and
evictions (copied from the cache every `interval_s` by a task on the loop,
like gateway/deployment_metrics.py). Bytes and evictions of exact entries are
known for the memory backend only: Redis keeps and expires its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge, Histogram

from gateway.live import LiveRouter
from router.cache import MemoryCache

log = logging.getLogger("infergate.metrics")

LOOKUPS = Counter(
    "infergate_cache_lookups",
    "Request cache lookups, by kind (exact, semantic) and result (hit, miss, skipped)",
    ["kind", "result"],
)
SIMILARITY = Histogram(
    "infergate_cache_hit_similarity",
    "Semantic cache hits: cosine similarity of the prompts",
    buckets=(0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 1.0),
)
BYTES = Gauge(
    "infergate_cache_bytes",
    "Bytes the request cache holds in this process, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
EVICTIONS = Counter(
    "infergate_cache_evictions",
    "Request cache entries removed before expiry was asked of them, by kind and reason",
    ["kind", "reason"],
)


class CacheMetrics:
    """The cache's Observer (lookups), and the copier of its sizes."""

    def __init__(self) -> None:
        self._counted: dict[tuple[str, str], int] = {}

    def lookup(self, kind: str, result: str, similarity: float = 0.0) -> None:
        LOOKUPS.labels(kind, result).inc()
        if result == "hit" and kind == "semantic":
            SIMILARITY.observe(similarity)

    def publish(self, live: LiveRouter) -> None:
        cache = live.cache
        if cache is None:
            return
        BYTES.labels("semantic").set(cache.index.bytes)
        self._count("semantic", cache.index.evictions)
        if isinstance(cache.store, MemoryCache):
            BYTES.labels("exact").set(cache.store.bytes)
            self._count("exact", cache.store.evictions)

    def _count(self, kind: str, evictions: Tally[str]) -> None:
        for reason, total in evictions.items():
            seen = self._counted.get((kind, reason), 0)
            if total < seen:  # a new cache (its config changed): count from zero again
                seen = 0
            EVICTIONS.labels(kind, reason).inc(total - seen)
            self._counted[kind, reason] = total


@contextlib.asynccontextmanager
async def published(
    live: LiveRouter, metrics: CacheMetrics, interval_s: float = 5.0
) -> AsyncIterator[None]:
    """Copy `live.cache`'s sizes into the metrics every `interval_s` while inside."""

    async def forever() -> None:
        while True:
            try:
                metrics.publish(live)
            except Exception:  # a metrics bug must not stop the next refresh
                log.exception("publishing the cache metrics failed")
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
