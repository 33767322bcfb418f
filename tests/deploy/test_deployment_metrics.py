"""gateway/deployment_metrics.py: the router's per-deployment state as series,
published from the event loop, following reloads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from adapters import build_provider
from gateway.deployment_metrics import DeploymentMetrics, published
from gateway.live import LiveRouter
from router.errors import RouterError
from router.router import Router
from router.types import Message, Request
from tests.conftest import make_config


def models(*deployments: dict[str, Any]) -> dict[str, Any]:
    return {"chat": {"deployments": list(deployments)}}


GOOD = {"name": "good", "provider": "mock", "model": "echo"}
BAD = {"name": "bad", "provider": "mock", "model": "error"}


def value(metric: str, deployment: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(
        metric, {"model": "chat", "deployment": deployment, "provider": "mock", **labels}
    )


@pytest.fixture
async def live() -> Any:
    # consecutive_failures 2: the failing deployment's breaker opens after two calls.
    config = make_config(
        models(GOOD, BAD),
        {"breaker": {"consecutive_failures": 2, "cooldown_s": 600}, "retry": {"retries": 0}},
    )
    live = LiveRouter(Router(config, build_provider), None)
    yield live
    await live.router.aclose()


async def call(live: LiveRouter, deployment: str) -> None:
    request = Request("chat", (Message("user", "hi"),), deployment=deployment)
    try:
        await live.router.generate(request)
    except RouterError:
        pass


async def test_calls_failures_health_and_breaker_state_per_deployment(live: LiveRouter) -> None:
    metrics = DeploymentMetrics(live)
    try:
        for _ in range(3):
            await call(live, "good")
        for _ in range(2):
            await call(live, "bad")
        metrics.publish()
        assert value("infergate_deployment_calls_total", "good") == 3
        assert value("infergate_deployment_failures_total", "good") == 0
        assert value("infergate_deployment_calls_total", "bad") == 2
        assert value("infergate_deployment_failures_total", "bad") == 2
        assert value("infergate_deployment_healthy", "good") == 1
        assert value("infergate_deployment_healthy", "bad") == 0
        assert value("infergate_deployment_breaker_state", "bad", state="open") == 1
        assert value("infergate_deployment_breaker_state", "bad", state="closed") == 0
        assert value("infergate_deployment_breaker_state", "good", state="closed") == 1
        assert value("infergate_deployment_error_ratio", "bad") == 1.0
        assert value("infergate_deployment_in_flight", "good") == 0

        await call(live, "good")
        metrics.publish()
        metrics.publish()  # a second publish adds only what happened since the first
        assert value("infergate_deployment_calls_total", "good") == 4
    finally:
        metrics.clear()
    assert value("infergate_deployment_calls_total", "good") is None


async def test_a_reload_that_drops_a_deployment_drops_its_series(live: LiveRouter) -> None:
    metrics = DeploymentMetrics(live)
    try:
        metrics.publish()
        assert value("infergate_deployment_healthy", "bad") is not None
        old = live.router
        live.swap(Router(make_config(models(GOOD)), build_provider, previous=old), None)
        await old.aclose()
        metrics.publish()
        assert value("infergate_deployment_healthy", "bad") is None
        assert value("infergate_deployment_breaker_state", "bad", state="closed") is None
        assert value("infergate_deployment_healthy", "good") == 1
    finally:
        metrics.clear()


async def test_published_refreshes_in_the_background_until_exit(live: LiveRouter) -> None:
    async with published(live, interval_s=0.01):
        await call(live, "good")
        for _ in range(100):
            if value("infergate_deployment_calls_total", "good") == 1:
                break
            await asyncio.sleep(0.01)
        assert value("infergate_deployment_calls_total", "good") == 1
    assert value("infergate_deployment_calls_total", "good") is None
