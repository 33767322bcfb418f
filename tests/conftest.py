from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest
import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.config import GatewayConfig, parse_config
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.server import Gateway
from tests.fakes.openai_server import OpenAIFake

REDIS_URL = os.environ.get("INFERGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(reason: str) -> NoReturn:
    """A service a test needs is down: a failure under CI (CI=true), a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.Redis]:
    """The local Redis (INFERGATE_TEST_REDIS_URL)."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_missing(f"no Redis at {REDIS_URL} ({exc!r}); start one to run the Redis tests")
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: redis.Redis) -> AsyncIterator[str]:
    """A key prefix of the test's own, its keys deleted afterwards."""
    prefix = f"infergate:test:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8"}]},
    "paced": {
        "deployments": [
            {"name": "paced-a", "provider": "mock", "model": "echo",
             "options": {"tokens": 20, "tokens_per_second": 100}}
        ]
    },
    "slow": {"deployments": [{"name": "slow-a", "provider": "mock", "model": "slow"}]},
    "cut": {
        "deployments": [
            {"name": "cut-a", "provider": "mock", "model": "echo?fail_after_tokens=3"}
        ]
    },
    "failover": {
        "deployments": [
            {"name": "bad", "provider": "mock", "model": "error", "weight": 5},
            {"name": "good", "provider": "mock", "model": "echo?tokens=4"},
        ]
    },
    "embed": {"deployments": [{"name": "embed-a", "provider": "mock", "model": "echo"}]},
}  # fmt: skip


def make_config(
    models: dict[str, Any] | None = None, top: dict[str, Any] | None = None, **server: Any
) -> GatewayConfig:
    """A test config: port 0, no metrics port, active probes off unless `top`
    (top-level sections: routing, retry, breaker, cache, filter) says otherwise."""
    return parse_config(
        {
            "routing": {"probe_interval_s": 0},
            "rest": {"port": 0},  # the REST shim on an ephemeral port (Gateway.http_port)
            # App layer: auth and usage off, an in-memory store (tests turn them on via `top`).
            "apps": {
                "auth": {"enabled": False},
                "usage": {"enabled": False},
                "store": {"url": "sqlite+aiosqlite://"},
            },
            **(top or {}),
            "server": {"port": 0, "metrics_port": 0, "grace_period_s": 1, **server},
            "models": models or MODELS,
        }
    )


def chat(model: str, text: str = "hello world", **fields: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model=model, messages=[pb.Message(role="user", content=text)], **fields
    )


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    started: list[Gateway] = []

    async def start(
        models: dict[str, Any] | None = None,
        factory: Any = None,
        top: dict[str, Any] | None = None,
        config_path: Any = None,
        clock: Any = None,
        **server: Any,
    ) -> Gateway:
        extra: dict[str, Any] = {"factory": factory} if factory is not None else {}
        if clock is not None:
            extra["clock"] = clock
        config = make_config(models, top, **server)
        gateway = await Gateway.start(config, config_path=config_path, **extra)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.server.stop(None)
        await gateway.close()


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> router_pb2_grpc.RouterStub:
    return router_pb2_grpc.RouterStub(channel)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the tiny test embedding model (indexer.testmodel: hidden
    size 64, max_tokens 64), built once per session; pass it to OnnxEmbedder."""
    from indexer.testmodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def openai_fake() -> AsyncIterator[OpenAIFake]:
    """A local server speaking OpenAI's HTTP API (tests/fakes/openai_server.py)."""
    fake = OpenAIFake()
    await fake.server.start()
    yield fake
    await fake.server.close()
