"""The rate limiters below the contract suite of test_quota.py: the refill
arithmetic behind `adjust`, and how the Redis limiter behaves when Redis is
slow, unreachable or back again (a fake Redis on localhost plays those parts;
the real one at 127.0.0.1:6379 serves the rest)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.apps.limits import Budget, MemoryLimiter, RedisLimiter
from tests.conftest import REDIS_URL
from tests.gateway.apps.test_quota import FakeClock, settle

# --- the in-memory buckets ------------------------------------------------------------------


async def test_adjust_settles_on_the_level_refilled_since_the_last_take() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    assert await limiter.acquire([Budget("a", 60, 60)]) == 0  # empty now
    clock.now += 10  # 10 units back at 1/s
    limiter.adjust("a", 60, -5)  # the call used 5 more than it reserved: 5 left
    assert await limiter.acquire([Budget("a", 60, 6)]) == pytest.approx(1.0)  # 1 short
    assert await limiter.acquire([Budget("a", 60, 5)]) == 0
    limiter.adjust("fresh", 60, -20)  # a bucket never used starts full
    assert await limiter.acquire([Budget("fresh", 60, 40)]) == 0
    assert await limiter.acquire([Budget("fresh", 60, 1)]) == pytest.approx(1.0)


async def test_no_budget_means_no_wait() -> None:
    assert await MemoryLimiter().acquire([]) == 0.0


async def test_no_budget_means_no_wait_nor_a_redis_call(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, redis_prefix)
    try:
        assert await limiter.acquire([]) == 0.0
    finally:
        await limiter.aclose()


# --- Redis: adjustments in the background ---------------------------------------------------


async def test_flushed_adjustments_leave_no_task_behind(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, redis_prefix)
    try:
        assert await limiter.acquire([Budget("t", 100, 100)]) == 0
        for _ in range(3):
            limiter.adjust("t", 100, 10)
        await settle(limiter)
        assert limiter._adjustments.pending == [] and limiter._adjustments.sending is not None
        assert limiter._adjustments.sending.done()
        assert await limiter.acquire([Budget("t", 100, 30)]) == 0
    finally:
        await limiter.aclose()


async def test_a_burst_of_adjustments_uses_few_connections_and_settles_exactly(
    redis_prefix: str,
) -> None:
    # One pooled connection per background adjustment exhausted redis-py's
    # pool under load; batched, 2000 concurrent settles share one.
    limiter = RedisLimiter(REDIS_URL, redis_prefix)
    pool = limiter._client.connection_pool

    def connections() -> int:
        return len(pool._available_connections) + len(pool._in_use_connections)

    try:
        # 1 unit a minute: the bucket refills by a sixtieth of a unit a second,
        # so the level after the burst says exactly how many settled.
        assert await limiter.acquire([Budget("t", 1, 1)]) == 0  # empty
        assert connections() == 1

        async def call_ends() -> None:
            await asyncio.sleep(0)
            limiter.adjust("t", 1, -1)  # each call used one unit more than it reserved

        await asyncio.gather(*(call_ends() for _ in range(2000)))
        await limiter.flush()
        assert connections() == 1  # the sender reused acquire's connection
        level = float(await limiter._client.hget(redis_prefix + "t", "level") or 0)
        assert -2000 <= level < -1999.9
    finally:
        await limiter.aclose()


async def test_aclose_sends_the_adjustments_still_running(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, redis_prefix)
    assert await limiter.acquire([Budget("t", 100, 100)]) == 0
    limiter.adjust("t", 100, 100)  # all of it back...
    await limiter.aclose()  # ...though nobody waited for it
    again = RedisLimiter(REDIS_URL, redis_prefix)
    try:
        assert await again.acquire([Budget("t", 100, 100)]) == 0
    finally:
        await again.aclose()


# --- Redis: slow, unreachable, back again ----------------------------------------------------


class FakeRedis:
    """Just enough RESP3 for the limiter: HELLO, CLIENT ..., and EVALSHA answered
    with `wait`; or, while `silent`, reads and never answers."""

    def __init__(self) -> None:
        self.silent = False
        self.wait = b"0"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                if self.silent:
                    continue
                command = args[0].upper()
                if command == b"HELLO":
                    writer.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif command == b"EVALSHA":
                    writer.write(b"$%d\r\n%s\r\n" % (len(self.wait), self.wait))
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def fake_redis() -> AsyncIterator[tuple[FakeRedis, str]]:
    fake = FakeRedis()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield fake, f"redis://127.0.0.1:{port}/0"
    server.close()


async def timed_acquire(limiter: RedisLimiter) -> tuple[float, float]:
    started = time.monotonic()
    wait = await asyncio.wait_for(limiter.acquire([Budget("a", 1, 1)]), 5)
    return wait, time.monotonic() - started


async def test_a_silent_redis_costs_half_a_second_once_per_call_and_is_logged_once_per_streak(
    fake_redis: tuple[FakeRedis, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_redis
    limiter = RedisLimiter(url)
    caplog.set_level(logging.WARNING, logger="infergate.limits")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "infergate.limits"]

    try:
        fake.silent = True
        for _ in range(2):
            wait, took = await timed_acquire(limiter)
            assert wait == 0.0  # let through
            assert 0.4 <= took < 1.25  # the read timeout, not longer
        assert len(warnings()) == 1
        assert warnings()[0].startswith("rate limiter unavailable, letting calls through: ")
        fake.silent, fake.wait = False, b"2.5"
        assert (await timed_acquire(limiter))[0] == 2.5  # Redis answers again
        fake.silent = True
        assert (await timed_acquire(limiter))[0] == 0.0
        assert len(warnings()) == 2  # a new streak, a new warning
    finally:
        await limiter.aclose()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a
    connect hangs as it would to a host that is down."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for s in [*fillers, server]:
        s.close()


async def test_an_unreachable_redis_costs_half_a_second_to_connect(unanswered_port: int) -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{unanswered_port}/0")
    try:
        wait, took = await timed_acquire(limiter)
        assert wait == 0.0
        assert 0.4 <= took < 1.25  # the connect timeout, not longer
    finally:
        await limiter.aclose()
