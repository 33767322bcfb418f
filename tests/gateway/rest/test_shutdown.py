"""SIGTERM's path over REST: streams still running when the grace period ends
get their surface's error event and a clean end of body, as gRPC streams get
UNAVAILABLE, and nothing is logged as an error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import httpx2 as httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import StartGateway

SLOW = {  # 100 tokens at 10/s: still streaming when the 1 s grace period ends
    "slow": {
        "deployments": [
            {"name": "s", "provider": "mock", "model": "echo?tokens=100&tokens_per_second=10"}
        ]
    }
}
ASK = [{"role": "user", "content": "red green blue"}]
UNAVAILABLE = 14
# Surface -> (path, body, headers)
STREAMS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "ndjson": ("/v1/generate:stream", {"model": "slow", "messages": ASK}, {}),
    "sse": (
        "/v1/generate:stream",
        {"model": "slow", "messages": ASK},
        {"accept": "text/event-stream"},
    ),
    "openai": ("/v1/chat/completions", {"model": "slow", "messages": ASK, "stream": True}, {}),
    "anthropic": (
        "/v1/messages",
        {"model": "slow", "messages": ASK, "stream": True, "max_tokens": 1000},
        {},
    ),
}


async def read_all(
    client: httpx.AsyncClient, surface: str, first_bytes: asyncio.Event
) -> tuple[int, str]:
    path, body, headers = STREAMS[surface]
    chunks: list[str] = []
    async with client.stream("POST", path, json=body, headers=headers) as reply:
        async for chunk in reply.aiter_text():
            chunks.append(chunk)
            first_bytes.set()
    return reply.status_code, "".join(chunks)


def ends_with_the_error_event(surface: str, text: str) -> bool:
    frames = [f for f in text.strip().split("\n\n" if surface != "ndjson" else "\n") if f]
    last = frames[-1]
    if surface == "ndjson":
        return bool(json.loads(last)["error"]["code"] == UNAVAILABLE)
    if surface == "sse":
        kind, data = last.split("\n")
        return kind == "event: error" and json.loads(data[len("data: ") :])["code"] == UNAVAILABLE
    if surface == "openai":
        error = json.loads(last[len("data: ") :])["error"]
        return "[DONE]" not in text and error["message"] == "the server is shutting down"
    kind, data = last.split("\n")
    error = json.loads(data[len("data: ") :])
    return kind == "event: error" and error["error"]["message"] == "the server is shutting down"


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
async def test_streams_past_the_grace_period_end_with_their_error_event(
    start_gateway: StartGateway, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(
        models=SLOW, top={"rest": {"port": 0, "server": server}}, grace_period_s=1
    )
    started = {surface: asyncio.Event() for surface in STREAMS}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        reads = {s: asyncio.create_task(read_all(client, s, started[s])) for s in STREAMS}
        async with asyncio.timeout(10):
            for event in started.values():
                await event.wait()  # every stream is under way
        with caplog.at_level(logging.WARNING):
            began = time.monotonic()
            await gateway.shutdown()
            took = time.monotonic() - began
            answers = {s: await asyncio.wait_for(t, 10) for s, t in reads.items()}
    for surface, (status, text) in answers.items():
        assert status == 200, (surface, text[-300:])
        assert ends_with_the_error_event(surface, text), (surface, text[-300:])
    assert took < 4  # the 1 s grace period, then the error events, not a 10 s stream
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_a_websocket_in_flight_is_closed_service_restart(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn closes every WebSocket with 1012 ("service restart") when the
    drain ends (its behaviour, not the gateway's); this guards that the call in
    flight then ends without a traceback."""
    gateway = await start_gateway(
        models=SLOW, top={"rest": {"port": 0, "server": "uvicorn"}}, grace_period_s=1
    )
    url = f"ws://127.0.0.1:{gateway.http_port}/v1/ws/generate"
    messages: list[dict[str, Any]] = []
    async with connect(url) as socket:
        await socket.send(json.dumps({"model": "slow", "messages": ASK}))
        messages.append(json.loads(await socket.recv()))
        with caplog.at_level(logging.WARNING):
            stopping = asyncio.create_task(gateway.shutdown())
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(10):
                    async for raw in socket:
                        messages.append(json.loads(raw))
            await stopping
        close = socket.close_code, socket.close_reason
    assert "result" in messages[0]
    assert close[0] == 1012, close
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_a_unary_call_past_the_grace_period_is_a_503(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    waits = {"waits": {"deployments": [
        {"name": "w", "provider": "mock", "model": "echo?latency_ms=10000"}]}}  # fmt: skip
    gateway = await start_gateway(models=waits, top={"rest": {"port": 0}}, grace_period_s=1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        call = asyncio.create_task(
            client.post("/v1/generate", json={"model": "waits", "messages": ASK}, timeout=10)
        )
        await asyncio.sleep(0.3)  # the call is waiting on its upstream
        with caplog.at_level(logging.WARNING):
            await gateway.shutdown()
            reply = await call
    assert reply.status_code == 503
    assert reply.json()["message"] == "the server is shutting down"
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]
