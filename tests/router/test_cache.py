"""The request cache: keys, entries, and one contract suite run against the
in-process backend and a real Redis (127.0.0.1:6379; under CI=true a missing
Redis fails these tests instead of skipping them)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import pydantic
import pytest
import redis.asyncio as redis

from adapters.redis_cache import RedisCache, build_cache
from router.cache import CachedAnswer, MemoryCache, ResponseCache, cache_key
from router.config import CacheConfig
from router.types import (
    Chunk,
    ContentPart,
    Message,
    Params,
    Request,
    ResponseFormat,
    Tool,
    ToolCall,
    Usage,
)
from tests.conftest import REDIS_URL

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
SCHEMA_REORDERED = {
    "required": ["city"],
    "properties": {"days": {"type": "integer"}, "city": {"type": "string"}},
    "type": "object",
}


def request(*texts: str, params: Params | None = None, **fields: Any) -> Request:
    roles = ("system", "user", "assistant")
    messages = tuple(Message(roles[i % 3], t) for i, t in enumerate(texts or ("hello",)))
    return Request(
        model="chat", messages=messages, params=params or Params(temperature=0), **fields
    )


def answer(text: str = "hello there", **fields: Any) -> CachedAnswer:
    return CachedAnswer(
        deltas=tuple(text.split(" ")), finish_reason="stop", usage=Usage(3, 2), **fields
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- keys ---------------------------------------------------------------------------------


def test_same_request_same_key() -> None:
    key = cache_key(request("be brief", "hi", "hello"))
    assert key is not None and len(key) == 64
    assert cache_key(request("be brief", "hi", "hello")) == key


@pytest.mark.parametrize(
    "other",
    [
        request("be brief", "hi!"),
        request("be brief"),
        Request("other", request("be brief", "hi").messages),
        request("be brief", "hi", deployment="chat-b"),
        request("be brief", "hi", params=Params(temperature=0, max_tokens=5)),
        request("be brief", "hi", params=Params(temperature=0, seed=7)),
        request("be brief", "hi", params=Params(temperature=0, top_p=0.5)),
        request("be brief", "hi", params=Params(temperature=0, stop=("\n",))),
        request("be brief", "hi", params=Params(temperature=0, tool_choice="none")),
        request("be brief", "hi", params=Params(temperature=0, tools=(Tool("weather"),))),
        request(
            "be brief",
            "hi",
            params=Params(temperature=0, response_format=ResponseFormat("json_object")),
        ),
        Request("chat", (Message("system", "be brief"), Message("user", "hi", name="ann"))),
        Request("chat", (Message("system", "be brief"), Message("tool", "hi", tool_call_id="1"))),
        Request(
            "chat", (Message("system", "be brief"), Message("user", parts=(ContentPart("hi"),)))
        ),
    ],
)
def test_a_different_message_or_param_changes_the_key(other: Request) -> None:
    base = request("be brief", "hi")
    assert cache_key(replace_cache_flag(other)) != cache_key(base)


def replace_cache_flag(req: Request) -> Request:
    # Requests built without temperature 0 opt in, so that every case has a key.
    return Request(req.model, req.messages, req.params, req.deployment, req.metadata, cache=True)


def test_tool_calls_in_history_are_part_of_the_key() -> None:
    call = ToolCall("call_1", "weather", '{"city":"Oslo"}')
    with_call = Request("chat", (Message("assistant", tool_calls=(call,)),), cache=True)
    other_args = ToolCall("call_1", "weather", '{"city":"Rome"}')
    assert cache_key(with_call) != cache_key(
        Request("chat", (Message("assistant", tool_calls=(other_args,)),), cache=True)
    )


def test_mapping_key_order_does_not_change_the_key() -> None:
    def with_schema(schema: Any) -> Request:
        return request(
            "hi",
            params=Params(
                temperature=0,
                tools=(Tool("weather", "forecast", schema),),
                response_format=ResponseFormat("json_schema", "w", schema),
            ),
        )

    key = cache_key(with_schema(SCHEMA))
    assert cache_key(with_schema(SCHEMA_REORDERED)) == key
    assert cache_key(with_schema(MappingProxyType(SCHEMA_REORDERED))) == key
    assert cache_key(with_schema({**SCHEMA, "required": ["days"]})) != key


def test_equivalent_params_share_a_key() -> None:
    key = cache_key(request("hi", params=Params(temperature=0.0, stop=("a", "b"))))
    assert cache_key(request("hi", params=Params(temperature=0, stop=("b", "a", "b")))) == key
    assert cache_key(request("hi", params=Params(temperature=-0.0, stop=("b", "a")))) == key
    plain = Params(temperature=0, stop=("a", "b"), response_format=ResponseFormat())
    assert cache_key(request("hi", params=plain)) == key


def test_metadata_and_the_cache_flag_do_not_change_the_key() -> None:
    key = cache_key(request("hi"))
    assert cache_key(request("hi", metadata={"prefer": "cheap"})) == key
    assert cache_key(request("hi", cache=True)) == key


def test_only_deterministic_or_opted_in_requests_are_cacheable() -> None:
    assert cache_key(request("hi", params=Params(temperature=0.7))) is None
    assert cache_key(request("hi", params=Params())) is None
    assert cache_key(request("hi", params=Params(temperature=0.7), cache=True)) is not None
    assert cache_key(request("hi", params=Params(), cache=True)) is not None


def test_a_lone_surrogate_still_has_a_key() -> None:
    assert cache_key(request("broken \ud800 text")) is not None


# --- entries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        answer(),
        CachedAnswer((), "length", Usage()),
        answer("héllo 世界 🙂 \ud800", tool_calls=(ToolCall("c1", "weather", '{"a": 1}'),)),
        CachedAnswer(("", " ", '"quoted"\n'), "tool_calls", Usage(10**12, 0)),
    ],
)
def test_cached_answer_json_round_trip_is_exact(entry: CachedAnswer) -> None:
    assert CachedAnswer.from_json(entry.to_json()) == entry


def test_cached_answer_json_is_compact() -> None:
    assert answer("a b").to_json() == b'{"v":2,"d":["a","b"],"f":"stop","u":[3,2],"t":[],"r":""}'


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"v":1}',
        b'{"v":99,"d":[],"f":"stop","u":[0,0],"t":[]}',
        b'{"v":1,"d":[1],"f":"stop","u":[0,0],"t":[]}',
        b'{"v":1,"d":[],"f":"stop","u":[0,true],"t":[]}',
        b'{"v":1,"d":[],"f":"stop","u":[0,0],"t":[["id","name"]]}',
        b"\xff",
    ],
)
def test_from_json_rejects_anything_else(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a cached answer"):
        CachedAnswer.from_json(data)


def test_cached_answer_replays_as_a_stream() -> None:
    call = ToolCall("c1", "weather", "{}")
    entry = answer("one two", tool_calls=(call,))
    assert entry.text == "onetwo"
    assert entry.chunks() == (
        Chunk(delta="one"),
        Chunk(delta="two"),
        Chunk(tool_calls=(call,), finish_reason="stop", usage=Usage(3, 2)),
    )


def test_size_grows_with_content() -> None:
    assert answer("a " * 1000).size > answer("a").size + 1000


# --- the memory backend -------------------------------------------------------------------


async def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    a, b, c, d = (answer(letter * 100) for letter in "abcd")
    cache = MemoryCache(max_bytes=3 * a.size, ttl_s=60)
    for key, entry in zip("abc", (a, b, c), strict=True):
        await cache.put(key, entry)
    assert await cache.get("a") == a  # now b is the least recently used
    await cache.put("d", d)
    assert [await cache.get(k) for k in "abcd"] == [a, None, c, d]


async def test_memory_cache_expires_entries_on_its_clock() -> None:
    clock = FakeClock()
    cache = MemoryCache(ttl_s=30, timer=clock)
    await cache.put("k", answer())
    clock.now += 29
    assert await cache.get("k") == answer()
    clock.now += 2
    assert await cache.get("k") is None


async def test_an_answer_larger_than_the_cache_is_not_stored() -> None:
    cache = MemoryCache(max_bytes=1024, ttl_s=60)
    await cache.put("k", answer("small"))
    await cache.put("k", answer("x" * 2000))
    await cache.put("big", answer("x" * 2000))
    assert await cache.get("k") is None
    assert await cache.get("big") is None


# --- config -------------------------------------------------------------------------------


def test_cache_config_defaults_and_bounds() -> None:
    config = CacheConfig()
    assert (config.enabled, config.backend, config.ttl_s) == (False, "memory", 300)
    assert config.max_bytes == 64 * 1024 * 1024
    for bad in ({"ttl_s": 0}, {"max_bytes": 1000}, {"backend": "disk"}, {"size": 1}):
        with pytest.raises(pydantic.ValidationError):
            CacheConfig.model_validate(bad)


async def test_build_cache_picks_the_configured_backend() -> None:
    memory = build_cache(CacheConfig())
    remote = build_cache(CacheConfig(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(memory, MemoryCache) and isinstance(remote, RedisCache)
    await memory.aclose()
    await remote.aclose()


# --- one contract suite, every backend ----------------------------------------------------


@pytest.fixture
def redis_config(redis_prefix: str) -> CacheConfig:
    return CacheConfig(backend="redis", redis_url=REDIS_URL, key_prefix=redis_prefix)


@pytest.fixture
async def memory_backend() -> AsyncIterator[ResponseCache]:
    cache = build_cache(CacheConfig())
    yield cache
    await cache.aclose()


@pytest.fixture
async def redis_backend(redis_config: CacheConfig) -> AsyncIterator[ResponseCache]:
    cache = build_cache(redis_config)
    yield cache
    await cache.aclose()


@pytest.fixture(params=["memory_backend", "redis_backend"])
def cache(request: pytest.FixtureRequest) -> ResponseCache:
    backend: ResponseCache = request.getfixturevalue(request.param)
    return backend


async def test_contract_a_missing_key_is_a_miss(cache: ResponseCache) -> None:
    assert await cache.get("absent") is None


async def test_contract_put_then_get_returns_the_same_answer(cache: ResponseCache) -> None:
    entry = answer("héllo 世界 🙂", tool_calls=(ToolCall("c1", "weather", '{"a":1}'),))
    await cache.put("k", entry)
    assert await cache.get("k") == entry
    assert await cache.get("other") is None


async def test_contract_put_is_idempotent_and_last_write_wins(cache: ResponseCache) -> None:
    await cache.put("k", answer("first"))
    await cache.put("k", answer("first"))
    assert await cache.get("k") == answer("first")
    await cache.put("k", answer("second"))
    assert await cache.get("k") == answer("second")


async def test_contract_keys_from_cache_key_work(cache: ResponseCache) -> None:
    key = cache_key(request("hi"))
    assert key is not None
    await cache.put(key, answer())
    assert await cache.get(cache_key(request("hi")) or "") == answer()


# --- Redis specifics ----------------------------------------------------------------------


async def test_redis_entries_carry_the_ttl(
    redis_client: redis.Redis, redis_config: CacheConfig
) -> None:
    cache = RedisCache(redis_config.model_copy(update={"ttl_s": 5}))
    await cache.put("k", answer())
    await cache.aclose()
    stored = await redis_client.get(redis_config.key_prefix + "k")
    assert stored == answer().to_json()
    assert 0 < await redis_client.pttl(redis_config.key_prefix + "k") <= 5000


async def test_redis_unreadable_entry_is_a_miss_logged_once_per_streak(
    redis_client: redis.Redis, redis_config: CacheConfig, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(redis_config)
    await redis_client.set(redis_config.key_prefix + "bad", b"not json")
    with caplog.at_level(logging.INFO, logger="infergate.cache"):
        assert await cache.get("bad") is None
        assert await cache.get("bad") is None
        await cache.put("good", answer())  # success ends the streak
        assert await cache.get("bad") is None
    await cache.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("working again" in r.getMessage() for r in caplog.records)


async def test_dead_redis_costs_a_miss_quickly(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(CacheConfig(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="infergate.cache"):
        assert await cache.get("k") is None
        await cache.put("k", answer())
        assert await cache.get("k") is None
    elapsed = time.monotonic() - started
    await cache.aclose()
    assert elapsed < 1.0
    assert len(caplog.records) == 1


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


def test_an_opted_in_requests_temperature_is_part_of_the_key() -> None:
    warm = request("be brief", "hi", params=Params(temperature=0.7), cache=True)
    warmer = request("be brief", "hi", params=Params(temperature=0.9), cache=True)
    assert len({cache_key(warm), cache_key(warmer), cache_key(request("be brief", "hi"))}) == 3


@pytest.mark.parametrize(
    "data",
    [
        b'{"v":1,"d":"hello","f":"stop","u":[0,0],"t":[]}',  # deltas must be a list, not a string
        b'{"v":1,"d":[],"f":"stop","u":[0,0],"t":["abc"]}',
        b'{"v":1,"d":[],"f":"stop","u":[0,0],"t":[["id","name","{}","x"]]}',
    ],
)
def test_from_json_rejects_strings_where_lists_belong(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a cached answer"):
        CachedAnswer.from_json(data)
