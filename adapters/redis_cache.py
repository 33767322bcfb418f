"""The request cache in Redis, shared by every gateway replica (answers under
their keys; semantic entries on a stream each replica follows), and the one
place that picks a cache backend from the config."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from router.cache import CachedAnswer, MemoryCache, ResponseCache
from router.config import CacheConfig
from router.semantic import Entry, SemanticIndex, Vector

log = logging.getLogger("infergate.cache")

# A cache lookup sits in front of every cacheable request: a slow or dead Redis
# must cost a miss, not a stall. No retries for the same reason.
_TIMEOUT_S = 0.25
_CONNECTIONS = 64
_BLOCK_MS = 5000  # a follower's wait for new shared entries


def build_cache(config: CacheConfig, timer: Callable[[], float] = time.monotonic) -> ResponseCache:
    """The backend `config.backend` names; whether to use it (`enabled`) is the
    caller's decision. No I/O: Redis connects on first use."""
    if config.backend == "redis":
        return RedisCache(config)
    return MemoryCache(config.max_bytes, config.ttl_s, timer=timer)


def _client(url: str) -> redis.Redis:
    """A client whose calls wait up to _TIMEOUT_S for one of _CONNECTIONS
    connections: under load, excess calls queue briefly instead of failing
    (redis-py's default pool refuses the 101st call at once)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=_CONNECTIONS,
        timeout=_TIMEOUT_S,
        socket_timeout=_TIMEOUT_S,
        socket_connect_timeout=_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis.from_pool(pool)  # closing the client closes the pool


class RedisCache:
    """A ResponseCache in Redis: `GET` / `SET … PX ttl` under `key_prefix + key`,
    values from `CachedAnswer.to_json()`. Redis errors and unreadable entries
    become misses and dropped writes, logged at warning once per failure streak."""

    def __init__(self, config: CacheConfig) -> None:
        self._prefix = config.key_prefix
        self._ttl_ms = max(1, round(config.ttl_s * 1000))
        self._client = _client(config.redis_url)
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

    @property
    def healthy(self) -> bool:
        return not self._failing

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


class RedisSharedPrompts:
    """SharedPrompts over one Redis stream (`key_prefix + "semantic"`): each
    entry a cached prompt's partition, scope, vector (float32 bytes), key,
    text, request id, wall-clock expiry and the publishing process. A follower
    reads from the oldest entry kept (the stream is trimmed to about
    `max_entries`), skips its own and expired ones, and blocks for more on a
    connection of its own; it reconnects after a failure, 1 s later."""

    def __init__(self, config: CacheConfig, max_entries: int) -> None:
        self._stream = config.key_prefix + "semantic"
        self._ttl_s = config.ttl_s
        self._max_entries = max(1, max_entries)
        self._origin = secrets.token_hex(8)
        self._client = _client(config.redis_url)
        # Blocking reads wait up to _BLOCK_MS: a socket timeout above that.
        self._reader = redis.Redis.from_url(
            config.redis_url, socket_timeout=_BLOCK_MS / 1000 + 5, socket_connect_timeout=5
        )
        self._failing = False

    async def publish(self, partition: str, scope: str, vector: Vector, entry: Entry) -> None:
        fields: dict[Any, Any] = {
            "p": partition, "s": scope, "v": vector.astype(np.float32).tobytes(), "k": entry.key,
            "t": entry.text.encode("utf-8", "surrogatepass"), "r": entry.request_id,
            "e": time.time() + self._ttl_s, "o": self._origin,
        }  # fmt: skip
        try:
            await self._client.xadd(
                self._stream, fields, maxlen=self._max_entries, approximate=True
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._recovered()

    async def follow(self, index: SemanticIndex) -> None:
        last = "0"
        while True:
            try:
                found = await self._reader.xread({self._stream: last}, count=500, block=_BLOCK_MS)
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # a cancelled read, not a failure
                    raise asyncio.CancelledError from exc
                self._failed(exc)
                await asyncio.sleep(1.0)
                continue
            self._recovered()
            streams = found.items() if isinstance(found, dict) else found  # RESP3: a map
            for _, entries in cast(list[tuple[bytes, list[tuple[bytes, Any]]]], streams):
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    self._add(index, fields)

    def _add(self, index: SemanticIndex, fields: dict[bytes, bytes]) -> None:
        try:
            if fields[b"o"].decode() == self._origin:
                return
            left = float(fields[b"e"]) - time.time()
            if left <= 0:
                return
            vector = np.frombuffer(fields[b"v"], dtype=np.float32)
            entry = Entry(
                key=fields[b"k"].decode(),
                text=fields[b"t"].decode("utf-8", "surrogatepass"),
                request_id=fields[b"r"].decode(),
                expires=index.clock() + left,
            )
            index.add(fields[b"p"].decode(), fields[b"s"].decode(), vector, entry)
        except (KeyError, ValueError) as exc:  # not ours, or from another version
            log.debug("semantic cache: skipped a shared entry: %r", exc)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._reader.aclose()

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning("semantic cache sharing failed, this replica goes on alone: %r", exc)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("semantic cache sharing is working again")
