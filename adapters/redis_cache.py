"""The request cache in Redis, shared by every gateway replica, and the one
place that picks a cache backend from the config."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from router.cache import CachedAnswer, MemoryCache, ResponseCache
from router.config import CacheConfig

log = logging.getLogger("infergate.cache")

# A cache lookup sits in front of every cacheable request: a slow or dead Redis
# must cost a miss, not a stall. No retries for the same reason.
_TIMEOUT_S = 0.25


def build_cache(config: CacheConfig, timer: Callable[[], float] = time.monotonic) -> ResponseCache:
    """The backend `config.backend` names; whether to use it (`enabled`) is the
    caller's decision. No I/O: Redis connects on first use."""
    if config.backend == "redis":
        return RedisCache(config)
    return MemoryCache(config.max_bytes, config.ttl_s, timer=timer)


class RedisCache:
    """A ResponseCache in Redis: `GET` / `SET … PX ttl` under `key_prefix + key`,
    values from `CachedAnswer.to_json()`. Redis errors and unreadable entries
    become misses and dropped writes, logged at warning once per failure streak."""

    def __init__(self, config: CacheConfig) -> None:
        self._prefix = config.key_prefix
        self._ttl_ms = max(1, round(config.ttl_s * 1000))
        self._client = redis.Redis.from_url(
            config.redis_url,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._failing = False

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            data = await self._client.get(self._prefix + key)
            answer = None if data is None else CachedAnswer.from_json(data)
        except (RedisError, OSError, ValueError) as exc:
            self._failed("get", exc)
            return None
        self._recovered()
        return answer

    async def put(self, key: str, answer: CachedAnswer) -> None:
        try:
            await self._client.set(self._prefix + key, answer.to_json(), px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            self._failed("put", exc)
            return
        self._recovered()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _failed(self, op: str, exc: Exception) -> None:
        if self._failing:
            log.debug("response cache %s failed: %r", op, exc)
            return
        self._failing = True
        log.warning("response cache %s failed, serving without it: %r", op, exc)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("response cache is working again")
