"""The WebSocket with auth on, as a browser uses it: its WebSocket API sends
no headers of the page's choosing, only subprotocols, so the key travels as the
subprotocol `bearer.<key>` beside `infergate.v1` (never in the URL)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from websockets.asyncio.client import connect

from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import new_key, secure_top

HELLO = {"model": "chat", "messages": [{"role": "user", "content": "red green blue"}]}


async def first_answer(url: str, subprotocols: list[str]) -> tuple[str | None, dict[str, object]]:
    """The accepted subprotocol and the first message back, connecting as a
    browser does: no Authorization header, no extra headers."""
    async with connect(url, subprotocols=subprotocols) as socket:  # type: ignore[arg-type]
        await socket.send(json.dumps(HELLO))
        return socket.subprotocol, json.loads(await socket.recv())


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
async def test_a_browser_authenticates_with_a_bearer_subprotocol(
    start_gateway: StartGateway, tmp_path: Path, server: str
) -> None:
    gateway = await start_gateway(
        top={**secure_top(tmp_path), "rest": {"port": 0, "server": server}}
    )
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        key = await new_key(channel, gateway, "acme", "user")
    url = f"ws://127.0.0.1:{gateway.http_port}/v1/ws/generate"

    protocol, answer = await first_answer(url, ["infergate.v1", f"bearer.{key}"])
    assert protocol == "infergate.v1"  # the key is not echoed back
    assert "result" in answer, answer

    protocol, answer = await first_answer(url, [f"bearer.{key}"])  # offered alone: echoed
    assert protocol == f"bearer.{key}" and "result" in answer, answer

    for offered in (["infergate.v1"], ["infergate.v1", "bearer.not-a-key"]):
        _, answer = await first_answer(url, offered)
        error = answer["error"]
        assert isinstance(error, dict) and error["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
