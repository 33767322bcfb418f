"""The OpenAI- and Anthropic-compatible routes, driven by the official SDKs
pointed at the shim (only the base URL changes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import httpx2 as httpx
import openai
import pytest

from gateway.server import Gateway

USER = [{"role": "user", "content": "red green blue"}]
ANSWER = "red green blue red green blue red green"


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    base = f"http://127.0.0.1:{gateway.http_port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
async def claude(gateway: Gateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0) as client:
        yield client


async def test_chat_completion(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 8)


async def test_chat_completion_parameters(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "system", "content": "be brief"}, *USER],  # type: ignore[list-item]
        max_tokens=2,
        temperature=0,
        stop=["never"],
    )
    assert reply.choices[0].message.content == "red green"
    assert reply.choices[0].finish_reason == "length"


async def test_streamed_chat_completion_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="chat",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8


async def test_sse_wire_format_ends_with_done(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        reply = await http.post(
            "/v1/chat/completions", json={"model": "chat", "messages": USER, "stream": True}
        )
    events = reply.text.split("\n\n")
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert events[-2:] == ["data: [DONE]", ""]
    last = json.loads(events[-3].removeprefix("data: "))
    assert last["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop",
    }  # fmt: skip
    assert "usage" not in last  # only with stream_options.include_usage


async def test_stream_failing_midway_raises_in_the_sdk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="cut",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError, match="fail_after_tokens"):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 4  # the role chunk and three tokens, then the error


async def test_errors_have_openais_shape(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    assert "not configured" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="chat", messages=USER, temperature=3)  # type: ignore[arg-type]
    assert bad.value.body is not None and "temperature" in str(bad.value.body)
    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model="chat", messages=[])


async def test_embeddings_float_and_base64(client: openai.AsyncOpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    packed = await client.embeddings.create(model="embed", input=["one", "two"])
    plain = await client.embeddings.create(
        model="embed", input=["one", "two"], encoding_format="float"
    )
    assert [e.index for e in packed.data] == [0, 1]
    assert len(packed.data[0].embedding) == 8
    for a, b in zip(packed.data, plain.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)
    assert packed.usage.prompt_tokens > 0


async def test_models(client: openai.AsyncOpenAI) -> None:
    names = [m.id async for m in client.models.list()]
    assert {"chat", "embed", "slow"} <= set(names)


async def test_anthropic_message(claude: anthropic.AsyncAnthropic) -> None:
    reply = await claude.messages.create(
        model="chat",
        max_tokens=64,
        system="be brief",
        messages=USER,  # type: ignore[arg-type]
    )
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.content[0].type == "text" and reply.content[0].text == ANSWER
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (5, 8)  # with the system


async def test_anthropic_stream(claude: anthropic.AsyncAnthropic) -> None:
    kinds = []
    async with claude.messages.stream(
        model="chat",
        max_tokens=3,
        messages=USER,  # type: ignore[arg-type]
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert final.content[0].text == "red green blue"  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3


async def test_anthropic_errors(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        await claude.messages.create(model="nope", max_tokens=8, messages=USER)  # type: ignore[arg-type]
    stream = await claude.messages.create(
        model="cut",
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        stream=True,
    )
    with pytest.raises(anthropic.APIStatusError, match="fail_after_tokens"):
        async for _ in stream:
            pass
