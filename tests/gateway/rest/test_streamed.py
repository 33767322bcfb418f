"""The streamed response (gateway/rest/responses.py): the body goes out chunk
by chunk; a client that goes away cancels the body (its `finally` runs, so
the call and the upstream close) and the response ends without an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.rest.responses import Streamed


class Client:
    """An ASGI peer: what was sent, and a disconnect it can announce."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.first = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message.get("body"):
            self.first.set()


async def test_every_chunk_goes_out_then_the_end() -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    client = Client()
    await Streamed(body(), 201, {"x-a": "1"}, "text/event-stream")({}, client.receive, client.send)
    start, *bodies = client.sent
    assert start["type"] == "http.response.start" and start["status"] == 201
    assert (b"x-a", b"1") in start["headers"]
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert not any(name == b"content-length" for name, _ in start["headers"])
    assert [(m["body"], m["more_body"]) for m in bodies] == [
        (b"a", True), (b"b", True), (b"c", True), (b"", False),
    ]  # fmt: skip


async def test_a_client_that_goes_away_cancels_the_body_quietly() -> None:
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.sleep(30)  # the upstream's next token, never to come
            yield b"never"
        finally:
            closed.set()

    client = Client()
    response = asyncio.create_task(
        Streamed(body(), media_type="text/event-stream")({}, client.receive, client.send)
    )
    await client.first.wait()
    client.gone.set()
    await asyncio.wait_for(response, 2)  # ends, and without an exception
    assert closed.is_set()
    assert [m.get("body") for m in client.sent[1:]] == [b"first"]
    assert not response.cancelled() and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_disconnect_after_a_whole_response_cancels_nothing() -> None:
    """uvicorn's receive() says http.disconnect once the response is complete too."""

    class Eager(Client):
        async def send(self, message: dict[str, Any]) -> None:
            await super().send(message)
            if message.get("more_body") is False:
                self.gone.set()
                await asyncio.sleep(0)  # let the watcher see it

    async def body() -> AsyncIterator[bytes]:
        yield b"only"

    client = Eager()
    await Streamed(body())({}, client.receive, client.send)
    await asyncio.sleep(0.01)  # a late cancel would land in this sleep
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
