"""A small GraphQL client for the tests: queries over HTTP, subscriptions over
a real WebSocket speaking graphql-transport-ws."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import connect

Json = dict[str, Any]


def codes(reply: Json) -> list[str]:
    """The extensions.code of each error of a reply."""
    return [e.get("extensions", {}).get("code") for e in reply.get("errors") or ()]


async def query(
    port: int, document: str, variables: Json | None = None, key: str | None = None
) -> Json:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.post(
            "/graphql", json={"query": document, "variables": variables or {}}, headers=headers
        )
    assert response.status_code == 200, response.text
    reply: Json = response.json()
    return reply


async def subscribe(
    port: int, document: str, variables: Json | None = None, key: str | None = None
) -> list[Json]:
    """Every message of one subscription after the handshake, up to and with
    its `complete` or `error`. The key travels in connection_init's payload,
    as a browser sends it."""
    url = f"ws://127.0.0.1:{port}/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == "graphql-transport-ws"
        init: Json = {"type": "connection_init"}
        if key:
            init["payload"] = {"authorization": f"Bearer {key}"}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        payload = {"query": document, "variables": variables or {}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        messages: list[Json] = []
        while True:
            message = json.loads(await socket.recv())
            if message["type"] in ("ping", "pong"):
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages
