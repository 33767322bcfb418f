"""Vendor-specific conversion rules and error translation beyond the shared
contract: Anthropic's system/tool/temperature/response_format rules, API keys,
Retry-After forms, option validation and what Triton refuses."""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters import _http, build_provider
from adapters.anthropic import FORMAT_TOOL, AnthropicProvider
from adapters.openai import OpenAIProvider
from adapters.triton import TritonProvider
from router.config import ConfigError, DeploymentConfig, parse_config
from router.errors import ErrorKind, ProviderError
from router.router import Router
from router.types import Message, Params, Request, ResponseFormat, Tool, ToolCall, Usage
from tests.fakes.anthropic_server import AnthropicFake
from tests.fakes.http import HttpRequest, HttpServer, Reply
from tests.fakes.openai_server import OpenAIFake
from tests.fakes.script import Observed
from tests.fakes.triton_server import TritonFake, sampling

KEY = "sk-test-secret-value"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[AnthropicFake]:
    fake = AnthropicFake()
    await fake.server.start()
    yield fake
    await fake.server.close()


@pytest.fixture
async def claude(anthropic_fake: AnthropicFake) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider("claude-fake", {"base_url": anthropic_fake.base_url})
    yield provider
    await provider.aclose()


def chat(*messages: Message, **params: object) -> Request:
    return Request("alias", messages, Params(**params))  # type: ignore[arg-type]


# -- Anthropic ----------------------------------------------------------------------------


async def test_anthropic_system_messages_go_top_level_and_tool_results_share_a_turn(
    claude: AnthropicProvider,
) -> None:
    calls = (ToolCall("a", "f", "{}"), ToolCall("b", "f", '{"x": 1}'))
    body = claude.upstream_request(
        chat(
            Message("system", "one"),
            Message("user", "hi"),
            Message("system", "two"),
            Message("assistant", "calling", tool_calls=calls),
            Message("tool", "ra", tool_call_id="a"),
            Message("tool", "rb", tool_call_id="b"),
        )
    )
    assert body["system"] == "one\n\ntwo"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "a", "name": "f", "input": {}},
        {"type": "tool_use", "id": "b", "name": "f", "input": {"x": 1}},
    ]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["a", "b"]


async def test_anthropic_max_tokens_defaults_from_the_deployment(
    anthropic_fake: AnthropicFake,
) -> None:
    provider = AnthropicProvider(
        "claude-fake", {"base_url": anthropic_fake.base_url, "max_tokens": 333}
    )
    try:
        assert provider.upstream_request(chat(Message("user", "hi")))["max_tokens"] == 333
        given = provider.upstream_request(chat(Message("user", "hi"), max_tokens=5))
        assert given["max_tokens"] == 5
    finally:
        await provider.aclose()


async def test_anthropic_temperature_above_one_is_clamped(claude: AnthropicProvider) -> None:
    for given, sent in [(1.7, 1.0), (1.0, 1.0), (0.3, 0.3), (0.0, 0.0)]:
        body = claude.upstream_request(chat(Message("user", "x"), temperature=given))
        assert body["temperature"] == sent


async def test_anthropic_tool_choice_forms(claude: AnthropicProvider) -> None:
    tools = (Tool("f", "", None),)
    for choice, wire in [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("f", {"type": "tool", "name": "f"}),
    ]:
        body = claude.upstream_request(chat(Message("user", "x"), tools=tools, tool_choice=choice))
        assert body["tool_choice"] == wire
        assert body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


async def test_anthropic_json_schema_answer_comes_back_as_text(
    claude: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.script.tokens = []
    anthropic_fake.script.finish = "tool_calls"
    anthropic_fake.script.tool_call = ("toolu_1", FORMAT_TOOL, '{"city": "Oslo"}')
    request = chat(
        Message("user", "where?"),
        response_format=ResponseFormat("json_schema", "place", SCHEMA),
    )
    response = await claude.generate(request, None)
    assert json.loads(response.text) == {"city": "Oslo"}
    assert (response.finish_reason, response.tool_calls) == ("stop", ())
    assert anthropic_fake.observed.requests[-1]["tool_choice"] == {
        "type": "tool",
        "name": FORMAT_TOOL,
    }
    chunks = [c async for c in claude.stream(request, None)]
    assert json.loads("".join(c.delta for c in chunks)) == {"city": "Oslo"}  # streamed as text
    assert (chunks[-1].finish_reason, chunks[-1].tool_calls) == ("stop", ())


async def test_anthropic_tool_call_arguments_must_be_json(claude: AnthropicProvider) -> None:
    bad = Message("assistant", tool_calls=(ToolCall("a", "f", "{not json"),))
    with pytest.raises(ProviderError) as caught:
        claude.upstream_request(chat(Message("user", "x"), bad))
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "messages[1].tool_calls[0].arguments" in str(caught.value)


async def test_anthropic_sends_the_key_header_and_never_echoes_the_key(
    claude: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    await claude.generate(chat(Message("user", "x")), None)
    # This SDK generation sends the key as a bearer token (older ones: x-api-key).
    headers = anthropic_fake.observed.headers[-1]
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "")[len("Bearer ") :])
    # Every header the SDK sends on its own requests goes with the lean client's too.
    sdk = claude._client.default_headers
    assert headers["anthropic-version"] == sdk["anthropic-version"]
    assert headers["user-agent"] == sdk["User-Agent"]
    assert headers["content-type"] == "application/json"
    anthropic_fake.script.status = 401
    with pytest.raises(ProviderError) as caught:
        await claude.generate(chat(Message("user", "x")), None)
    assert caught.value.kind is ErrorKind.AUTH
    assert KEY not in str(caught.value)


async def test_anthropic_has_no_embeddings(claude: AnthropicProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await claude.embed(["x"])
    assert caught.value.kind is ErrorKind.BAD_REQUEST


# -- OpenAI -------------------------------------------------------------------------------


@pytest.fixture
async def gpt(openai_fake: OpenAIFake) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider("gpt-fake", {"base_url": openai_fake.base_url})
    yield provider
    await provider.aclose()


async def test_openai_streams_ask_for_usage_and_send_the_bearer_key(
    openai_fake: OpenAIFake, gpt: OpenAIProvider
) -> None:
    chunks = [c async for c in gpt.stream(chat(Message("user", "x")), None)]
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 4
    assert openai_fake.observed.requests[-1]["stream_options"] == {"include_usage": True}
    assert openai_fake.observed.headers[-1]["authorization"] == f"Bearer {KEY}"


async def test_a_refused_key_is_not_echoed_from_the_vendors_message(
    openai_fake: OpenAIFake, gpt: OpenAIProvider
) -> None:
    openai_fake.script.status = 401
    # OpenAI's real 401 names part of the key it was sent.
    openai_fake.script.error_message = "Incorrect API key provided: sk-proj-****abcd."
    with pytest.raises(ProviderError) as caught:
        await gpt.generate(chat(Message("user", "x")), None)
    assert caught.value.kind is ErrorKind.AUTH
    assert "abcd" not in str(caught.value) and "HTTP 401" in str(caught.value)


async def test_openai_errors_carry_the_vendors_message_and_status(
    openai_fake: OpenAIFake, gpt: OpenAIProvider
) -> None:
    openai_fake.script.status = 400
    openai_fake.script.error_message = "max_tokens is too large: 999999"
    with pytest.raises(ProviderError) as unary:
        await gpt.generate(chat(Message("user", "x")), None)
    with pytest.raises(ProviderError) as streamed:
        [c async for c in gpt.stream(chat(Message("user", "x")), None)]
    for caught in (unary, streamed):
        assert caught.value.kind is ErrorKind.BAD_REQUEST
        assert str(caught.value).endswith("HTTP 400: max_tokens is too large: 999999")


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_chat_takes_the_sdks_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    openai_fake: OpenAIFake,
    anthropic_fake: AnthropicFake,
    vendor: str,
) -> None:
    """Chat goes where the SDK's own client would: through HTTP_PROXY (the fake
    is the proxy here and sees the absolute URL of an upstream that does not
    exist, with the URL's credentials as Proxy-Authorization), and direct for
    hosts NO_PROXY names, CIDRs included. The two SDKs keep the proxy in
    different transports (aiohttp's, httpx2's own)."""
    fake: OpenAIFake | AnthropicFake = openai_fake if vendor == "openai" else anthropic_fake
    make, path = (
        (lambda url: OpenAIProvider("gpt-fake", {"base_url": url + "/v1"}), "/v1/chat/completions")
        if vendor == "openai"
        else (lambda url: AnthropicProvider("claude-fake", {"base_url": url}), "/v1/messages")
    )
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake.server.url.replace("http://", "http://user:pw@"))
    proxied = make("http://upstream.invalid")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    direct = make(fake.server.url)
    try:
        response = await proxied.generate(chat(Message("user", "x")), None)
        assert response.text == "Hello from the fake"
        assert fake.observed.paths == [f"POST http://upstream.invalid{path}"]
        assert fake.observed.headers[-1]["proxy-authorization"] == "Basic dXNlcjpwdw=="
        response = await direct.generate(chat(Message("user", "x")), None)
        assert response.text == "Hello from the fake"
        assert fake.observed.paths[-1] == f"POST {path}"
    finally:
        await proxied.aclose()
        await direct.aclose()


async def test_openai_max_tokens_parameter_name_is_configurable() -> None:
    provider = OpenAIProvider(
        "o4", {"base_url": "http://127.0.0.1:9/v1", "max_tokens_param": "max_completion_tokens"}
    )
    try:
        body = provider.upstream_request(chat(Message("user", "x"), max_tokens=9))
        assert body["max_completion_tokens"] == 9 and "max_tokens" not in body
    finally:
        await provider.aclose()


async def test_openai_request_fields_win_over_configured_params() -> None:
    options = {"base_url": "http://127.0.0.1:9/v1", "params": {"temperature": 0.0, "user": "gw"}}
    provider = OpenAIProvider("gpt-fake", options)
    try:
        body = provider.upstream_request(chat(Message("user", "x"), temperature=0.7))
        assert (body["temperature"], body["user"]) == (0.7, "gw")
    finally:
        await provider.aclose()


def test_a_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIProvider("gpt-4o", {})
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ValueError, match="MY_CLAUDE_KEY"):
        AnthropicProvider("claude", {"api_key_env": "MY_CLAUDE_KEY"})


def test_bad_options_fail_the_config_naming_the_deployment_and_option() -> None:
    config = parse_config(
        {
            "models": {
                "chat": {
                    "deployments": [
                        {
                            "name": "oa",
                            "provider": "openai",
                            "model": "gpt-4o",
                            "options": {"max_tokens_parm": "x"},
                        }
                    ]
                }
            }
        }
    )
    with pytest.raises(
        ConfigError, match=r"models\.chat\.deployments\.0: openai: options\.max_tok"
    ):
        Router(config, build_provider)


async def test_build_provider_knows_every_adapter() -> None:
    for name, kind, options in [
        ("openai", OpenAIProvider, {}),
        ("anthropic", AnthropicProvider, {}),
        ("triton", TritonProvider, {"url": "127.0.0.1:9"}),
    ]:
        provider = build_provider(
            DeploymentConfig(name="d", provider=name, model="m", options=options)
        )
        assert isinstance(provider, kind)
        await provider.aclose()


# -- Triton -------------------------------------------------------------------------------


async def test_triton_refuses_what_its_models_cannot_take() -> None:
    provider = TritonProvider("llm", {"url": "127.0.0.1:9"})
    try:
        for params, field in [
            ({"tools": (Tool("f"),)}, "params.tools"),
            ({"response_format": ResponseFormat("json_object")}, "params.response_format"),
        ]:
            with pytest.raises(ProviderError, match=field) as caught:
                provider.upstream_request(chat(Message("user", "x"), **params))
            assert caught.value.kind is ErrorKind.BAD_REQUEST
        with pytest.raises(ProviderError) as embed:
            await provider.embed(["x"])
        assert embed.value.kind is ErrorKind.BAD_REQUEST
    finally:
        await provider.aclose()


async def test_triton_sends_sampling_parameters_and_the_rendered_prompt() -> None:
    fake = await TritonFake().start()
    provider = TritonProvider(
        "llm", {"url": fake.url, "prompt_template": "plain", "params": {"top_k": 5}}
    )
    try:
        request = chat(Message("system", "s"), Message("user", "u"), temperature=0.2, stop=("X",))
        await provider.generate(request, time.monotonic() + 10)
        body = fake.observed.requests[-1]
        assert sampling(body) == {"temperature": 0.2, "stop": ["X"], "top_k": 5}
        prompt = next(t["data"][0] for t in body["inputs"] if t["name"] == "text_input")
        assert prompt == "system: s\nuser: u\nassistant:"
    finally:
        await provider.aclose()
        await fake.close()


async def test_triton_probe_reads_model_metadata() -> None:
    fake = await TritonFake().start()
    provider = TritonProvider("embedder", {"url": fake.url})  # task generate: wrong inputs
    try:
        with pytest.raises(ProviderError, match="has no input 'text_input'"):
            await provider.probe()
    finally:
        await provider.aclose()
        await fake.close()


# -- shared HTTP rules --------------------------------------------------------------------


def test_status_table() -> None:
    assert _http.kind_for_status(422) is ErrorKind.BAD_REQUEST
    assert _http.kind_for_status(413) is ErrorKind.BAD_REQUEST
    assert _http.kind_for_status(529) is ErrorKind.UPSTREAM_5XX  # Anthropic's "overloaded"
    assert _http.kind_for_status(502) is ErrorKind.UPSTREAM_5XX


def test_retry_after_forms() -> None:
    assert _http.retry_after({"retry-after": "3"}) == 3.0
    assert _http.retry_after({"retry-after": "0.5"}) == 0.5
    assert _http.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = _http.retry_after({"retry-after": date})
    assert wait is not None and 25 < wait <= 30
    assert _http.retry_after({"retry-after": "soon"}) is None
    assert _http.retry_after({"retry-after": "-4"}) is None
    assert _http.retry_after({"retry-after": "86400"}) == _http.MAX_RETRY_AFTER_S
    assert _http.retry_after({}) is None


README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


async def test_the_readme_backends_example_builds() -> None:
    readme = README
    block = readme.split("## Backends", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    router = Router(parse_config(yaml.safe_load(block), "README.md"), build_provider)
    try:
        providers = {d.name: d.provider for m in router.models.values() for d in m.deployments}
        assert isinstance(providers["local-vllm"], OpenAIProvider)
        assert isinstance(providers["anthropic"], AnthropicProvider)
        assert isinstance(providers["triton-embed"], TritonProvider)
    finally:
        await router.aclose()


@pytest.mark.parametrize(
    ("error", "after", "kind"),
    [
        ("overloaded_error", 0, ErrorKind.UPSTREAM_5XX),
        ("rate_limit_error", 0, ErrorKind.RATE_LIMITED),
        ("overloaded_error", 2, ErrorKind.UPSTREAM_5XX),
        ("something_new", 2, ErrorKind.INTERRUPTED),
    ],
)
async def test_anthropic_error_events_inside_a_stream(
    claude: AnthropicProvider,
    anthropic_fake: AnthropicFake,
    error: str,
    after: int,
    kind: ErrorKind,
) -> None:
    anthropic_fake.script.error_after = (after, error)
    deltas: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in claude.stream(chat(Message("user", "x")), None):
            deltas.append(chunk.delta)
    assert caught.value.kind is kind
    assert "".join(deltas) == "".join(anthropic_fake.script.tokens[:after])


async def test_triton_without_usage_outputs_still_streams() -> None:
    fake = await TritonFake().start()
    provider = TritonProvider("llm", {"url": fake.url, "report_usage": False})
    try:
        chunks = [c async for c in provider.stream(chat(Message("user", "u")), None)]
        names = [t["name"] for t in fake.observed.requests[-1]["inputs"]]
        assert not any(name.startswith("return_") for name in names)
        assert "".join(c.delta for c in chunks) == "Hello from the fake"
        assert chunks[-1].finish_reason == "stop"
    finally:
        await provider.aclose()
        await fake.close()


async def test_the_dry_run_body_is_the_bytes_each_http_upstream_receives(
    claude: AnthropicProvider, anthropic_fake: AnthropicFake,
    gpt: OpenAIProvider, openai_fake: OpenAIFake,
) -> None:  # fmt: skip
    request = chat(
        Message("system", "Be brief — très."), Message("user", "hi"),
        temperature=0.5, max_tokens=20, stop=("END",),
    )  # fmt: skip
    for provider, fake in ((claude, anthropic_fake), (gpt, openai_fake)):
        await provider.generate(request, None)
        assert provider.upstream_body(request) == fake.observed.bodies[-1]
        chunks = [c async for c in provider.stream(request, None)]
        assert chunks[-1].finish_reason
        streamed = json.loads(fake.observed.bodies[-1])
        assert streamed["stream"] is True  # the streamed body is the same one, streaming
        assert {k: v for k, v in streamed.items() if k not in ("stream", "stream_options")} == (
            json.loads(provider.upstream_body(request))
        )


async def test_openai_a_body_that_is_not_json_is_a_bad_request(openai_fake: OpenAIFake) -> None:
    """A configured extra field JSON cannot carry (an integer past 64 bits) fails
    the call as BAD_REQUEST before anything is sent, not as a crash."""
    options = {"base_url": openai_fake.base_url, "params": {"seed": 2**70}}
    provider = OpenAIProvider("gpt-fake", options)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.generate(chat(Message("user", "x")), None)
        assert caught.value.kind is ErrorKind.BAD_REQUEST
        assert openai_fake.observed.bodies == []
    finally:
        await provider.aclose()


async def test_openai_a_stream_event_that_is_not_an_object_fails_the_stream(
    openai_fake: OpenAIFake, gpt: OpenAIProvider
) -> None:
    async def handle(request: object, reply: object) -> None:
        reply.start_stream()  # type: ignore[attr-defined]
        reply.send(b"data: [1, 2]\n\n")  # type: ignore[attr-defined]
        reply.end()  # type: ignore[attr-defined]

    openai_fake.server.handler = handle
    with pytest.raises(ProviderError) as caught:
        [c async for c in gpt.stream(chat(Message("user", "x")), None)]
    assert caught.value.kind is ErrorKind.UPSTREAM_5XX
    assert "not a JSON object" in str(caught.value)


@contextlib.asynccontextmanager
async def anthropic_answering(
    answer: Callable[[HttpRequest, Reply], None],
) -> AsyncIterator[AnthropicProvider]:
    """An Anthropic deployment whose upstream answers every call with `answer`."""

    async def handle(request: HttpRequest, reply: Reply) -> None:
        answer(request, reply)

    server = HttpServer(handle, Observed())
    await server.start()
    provider = AnthropicProvider("claude-fake", {"base_url": server.url})
    try:
        yield provider
    finally:
        await provider.aclose()
        await server.close()


def streaming(events: list[bytes]) -> Callable[[HttpRequest, Reply], None]:
    """An answer that streams `events`, each ended by a blank line, then ends."""

    def answer(_: HttpRequest, reply: Reply) -> None:
        reply.start_stream()
        for event in events:
            reply.send(event + b"\n\n")
        reply.end()

    return answer


@pytest.mark.parametrize(
    "body",
    [
        [],  # JSON, but not an object
        {"type": "message"},  # no content
        {"content": [{"type": "tool_use", "name": "lookup"}]},  # a tool call without its id
        {"content": [{"type": "text", "text": "hi"}], "usage": "many"},
    ],
)
async def test_an_anthropic_answer_that_is_not_a_message_is_an_upstream_error(body: Any) -> None:
    async with anthropic_answering(lambda _, reply: reply.json(200, body)) as provider:
        with pytest.raises(ProviderError, match="anthropic: bad answer") as caught:
            await provider.generate(chat(Message("user", "x")), None)
    assert caught.value.kind is ErrorKind.UPSTREAM_5XX


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        ([b'data: ["not", "an", "event"]'], ErrorKind.UPSTREAM_5XX),
        ([b"data: {not json"], ErrorKind.UPSTREAM_5XX),
        # After message_start the stream has begun: a broken event interrupts it.
        ([b'data: {"type":"message_start","message":{"usage":{"input_tokens":3}}}',
          b'data: {"type":"content_block_delta","index":0,"delta":"text"}'],
         ErrorKind.INTERRUPTED),
        ([b'data: {"type":"message_start","message":{"usage":{}}}',
          b'data: {"type":"content_block_delta","index":0,'
          b'"delta":{"type":"text_delta","text":"Hi"}}'],
         ErrorKind.INTERRUPTED),  # no message_stop before the body's end
        # The event's name says it is an error where its data does not.
        ([b'data: {"type":"message_start","message":{"usage":{}}}',
          b'event: error\ndata: {"error":{"type":"overloaded_error","message":"busy"}}'],
         ErrorKind.UPSTREAM_5XX),
    ],
)  # fmt: skip
async def test_anthropic_stream_events_outside_the_protocol_end_the_stream(
    events: list[bytes], kind: ErrorKind
) -> None:
    async with anthropic_answering(streaming(events)) as provider:
        with pytest.raises(ProviderError) as caught:
            async for _ in provider.stream(chat(Message("user", "x")), None):
                pass
    assert caught.value.kind is kind


async def test_anthropic_stream_skips_empty_data_lines_and_comments() -> None:
    events = [
        b": a comment",
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7}}}',
        b"data: ",
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":2}}',
        b'event: message_stop\ndata: {"type":"message_stop"}',
    ]

    async with anthropic_answering(streaming(events)) as provider:
        chunks = [c async for c in provider.stream(chat(Message("user", "x")), None)]
    assert "".join(c.delta for c in chunks) == "Hi"
    assert chunks[-1].finish_reason == "stop"
    # Prompt tokens count the cache's reads and writes; the reads are also "cached".
    assert chunks[-1].usage == Usage(112, 2, 100)
