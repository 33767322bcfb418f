"""Rate limits: one contract suite for the in-memory and the Redis limiter, and
the limits end to end: per key, per tenant, token reservations settled with
the real usage, and one budget shared by two gateway processes over Redis
(127.0.0.1:6379; under CI=true a missing Redis fails these tests)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gateway.apps.limits import Budget, Limiter, MemoryLimiter, RedisLimiter
from gateway.apps.model import Tenant
from gateway.apps.store import Store
from gateway.identity import Role
from gateway.pb import app_pb2, app_pb2_grpc, router_pb2, router_pb2_grpc
from gateway.server import Gateway
from tests.conftest import MODELS, REDIS_URL, StartGateway, chat
from tests.gateway.apps.test_auth import admin, bearer, secure_top

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def memory_limiter() -> AsyncIterator[Limiter]:
    made = MemoryLimiter(FakeClock())  # time stands still: no refill
    yield made
    await made.aclose()


@pytest.fixture
async def redis_limiter(redis_prefix: str) -> AsyncIterator[Limiter]:
    made = RedisLimiter(REDIS_URL, redis_prefix)
    yield made
    await made.aclose()


@pytest.fixture(params=["memory_limiter", "redis_limiter"])
def limiter(request: pytest.FixtureRequest) -> Limiter:
    made: Limiter = request.getfixturevalue(request.param)
    return made


async def settle(limiter: Limiter) -> None:
    if isinstance(limiter, RedisLimiter):  # adjustments are sent in the background
        await limiter.flush()


# --- the limiter contract -------------------------------------------------------------------


async def test_takes_within_the_budget_then_says_how_long_to_wait(limiter: Limiter) -> None:
    assert await limiter.acquire([Budget("a", 6, 4)]) == 0
    assert await limiter.acquire([Budget("a", 6, 2)]) == 0
    wait = await limiter.acquire([Budget("a", 6, 3)])
    assert 29 <= wait <= 30  # 3 units at 6/min: 30 s (less what refilled meanwhile)


async def test_takes_all_budgets_or_none(limiter: Limiter) -> None:
    assert await limiter.acquire([Budget("tight", 1, 1)]) == 0
    wait = await limiter.acquire([Budget("roomy", 10, 1), Budget("tight", 1, 1)])
    assert wait == pytest.approx(60, abs=0.5)  # one unit at 1/min
    assert await limiter.acquire([Budget("roomy", 10, 10)]) == 0  # nothing was taken from it


async def test_adjust_gives_back_and_takes_more(limiter: Limiter) -> None:
    assert await limiter.acquire([Budget("t", 100, 100)]) == 0
    limiter.adjust("t", 100, 60)  # the call used 40 of the 100 reserved
    await settle(limiter)
    assert await limiter.acquire([Budget("t", 100, 60)]) == 0
    limiter.adjust("t", 100, -50)  # ...and this one 110 of 60
    await settle(limiter)
    # 50 in debt: 51 units short at 100/min.
    assert await limiter.acquire([Budget("t", 100, 1)]) == pytest.approx(30.6, abs=0.5)


async def test_a_cost_above_the_bucket_size_waits_for_a_full_bucket(limiter: Limiter) -> None:
    assert await limiter.acquire([Budget("big", 10, 500)]) == 0  # took the 10 there were
    assert await limiter.acquire([Budget("big", 10, 1)]) == pytest.approx(6.0, abs=0.5)


async def test_an_idle_bucket_refills_to_its_size_and_no_further(
    limiter: Limiter, redis_prefix: str
) -> None:
    """6,000/min is 100 units a second: a bucket one unit short that idles a
    second holds its size again, not 99 units more."""
    assert await limiter.acquire([Budget("idle", 6000, 1)]) == 0
    if isinstance(limiter, MemoryLimiter):
        limiter._clock.now += 1.0  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(1.0)  # Redis keeps time itself
    assert await limiter.acquire([Budget("idle", 6000, 6000)]) == 0
    wait = await limiter.acquire([Budget("idle", 6000, 1)])
    assert 0 < wait <= 0.011  # empty: one unit is 10 ms away


async def test_buckets_refill_continuously() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    assert await limiter.acquire([Budget("a", 60, 60)]) == 0
    assert await limiter.acquire([Budget("a", 60, 1)]) == pytest.approx(1.0)
    clock.now += 1.0
    assert await limiter.acquire([Budget("a", 60, 1)]) == 0
    clock.now += 3600
    assert await limiter.acquire([Budget("a", 60, 61)]) == 0  # capped at the bucket size


async def test_a_dead_redis_lets_calls_through() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    try:
        assert await limiter.acquire([Budget("a", 1, 1)]) == 0
        assert await limiter.acquire([Budget("a", 1, 1)]) == 0
    finally:
        await limiter.aclose()


# --- end to end -----------------------------------------------------------------------------


async def key(gateway: Gateway, tenant: str, role: str = "user", **limits: int) -> Any:
    assert gateway.apps is not None
    store = gateway.apps.store
    try:
        await store.tenants.get(tenant)
    except Exception:
        rpm, tpm = limits.pop("tenant_rpm", 0), limits.pop("tenant_tpm", 0)
        await store.tenants.create(Tenant(tenant, tenant, rpm, tpm), "test")
    _, secret = await store.keys.create(tenant, Role[role.upper()], "test", **limits)
    return bearer(secret)


async def outcome(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        trailers = dict(exc.trailing_metadata() or ())
        return exc.code(), str(trailers.get("retry-after", ""))
    return grpc.StatusCode.OK, ""


async def test_per_key_request_limit_with_retry_delay(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(top=secure_top(tmp_path))
    limited = await key(gateway, "acme", rpm=2)
    other = await key(gateway, "acme")
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        results = [await outcome(stub.Generate(chat("chat"), metadata=limited)) for _ in range(3)]
        assert [code for code, _ in results] == [grpc.StatusCode.OK] * 2 + [
            grpc.StatusCode.RESOURCE_EXHAUSTED
        ]
        assert 29 <= float(results[2][1]) <= 30  # one request at 2/min
        # Another key of the tenant has its own budget.
        assert (await outcome(stub.Generate(chat("chat"), metadata=other)))[0] is grpc.StatusCode.OK


async def test_per_tenant_request_limit_spans_its_keys(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(top=secure_top(tmp_path))
    first = await key(gateway, "acme", tenant_rpm=3)
    second = await key(gateway, "acme")
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        codes = [
            (await outcome(stub.ListModels(router_pb2.ListModelsRequest(), metadata=md)))[0]
            for md in (first, second, first, second)
        ]
    assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_token_reservations_are_settled_with_the_real_usage(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(top=secure_top(tmp_path))
    md = await key(gateway, "acme", tpm=100)
    ask = chat("chat", "hello world", params=router_pb2.GenerationParams(max_tokens=60))
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        first = await stub.Generate(ask, metadata=md)  # reserves 64, uses 2 + 8
        assert first.usage.total_tokens == 10
        # Without settling, 36 would be left and this reservation of 64 refused.
        assert (await outcome(stub.Generate(ask, metadata=md)))[0] is grpc.StatusCode.OK
        big = chat("chat", "hello world", params=router_pb2.GenerationParams(max_tokens=95))
        code, retry_after = await outcome(stub.Generate(big, metadata=md))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and float(retry_after) > 0


def _serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := re.search(r"serving gRPC on (\S+)", line):
            return proc, match.group(1)
    proc.stderr.close()
    raise AssertionError(f"gateway did not start (exit {proc.wait()})")


@pytest.fixture
def config_file(tmp_path: Path, redis_prefix: str) -> Iterator[Path]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"port": 0, "metrics_port": 0, "grace_period_s": 0},
        "routing": {"probe_interval_s": 0},
        "rest": {"port": 0},
        "data_dir": str(tmp_path / "data"),
        "apps": {"limits": {"backend": "redis", "redis_url": REDIS_URL,
                            "key_prefix": redis_prefix}},
        "models": {"chat": MODELS["chat"]},
    }))  # fmt: skip
    yield path


@pytest.mark.slow
async def test_two_gateway_processes_share_one_budget_through_redis(
    config_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'infergate.db'}")
    try:
        await store.tenants.create(Tenant("acme"), "test")
        _, secret = await store.keys.create("acme", Role.USER, "test", rpm=4)
    finally:
        await store.aclose()
    procs: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for _ in range(2):
            procs.append(await asyncio.to_thread(_serve, config_file))
        codes: list[tuple[int, grpc.StatusCode]] = []
        for i in range(8):
            proc_index = i % 2
            async with grpc.aio.insecure_channel(procs[proc_index][1]) as ch:
                stub = router_pb2_grpc.RouterStub(ch)
                code, _ = await outcome(stub.Generate(chat("chat"), metadata=bearer(secret)))
            codes.append((proc_index, code))
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(10)
            assert proc.stderr is not None
            proc.stderr.close()
    ok = [p for p, code in codes if code is grpc.StatusCode.OK]
    refused = [p for p, code in codes if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(ok) == 4 and len(refused) == 4  # each process alone would have allowed 4
    assert set(refused) == {0, 1}


async def test_admin_keys_are_limited_too(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = await start_gateway(top=secure_top(tmp_path))
    limited = await key(gateway, "ops", "admin", rpm=1)
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        stub = app_pb2_grpc.AppStub(ch)
        request = app_pb2.ListTenantsRequest()
        assert (await outcome(stub.ListTenants(request, metadata=limited)))[0] is grpc.StatusCode.OK
        code, _ = await outcome(stub.ListTenants(request, metadata=limited))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await outcome(stub.ListTenants(request, metadata=admin(gateway))))[
            0
        ] is grpc.StatusCode.OK
