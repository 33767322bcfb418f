"""The request cache as the gateway builds it: the configured store, sharing
between replicas where the store is shared (Redis), the caller's tenant from
the RPC's principal, metrics, and the embedder for semantic matching once the
gateway has one."""

from __future__ import annotations

from adapters.redis_cache import RedisSharedPrompts, build_cache
from gateway import identity
from gateway.cache_metrics import CacheMetrics
from router.config import CacheConfig
from router.request_cache import RequestCache

_ENTRY_BYTES = 2048  # about one shared semantic entry (a 384-float vector and a prompt)
METRICS = CacheMetrics()


def tenant() -> str:
    return identity.current().tenant


def open_cache(config: CacheConfig) -> RequestCache | None:
    """The cache `config` describes, following the other replicas' semantic
    entries (shared stores); None when disabled. Runs on the event loop."""
    if not config.enabled:
        return None
    shared = None
    if config.backend == "redis":
        shared = RedisSharedPrompts(config, config.semantic.max_bytes // _ENTRY_BYTES)
    cache = RequestCache(
        build_cache(config), config, tenant=tenant, shared=shared, observer=METRICS
    )
    cache.start()
    return cache
