from __future__ import annotations

import asyncio
import math
import time

import pytest

from adapters.mock import MockProvider, MockSettings
from router.errors import ErrorKind, ProviderError
from router.types import Message, Params, Request


def req(text: str = "a b c", max_tokens: int | None = None) -> Request:
    return Request("m", (Message("system", "ignored"), Message("user", text)),
                   Params(max_tokens=max_tokens))  # fmt: skip


def test_settings_from_name_then_options() -> None:
    s = MockSettings.parse("slow?tokens=5&error_rate=0.25", {"tokens": 7})
    assert (s.latency_ms, s.tokens, s.error_rate) == (1000.0, 7, 0.25)
    assert MockSettings.parse("error", {}).error_rate == 1.0
    assert MockSettings.parse("echo?error_kind=auth", {}).error_kind is ErrorKind.AUTH


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("nosuch", {}, "expected one of"),
        ("echo?colour=red", {}, "colour='red': Extra inputs are not permitted"),
        ("echo?tokens=many", {}, "tokens='many'"),
        ("echo", {"tokens": 2.9}, "tokens=2.9: .*fractional part"),
        ("echo", {"tokens": None}, "tokens=None"),
        ("echo", {"tokens": [1]}, r"tokens=\[1\]"),
        ("echo", {"error_rate": 2}, "error_rate=2: .*less than or equal to 1"),
        ("echo", {"latency_ms": -1}, "latency_ms=-1"),
        ("echo", {"dimensions": -3}, "dimensions=-3"),
        ("echo?error_kind=weird", {}, "error_kind='weird'"),
    ],
)
def test_bad_settings_are_named(model: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockSettings.parse(model, options)


async def test_echoes_last_user_message_with_real_usage() -> None:
    provider = MockProvider("echo?tokens=5")
    chunks = [c async for c in provider.stream(req(), None)]
    assert [c.delta for c in chunks] == ["a", " b", " c", " a", " b", ""]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (4, 5)


async def test_max_tokens_cuts_with_length() -> None:
    response = await MockProvider("echo?tokens=10").generate(req(max_tokens=2), None)
    assert (response.text, response.finish_reason) == ("a b", "length")
    assert response.usage.output_tokens == 2


async def test_error_rate_is_seeded_and_repeatable() -> None:
    async def outcomes() -> list[bool]:
        provider = MockProvider("flaky", {"seed": 7})
        result = []
        for _ in range(20):
            try:
                await provider.generate(req(), None)
                result.append(True)
            except ProviderError:
                result.append(False)
        return result

    first = await outcomes()
    assert first == await outcomes()
    assert 0 < first.count(False) < 20


async def test_fail_after_tokens_interrupts() -> None:
    provider = MockProvider("echo?fail_after_tokens=2")
    seen = []
    with pytest.raises(ProviderError) as exc:
        async for chunk in provider.stream(req(), None):
            seen.append(chunk.delta)
    assert seen == ["a", " b"]
    assert exc.value.kind is ErrorKind.INTERRUPTED
    assert provider.active_streams == 0


async def test_deadline_becomes_timeout_without_oversleeping() -> None:
    provider = MockProvider("slow")
    started = time.monotonic()
    with pytest.raises(ProviderError) as exc:
        await provider.generate(req(), started + 0.05)
    assert exc.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 0.5


async def test_cancel_is_observed() -> None:
    provider = MockProvider("echo?tokens_per_second=10&tokens=100")

    async def consume() -> None:
        async for _ in provider.stream(req(), None):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert provider.active_streams == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (provider.active_streams, provider.cancelled_streams) == (0, 1)


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    provider = MockProvider("echo", {"dimensions": 16})
    a = await provider.embed(["x", "y"])
    b = await provider.embed(["x"])
    assert a.vectors[0] == b.vectors[0] != a.vectors[1]
    assert all(len(v) == 16 for v in a.vectors)
    assert math.isclose(sum(v * v for v in a.vectors[1]), 1.0, rel_tol=1e-9)


async def test_probe_fails_only_for_always_failing() -> None:
    await MockProvider("flaky").probe()
    with pytest.raises(ProviderError):
        await MockProvider("error").probe()


async def test_generate_matches_the_stream() -> None:
    for model in ("echo?tokens=7", "echo?tokens=3", "echo?tokens=0"):
        provider = MockProvider(model)
        chunks = [c async for c in provider.stream(req(max_tokens=5), None)]
        response = await provider.generate(req(max_tokens=5), None)
        assert response.text == "".join(c.delta for c in chunks)
        assert (response.finish_reason, response.usage) == (
            chunks[-1].finish_reason,
            chunks[-1].usage,
        )
    with pytest.raises(ProviderError, match="cut after 2 tokens"):
        await MockProvider("echo?fail_after_tokens=2").generate(req(), None)
