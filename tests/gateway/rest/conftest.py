"""A gateway on its own event loop in a thread, for tests that call it
synchronously (schemathesis, hypothesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.server import Gateway
from tests.conftest import make_config

# Only fast, healthy models: every 5xx would then be the shim's fault.
MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8"}]},
    "embed": {"deployments": [{"name": "embed-a", "provider": "mock", "model": "echo"}]},
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A gateway on its own event loop in a thread: schemathesis calls synchronously."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Gateway] = {}

    async def start() -> None:
        holder["gateway"] = await Gateway.start(make_config(MODELS))
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    gateway = holder["gateway"]
    try:
        yield f"http://127.0.0.1:{gateway.http_port}"
    finally:

        async def stop() -> None:
            await gateway.server.stop(None)
            await gateway.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
