"""Golden files: the dry-run conversion of one rich request (system prompt,
multi-part content, a tool call and its result, tools, a JSON schema, stop
sequences, sampling) into each vendor's exact body.

Regenerate after an intended change with INFERGATE_UPDATE_GOLDEN=1 and
review the diff of tests/golden/.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.anthropic import AnthropicProvider
from adapters.openai import OpenAIProvider
from adapters.triton import TritonProvider
from router.provider import Provider
from router.types import (
    ContentPart,
    Message,
    Params,
    Request,
    ResponseFormat,
    Tool,
    ToolCall,
)

GOLDEN = Path(__file__).parent / "golden"
FORECAST = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "high_c": {"type": "number"}},
    "required": ["city", "high_c"],
}
RICH = Request(
    model="chat",
    messages=(
        Message("system", "You are a terse forecaster."),
        Message(
            "user",
            parts=(
                ContentPart(text="What will the weather be here?"),
                ContentPart(image_url="data:image/png;base64,iVBORw0KGgo="),
            ),
        ),
        Message("assistant", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        Message("tool", '{"high_c": 3}', tool_call_id="call_1"),
        Message("user", "Answer as JSON."),
    ),
    params=Params(
        temperature=1.4,
        top_p=0.9,
        max_tokens=256,
        stop=("END", "\n\n"),
        response_format=ResponseFormat("json_schema", "forecast", FORECAST),
        tools=(
            Tool(
                "get_weather",
                "Current weather for a city",
                {"type": "object", "properties": {"city": {"type": "string"}}},
            ),
        ),
        tool_choice="auto",
        seed=7,
    ),
)
# Triton's LLM models take a prompt: no tools, schema or images (refused, see
# test_adapters_conversion); the rest of the rich request.
RICH_TEXT = replace(
    RICH,
    messages=(RICH.messages[0], Message("user", "What will the weather be in Oslo?")),
    params=replace(RICH.params, tools=(), tool_choice="", response_format=None),
)


def providers() -> list[tuple[str, Any, Request]]:
    return [
        (
            "openai",
            lambda: OpenAIProvider(
                "gpt-4o-mini",
                {"base_url": "http://127.0.0.1:9/v1", "params": {"frequency_penalty": 0.1}},
            ),
            RICH,
        ),
        (
            "anthropic",
            lambda: AnthropicProvider(
                "claude-sonnet-4-5", {"base_url": "http://127.0.0.1:9", "params": {"top_k": 40}}
            ),
            RICH,
        ),
        ("triton", lambda: TritonProvider("vllm_model", {"url": "127.0.0.1:9"}), RICH_TEXT),
    ]


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-golden")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-golden")


@pytest.mark.parametrize(("name", "build", "request_"), providers(), ids=lambda v: str(v))
async def test_dry_run_body_matches_the_golden_file(
    name: str, build: Any, request_: Request
) -> None:
    provider: Provider = build()
    try:
        body = provider.upstream_request(request_)
    finally:
        await provider.aclose()
    path = GOLDEN / f"{name}.json"
    if os.environ.get("INFERGATE_UPDATE_GOLDEN"):
        path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    assert body == json.loads(path.read_text())
    json.dumps(body)  # a body must be plain JSON, as it goes on the wire
