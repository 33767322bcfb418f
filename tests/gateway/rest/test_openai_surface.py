"""The OpenAI surface's features beyond plain text, end to end: the official
SDK -> the gateway's /v1/chat/completions -> the openai adapter -> the local
OpenAI fake. Tools and tool calls (whole and streamed), image parts,
response_format, and a failure before the first streamed chunk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes.openai_server import OpenAIFake

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = ("call_1", "get_weather", '{"city": "Paris"}')
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def client(
    openai_fake: OpenAIFake, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[openai.AsyncOpenAI]:
    monkeypatch.setenv("INFERGATE_TEST_OPENAI_KEY", "sk-e2e")
    options = {"base_url": openai_fake.base_url, "api_key_env": "INFERGATE_TEST_OPENAI_KEY"}
    models = {
        "gpt": {"deployments": [{"name": "oa", "provider": "openai", "model": "gpt-fake",
                                 "options": options}]},
    }  # fmt: skip
    gateway = await start_gateway(models, top={"retry": {"retries": 0}, "rest": {"port": 0}})
    base = f"http://127.0.0.1:{gateway.http_port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="sk-gw", max_retries=0) as client:
        yield client


async def test_tools_go_up_and_a_tool_call_comes_back(
    client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.tool_call, openai_fake.script.finish = CALL, "tool_calls"
    reply = await client.chat.completions.create(
        model="gpt",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="auto",  # type: ignore[arg-type, list-item]
    )
    sent = openai_fake.observed.requests[-1]
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == CALL  # type: ignore[union-attr]


async def test_a_streamed_tool_call_arrives_in_deltas_that_add_up(
    client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.tool_call, openai_fake.script.finish = CALL, "tool_calls"
    stream = await client.chat.completions.create(
        model="gpt",
        messages=ASK,
        tools=[WEATHER],
        stream=True,  # type: ignore[arg-type, list-item]
    )
    ids, names, arguments, finish = set(), set(), "", None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                if call.id:
                    ids.add(call.id)
                if call.function is not None:
                    names |= {call.function.name} if call.function.name else set()
                    arguments += call.function.arguments or ""
    assert (ids, names, json.loads(arguments), finish) == (
        {"call_1"},
        {"get_weather"},
        {"city": "Paris"},
        "tool_calls",
    )


async def test_image_parts_and_a_tool_result_reach_the_upstream_as_sent(
    client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]  # fmt: skip
    reply = await client.chat.completions.create(model="gpt", messages=messages)
    assert reply.choices[0].message.content == "Hello from the fake"
    sent = openai_fake.observed.requests[-1]["messages"]
    assert sent[0]["content"] == [{"type": "text", "text": "What is this?"}, image]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert (sent[2]["role"], sent[2]["tool_call_id"], sent[2]["content"]) == (
        "tool",
        "call_1",
        "sunny",
    )


async def test_response_format_json_schema_is_forwarded(
    client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    await client.chat.completions.create(
        model="gpt", messages=ASK,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )  # fmt: skip
    sent = openai_fake.observed.requests[-1]["response_format"]
    assert sent["type"] == "json_schema"
    assert (sent["json_schema"]["name"], sent["json_schema"]["schema"]) == ("a", schema)


async def test_a_failure_before_the_first_chunk_is_an_http_error_not_a_stream(
    client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.status = 500
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="gpt", messages=ASK, stream=True)  # type: ignore[arg-type]
    assert failed.value.status_code == 503
    assert "oa" in str(failed.value)  # the attempt's error names the deployment
