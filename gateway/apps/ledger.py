"""Spend ledgers: what each budget's subject spent in the current period, in
nano-dollars, under one key per (budget, period start).

`reserve` adds a call's estimated cost to every budget it is charged to, or
to none when one of them is already spent; `settle` corrects it by the real
cost afterwards and says which budgets crossed their alert share for the
first time in the period. `MemoryLedger` serves one process; `RedisLedger`
keeps the sums in Redis behind atomic Lua scripts, so every replica draws on
one budget and a restarted gateway finds what was spent. A Redis failure lets
calls through (logged once per failure streak), as the rate limiter does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.apps.batched import Batched

log = logging.getLogger("infergate.spend")
_MAX_MEMORY_KEYS = 100_000  # then keys of past periods are dropped


class Charge(NamedTuple):  # a tuple: built per budgeted call on the hot path
    key: str  # the budget and its period's start, e.g. "t:acme:acme:1764547200"
    limit: int  # nano-dollars; a call is refused once the spend reached it
    alert_at: int  # nano-dollars; 0: no alert
    ttl_ms: int  # how long the key must outlive now (its period's end, and a day); 0: forever


Crossed = Callable[[int], None]  # told the index of each charge that crossed its alert share


class Ledger(Protocol):
    async def reserve(self, charges: Sequence[Charge], amount: int) -> int:
        """Add `amount` to every charge, unless one is spent: -1 when added,
        else the index of the first spent charge (nothing added). Not
        idempotent; cancelling it may or may not have added."""
        ...

    def settle(self, charges: Sequence[Charge], delta: int, crossed: Crossed) -> None:
        """Add `delta` (negative: give back) to every charge. Fire and forget:
        it never delays the caller; `aclose` waits for settlements still running."""
        ...

    async def spent(self, keys: Sequence[str]) -> list[int]: ...

    async def seed(self, key: str, amount: int, ttl_ms: int) -> bool:
        """Set a key's spend where no replica has one yet (after a restart, from
        the usage records); a key in use is left as it is. False when the
        ledger could not be reached (try again later)."""
        ...

    async def aclose(self) -> None: ...


class MemoryLedger:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._spent: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._alerted: set[str] = set()

    async def reserve(self, charges: Sequence[Charge], amount: int) -> int:
        spent = self._spent
        for i, charge in enumerate(charges):
            if spent.get(charge.key, 0) >= charge.limit:
                return i
        for charge in charges:
            spent[charge.key] = spent.get(charge.key, 0) + amount
            if charge.key not in self._expires:
                self._keep(charge)
        return -1

    def settle(self, charges: Sequence[Charge], delta: int, crossed: Crossed) -> None:
        spent = self._spent
        for i, charge in enumerate(charges):
            now = spent[charge.key] = spent.get(charge.key, 0) + delta
            if charge.alert_at and now >= charge.alert_at and charge.key not in self._alerted:
                self._alerted.add(charge.key)
                crossed(i)

    async def spent(self, keys: Sequence[str]) -> list[int]:
        return [self._spent.get(k, 0) for k in keys]

    async def seed(self, key: str, amount: int, ttl_ms: int) -> bool:
        if key not in self._spent:
            self._spent[key] = amount
            self._keep(Charge(key, 0, 0, ttl_ms))
        return True

    def _keep(self, charge: Charge) -> None:
        now = self._clock()
        self._expires[charge.key] = now + charge.ttl_ms / 1000 if charge.ttl_ms else float("inf")
        if len(self._expires) > _MAX_MEMORY_KEYS:
            for key in [k for k, t in self._expires.items() if t <= now]:
                del self._expires[key]
                self._spent.pop(key, None)
                self._alerted.discard(key)

    async def aclose(self) -> None:
        self._spent.clear()


# KEYS: spend keys; ARGV: amount, then limit and ttl ms per key. Returns 0 when
# added, else the 1-based index of the first spent key.
_RESERVE = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i]) then return i end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 0
"""

# KEYS: n spend keys, then their n alert flags; ARGV: delta, then alert_at and
# ttl ms per key. Returns the 1-based indexes that crossed their alert share first.
_SETTLE = """
local n = #KEYS / 2
local crossed = {}
for i = 1, n do
  local spent = redis.call('INCRBY', KEYS[i], ARGV[1])
  local at, ttl = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  if at > 0 and spent >= at then
    local set
    if ttl > 0 then set = redis.call('SET', KEYS[n + i], '1', 'NX', 'PX', ttl)
    else set = redis.call('SET', KEYS[n + i], '1', 'NX') end
    if set then crossed[#crossed + 1] = i end
  end
end
return crossed
"""


class RedisLedger:
    def __init__(self, url: str, prefix: str = "infergate:spend:") -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = prefix
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._failing = False
        self._settlements: Batched[tuple[Sequence[Charge], int, Crossed]] = Batched(self._send)

    async def reserve(self, charges: Sequence[Charge], amount: int) -> int:
        keys = [self._prefix + c.key for c in charges]
        args = [amount, *(x for c in charges for x in (c.limit, c.ttl_ms))]
        try:
            found = int(await self._reserve(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return -1
        self._failing = False
        return found - 1

    def settle(self, charges: Sequence[Charge], delta: int, crossed: Crossed) -> None:
        self._settlements.add((charges, delta, crossed))  # sent in batches (batched.py)

    async def _send(self, batch: list[tuple[Sequence[Charge], int, Crossed]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for charges, delta, _ in batch:
                    keys = [self._prefix + c.key for c in charges]
                    keys += [k + ":alerted" for k in keys]
                    args = [delta, *(x for c in charges for x in (c.alert_at, c.ttl_ms))]
                    await self._settle(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:  # lost: the estimates stay charged
            self._failed(exc)
            return
        for (_, _, crossed), found in zip(batch, results, strict=True):
            for i in found:
                crossed(int(i) - 1)

    async def spent(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        try:
            values = await self._client.mget([self._prefix + k for k in keys])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return [0] * len(keys)
        return [int(v or 0) for v in values]

    async def seed(self, key: str, amount: int, ttl_ms: int) -> bool:
        try:
            await self._client.set(self._prefix + key, amount, nx=True, px=ttl_ms or None)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        return True

    async def flush(self) -> None:
        """Wait for the settlements queued or in flight."""
        await self._settlements.flush()

    async def aclose(self) -> None:
        await self.flush()
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("spend ledger unavailable, letting calls through: %r", exc)
        self._failing = True
