"""Request validation: each rule refuses what it should, naming the field, and
lets through what it should."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from router.errors import InvalidRequest
from router.types import ContentPart, Message, Params, Request, ResponseFormat, Tool, ToolCall
from router.validate import MAX_TOKENS_LIMIT, validate

HI = Message("user", "hi")


def request(*messages: Message, **params: Any) -> Request:
    return Request(model="m", messages=messages or (HI,), params=Params(**params))


@pytest.mark.parametrize(
    ("bad", "field", "why"),
    [
        (Request(model="", messages=(HI,)), "model", "is required"),
        (Request(model="m", messages=()), "messages", "must not be empty"),
        (request(Message("robot", "hi")), "messages[0].role", "must be one of"),
        (request(HI, Message("user", "")), "messages[1].content", "must not be empty"),
        (request(Message("user", parts=(ContentPart(),))), "messages[0].parts[0]", "needs text"),
        (request(Message("tool", "42")), "messages[0].tool_call_id", "is required for role"),
        (request(temperature=2.5), "params.temperature", "must be in [0, 2], got 2.5"),
        (request(temperature=float("nan")), "params.temperature", "got nan"),
        (request(top_p=-0.1), "params.top_p", "must be in [0, 1]"),
        (request(max_tokens=0), "params.max_tokens", "got 0"),
        (request(max_tokens=MAX_TOKENS_LIMIT + 1), "params.max_tokens", "must be in [1, "),
        (request(stop=("end", "")), "params.stop[1]", "must not be empty"),
        (
            request(response_format=ResponseFormat("yaml")),
            "params.response_format.type",
            "got 'yaml'",
        ),
        (
            request(response_format=ResponseFormat("json_schema")),
            "params.response_format.json_schema",
            "is required for json_schema",
        ),
        (request(tools=(Tool("has space"),)), "params.tools[0].name", "must match"),
        (request(tools=(Tool("x" * 65),)), "params.tools[0].name", "must match"),
        (request(tools=(Tool("f"), Tool("f"))), "params.tools[1].name", "'f' is repeated"),
        (request(tools=(Tool("f"),), tool_choice="g"), "params.tool_choice", "got 'g'"),
        (request(tool_choice="always"), "params.tool_choice", "got 'always'"),
    ],
)
def test_each_rule_names_its_field(bad: Request, field: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate(bad)
    assert refused.value.field == field
    assert why in str(refused.value)


@pytest.mark.parametrize(
    "good",
    [
        request(Message("user", parts=(ContentPart(image_url="http://x/y.png"),))),
        request(Message("assistant", tool_calls=(ToolCall("c1", "f", "{}"),))),
        request(Message("tool", "42", tool_call_id="c1")),
        request(temperature=0.0, top_p=1.0, max_tokens=MAX_TOKENS_LIMIT),
        request(response_format=ResponseFormat("json_schema", "s", {"type": "object"})),
        request(response_format=ResponseFormat("json_object")),
        request(tools=(Tool("get_weather-2"),), tool_choice="get_weather-2"),
        request(tools=(Tool("f"),), tool_choice="required"),
        request(tool_choice="none"),
    ],
)
def test_what_the_rules_allow_passes(good: Request) -> None:
    validate(good)
    validate(replace(good, model="other"))


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Request(model="", messages=(HI,)), "model: is required"),
        (request(HI, Message("user", "")), "messages[1].content: must not be empty"),
        (
            request(Message("user", parts=(ContentPart(),))),
            "messages[0].parts[0]: needs text or image_url",
        ),
        (request(Message("tool", "42")), "messages[0].tool_call_id: is required for role 'tool'"),
        (request(stop=("end", "")), "params.stop[1]: must not be empty"),
        (
            request(response_format=ResponseFormat("json_schema")),
            "params.response_format.json_schema: is required for json_schema",
        ),
    ],
)
def test_the_client_reads_the_whole_reason(bad: Request, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate(bad)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.0},
        {"temperature": 2.0},
        {"top_p": 0.0},
        {"top_p": 0.5},
        {"top_p": 1.0},
        {"max_tokens": 1},
        {"max_tokens": MAX_TOKENS_LIMIT},
    ],
)
def test_the_ends_of_each_range_are_allowed(params: dict[str, Any]) -> None:
    validate(request(**params))
