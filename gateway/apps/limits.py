"""Rate limits: token buckets in requests/min and tokens/min, per key and per tenant.

A bucket holds up to `per_minute` units and refills continuously at
`per_minute / 60` per second. `acquire` takes the costs of several buckets at
once or none of them (a request must fit its key's and its tenant's budgets),
and says how long until it would fit. Token costs are estimates taken before a
call; `adjust` settles them with the real usage afterwards, so a bucket may go
below zero when a call used more than reserved, which delays later callers.
A single cost larger than a bucket's size is capped at the size: such a call
waits for a full bucket rather than never running.

`MemoryLimiter` serves one process (the embedded default); `RedisLimiter`
keeps the buckets in Redis behind atomic Lua scripts, so every replica draws on
one budget. Redis time is the clock there, so replicas need no clock sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.apps.batched import Batched

log = logging.getLogger("infergate.limits")
_IDLE_TTL_MS = 120_000  # a bucket untouched this long is full again: drop it


class Budget(NamedTuple):  # a tuple: built per call on the hot path
    key: str  # e.g. "k:<key id>:r" (requests), "t:<tenant>:t" (tokens)
    per_minute: int  # > 0
    cost: int


class Limiter(Protocol):
    async def acquire(self, budgets: Sequence[Budget]) -> float:
        """Take every budget's cost, or none: 0.0 when taken, else the seconds
        until all would fit. Not idempotent (each call takes again); cancelling
        it may or may not have taken the costs."""
        ...

    def adjust(self, key: str, per_minute: int, refund: int) -> None:
        """Give `refund` units back (negative: take more). Fire and forget: it
        never delays the caller; `aclose` waits for adjustments still running."""
        ...

    async def aclose(self) -> None: ...


def _cap(budget: Budget) -> int:
    return min(budget.cost, budget.per_minute)


class MemoryLimiter:
    """In-process buckets; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [level, at]

    def _level(self, key: str, per_minute: int, now: float) -> float:
        level, at = self._buckets.get(key) or (float(per_minute), now)
        return min(float(per_minute), level + (now - at) * per_minute / 60.0)

    async def acquire(self, budgets: Sequence[Budget]) -> float:
        now, buckets = self._clock(), self._buckets
        levels, wait = [], 0.0
        for key, per_minute, cost in budgets:
            state = buckets.get(key)
            level = (
                float(per_minute)
                if state is None
                else min(float(per_minute), state[0] + (now - state[1]) * per_minute / 60.0)
            )
            levels.append(level)
            short = min(cost, per_minute) - level
            if short > 0:
                wait = max(wait, short * 60.0 / per_minute)
        if wait > 0:
            return wait
        for (key, per_minute, cost), level in zip(budgets, levels, strict=True):
            buckets[key] = [level - min(cost, per_minute), now]
        return 0.0

    def adjust(self, key: str, per_minute: int, refund: int) -> None:
        now = self._clock()
        self._buckets[key] = [
            min(float(per_minute), self._level(key, per_minute, now) + refund),
            now,
        ]

    async def aclose(self) -> None:
        self._buckets.clear()


# KEYS: buckets; ARGV: per_minute, cost pairs. Returns "0" when taken, else the wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels, wait = {}, 0
for i = 1, #KEYS do
  local limit, cost = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local s = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level = tonumber(s[1]) or limit
  local at = tonumber(s[2]) or now
  level = math.min(limit, level + math.max(0, now - at) * limit / 60)
  levels[i] = level
  if level < cost then wait = math.max(wait, (cost - level) * 60 / limit) end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do
  local level = levels[i] - tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 'level', tostring(level), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
end
return '0'
"""

# KEYS[1]: bucket; ARGV: per_minute, refund, idle ttl ms.
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, refund = tonumber(ARGV[1]), tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(s[1]) or limit
local at = tonumber(s[2]) or now
level = math.min(limit, level + math.max(0, now - at) * limit / 60 + refund)
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class RedisLimiter:
    """Buckets shared by every replica. A Redis failure lets the call through
    (logged once per failure streak): a limiter outage must not become a
    gateway outage."""

    def __init__(self, url: str, prefix: str = "infergate:limit:") -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = prefix
        self._acquire = self._client.register_script(_ACQUIRE)
        self._adjust = self._client.register_script(_ADJUST)
        self._failing = False
        self._adjustments: Batched[tuple[str, int, int]] = Batched(self._send)

    async def acquire(self, budgets: Sequence[Budget]) -> float:
        if not budgets:
            return 0.0
        keys = [self._prefix + b.key for b in budgets]
        args: list[int] = [x for b in budgets for x in (b.per_minute, _cap(b))]
        try:
            wait = float(await self._acquire(keys=keys, args=[*args, _IDLE_TTL_MS]))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return 0.0
        self._failing = False
        return wait

    def adjust(self, key: str, per_minute: int, refund: int) -> None:
        self._adjustments.add((key, per_minute, refund))  # sent in batches (batched.py)

    async def _send(self, batch: list[tuple[str, int, int]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, per_minute, refund in batch:
                    args = [per_minute, refund, _IDLE_TTL_MS]
                    await self._adjust(keys=[self._prefix + key], args=args, client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # lost: the estimates stay taken
            self._failed(exc)

    async def flush(self) -> None:
        """Wait for the adjustments queued or in flight."""
        await self._adjustments.flush()

    async def aclose(self) -> None:
        await self.flush()
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("rate limiter unavailable, letting calls through: %r", exc)
        self._failing = True
