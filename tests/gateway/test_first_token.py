"""The first token is forwarded as soon as it arrives, and the response
headers before it, on every surface.

The fake upstream sends its first token, then holds the rest until the test
has seen that token reach its own client: a gateway that waited for more
(buffering, batching, a write held back for the second chunk) deadlocks here
and the test fails, whatever the machine's speed. Likewise it holds its first
token until the gateway's response headers have reached the client: the
headers leave when the upstream has answered, not with the first token. No
timing is asserted; the time to first token itself is measured by
bench/latency.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx2 as httpx
import pytest

from gateway.pb import router_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway, chat
from tests.fakes.openai_server import OpenAIFake

TOKENS = [" one", " two", " three"]
WAIT_S = 10  # far above any machine's first token: only a deadlock reaches it


@pytest.fixture
async def gateway(
    openai_fake: OpenAIFake, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("INFERGATE_TEST_OPENAI_KEY", "sk-e2e")
    options = {"base_url": openai_fake.base_url, "api_key_env": "INFERGATE_TEST_OPENAI_KEY"}
    models = {
        "gpt": {"deployments": [{"name": "oa", "provider": "openai", "model": "gpt-fake",
                                 "options": options}]},
    }  # fmt: skip
    openai_fake.script.tokens = TOKENS
    openai_fake.script.hold_after_first = asyncio.Event()
    yield await start_gateway(models, top={"retry": {"retries": 0}, "rest": {"port": 0}})


async def _first_then_rest(
    chunks: AsyncIterator[str], release: asyncio.Event, surface: str
) -> list[str]:
    """Every text chunk; fails if the first one does not come while the
    upstream holds the second back."""
    seen: list[str] = []

    async def first() -> None:
        async for text in chunks:
            if text:
                seen.append(text)
                return

    try:
        await asyncio.wait_for(first(), WAIT_S)
    except TimeoutError:
        pytest.fail(f"{surface}: the first token was held back until the upstream sent more")
    release.set()
    seen += [text async for text in chunks if text]
    return seen


async def test_the_openai_route_forwards_the_first_token_alone(
    gateway: Gateway, openai_fake: OpenAIFake
) -> None:
    hold = openai_fake.script.hold_after_first
    assert hold is not None
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions"

    async def deltas(reply: httpx.Response) -> AsyncIterator[str]:
        import json

        async for line in reply.aiter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    yield choice["delta"].get("content") or ""

    async with httpx.AsyncClient() as http, http.stream("POST", url, json=body) as reply:
        assert reply.status_code == 200
        assert await _first_then_rest(deltas(reply), hold, "REST") == TOKENS


async def test_generate_stream_forwards_the_first_token_alone(
    gateway: Gateway, openai_fake: OpenAIFake
) -> None:
    hold = openai_fake.script.hold_after_first
    assert hold is not None
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call: Any = router_pb2_grpc.RouterStub(channel).GenerateStream(chat("gpt"), timeout=30)

        async def deltas() -> AsyncIterator[str]:
            async for chunk in call:
                yield chunk.delta

        assert await _first_then_rest(deltas(), hold, "gRPC") == TOKENS


async def test_the_headers_leave_before_the_first_token(
    gateway: Gateway, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.hold_after_first = None
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions"
    for surface in ("REST", "gRPC"):
        held = openai_fake.script.hold_before_first = asyncio.Event()
        if surface == "REST":
            async with httpx.AsyncClient() as http:
                try:
                    async with asyncio.timeout(WAIT_S):
                        reply = await http.send(
                            http.build_request("POST", url, json=body), stream=True
                        )
                except TimeoutError:
                    pytest.fail("REST: the response headers waited for the first token")
                held.set()
                text = (await reply.aread()).decode()
                await reply.aclose()
            assert reply.status_code == 200 and text.count('"content":" ') == len(TOKENS)
        else:
            async with grpc.aio.insecure_channel(gateway.address) as channel:
                call: Any = router_pb2_grpc.RouterStub(channel).GenerateStream(
                    chat("gpt"), timeout=30
                )
                try:
                    await asyncio.wait_for(call.initial_metadata(), WAIT_S)
                except TimeoutError:
                    pytest.fail("gRPC: the response headers waited for the first token")
                held.set()
                assert "".join([c.delta async for c in call]) == "".join(TOKENS)


async def test_a_failure_after_the_headers_falls_back_or_ends_in_band(
    openai_fake: OpenAIFake, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream answers (the headers leave), then drops the connection
    before its first token: the attempt is retried on the fallback model as
    before, and the client sees one clean 200 stream; with nowhere left to go
    the failure is the stream's last event, since its status is sent."""
    monkeypatch.setenv("INFERGATE_TEST_OPENAI_KEY", "sk-e2e")
    options = {"base_url": openai_fake.base_url, "api_key_env": "INFERGATE_TEST_OPENAI_KEY"}
    models = {
        "gpt": {"deployments": [{"name": "oa", "provider": "openai", "model": "gpt-fake",
                                 "options": options}], "fallbacks": ["backup"]},
        "lone": {"deployments": [{"name": "oa2", "provider": "openai", "model": "gpt-fake",
                                  "options": options}]},
        "backup": {"deployments": [{"name": "mock-b", "provider": "mock",
                                    "model": "echo?tokens=3"}]},
    }  # fmt: skip
    gateway = await start_gateway(models, top={"retry": {"retries": 0}, "rest": {"port": 0}})
    openai_fake.script.cut_after = 0  # the role chunk, then the connection drops
    url = f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions"
    ask = [{"role": "user", "content": "one two three"}]
    async with httpx.AsyncClient() as http:
        saved = await http.post(url, json={"model": "gpt", "messages": ask, "stream": True})
        lost = await http.post(url, json={"model": "lone", "messages": ask, "stream": True})
    assert saved.status_code == 200
    assert "error" not in saved.text and saved.text.rstrip().endswith("data: [DONE]")
    assert '"content":"one' in saved.text.replace(" ", "")  # the mock echoed the prompt
    assert lost.status_code == 200  # sent with the headers, before the failure
    last = [line for line in lost.text.splitlines() if line.startswith("data: ")][-1]
    assert '"error"' in last and "oa2" in last
