"""The request cache's semantic matching: the index (partitions, threshold,
expiry, the byte bound, reloads), which requests it applies to, the tenant
and alias-config scopes, and the router serving semantic hits unary and
streamed. Vectors come from a fake embedder whose similarities the tests
choose; bench/semantic_threshold.py measures the real model."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from adapters.redis_cache import RedisSharedPrompts, build_cache
from router.cache import CachedAnswer, MemoryCache
from router.config import CacheConfig, ModelCacheConfig
from router.request_cache import RequestCache
from router.router import Router
from router.semantic import Entry, SemanticIndex
from router.semantic_guard import compatible
from router.types import Message, Params, Request, Tool, Usage
from tests.conftest import REDIS_URL
from tests.router.scripted import FakeClock, Providers, answer, config, dep

DIM = 8
ON = ModelCacheConfig(semantic=True)


def unit(*values: float) -> npt.NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v)
    return out


def near(base: npt.NDArray[np.float32], similarity: float) -> npt.NDArray[np.float32]:
    """A unit vector at exactly `similarity` cosine from `base` (which lies in dims 0-1)."""
    other = np.zeros(DIM, dtype=np.float32)
    other[7] = 1.0
    out: npt.NDArray[np.float32] = similarity * base + np.sqrt(1 - similarity**2) * other
    return out


class FakeEmbedder:
    """Chosen vectors for chosen texts; any other text a pseudo-random unit vector."""

    def __init__(self, vectors: dict[str, npt.NDArray[np.float32]] | None = None) -> None:
        self.vectors = vectors or {}
        self.calls: list[list[str]] = []
        self.broken = False

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        if self.broken:
            raise RuntimeError("model not loaded")
        rows = []
        for text in texts:
            if text in self.vectors:
                rows.append(self.vectors[text])
            else:
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
                v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
                rows.append(v / np.linalg.norm(v))
        return np.stack(rows)


BASE = unit(1, 0)
PARAPHRASE = "What's the capital city of France?"
VECTORS = {
    "What is the capital of France?": BASE,
    PARAPHRASE: near(BASE, 0.97),
    "Tell me France's capital.": near(BASE, 0.96),
    "Tell me the capital city of France.": near(BASE, 0.80),
}


def request(text: str, *, system: str = "be brief", **fields: Any) -> Request:
    params = fields.pop("params", Params(temperature=0))
    messages = (Message("system", system), Message("user", text))
    return Request("m", messages, params, **fields)


def cache_with(
    embedder: FakeEmbedder | None = None, tenant: list[str] | None = None, **settings: Any
) -> RequestCache:
    config = CacheConfig(enabled=True, **settings)
    who = tenant or ["acme"]
    cache = RequestCache(MemoryCache(), config, tenant=lambda: who[0])
    cache.embedder = embedder or FakeEmbedder(VECTORS)
    return cache


async def answered(
    cache: RequestCache, req: Request, text: str = "Paris.", options: ModelCacheConfig = ON
) -> None:
    """Look `req` up (a miss) and store `text` as its answer."""
    found = await cache.find(req, "scope", options)
    assert found.result == "miss", found
    await cache.remember(found, CachedAnswer((text,), "stop", Usage(5, 1), (), req.request_id))


# --- the index ---------------------------------------------------------------------------


def entry(key: str, text: str = "t", expires: float = 10_000.0) -> Entry:
    return Entry(key, text, "req-" + key, expires)


def test_the_index_finds_the_most_similar_entry_at_or_above_the_threshold() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    index.add("p", "s", BASE, entry("a"))
    index.add("p", "s", unit(0, 1), entry("b"))
    match = index.search("p", near(BASE, 0.99), "t", 0.95)
    assert match is not None and match.entry.key == "a"
    assert match.similarity == pytest.approx(0.99, abs=1e-5)
    assert index.search("p", near(BASE, 0.90), "t", 0.95) is None
    assert index.search("other partition", BASE, "t", 0.5) is None


def test_the_guard_vetoes_a_close_vector_whose_numbers_differ() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    index.add("p", "s", BASE, entry("a", "what is 15% of 80"))
    assert index.search("p", BASE, "what is 15% of 90", 0.9) is not None  # no guard
    assert index.search("p", BASE, "what is 15% of 90", 0.9, compatible) is None
    assert index.search("p", BASE, "what's 15% of 80", 0.9, compatible) is not None


def test_expired_entries_are_not_found_and_are_dropped() -> None:
    clock = FakeClock()
    index = SemanticIndex(1 << 20, clock)
    index.add("p", "s", BASE, entry("a", expires=clock() + 10))
    clock.advance(11)
    assert index.search("p", BASE, "t", 0.5) is None
    assert (len(index), index.bytes, index.evictions["expired"]) == (0, 0, 1)


def test_the_byte_bound_evicts_the_oldest_first() -> None:
    clock = FakeClock()
    one = BASE.nbytes + entry("k0").size
    index = SemanticIndex(3 * one, clock)
    for i in range(5):
        index.add("p", "s", unit(1, i), entry(f"k{i}"))
    assert len(index) == 3 and index.bytes <= 3 * one
    assert index.evictions["size"] == 2
    assert index.search("p", unit(1, 0), "t", 0.9999) is None  # k0 went first
    found = index.search("p", unit(1, 4), "t", 0.9999)
    assert found is not None and found.entry.key == "k4"


def test_re_adding_a_key_replaces_its_entry_without_growing() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    index.add("p", "s", BASE, entry("a", "old"))
    size = index.bytes
    index.add("p", "s", BASE, entry("a", "new"))
    match = index.search("p", BASE, "new", 0.9)
    assert (len(index), index.bytes, match and match.entry.text) == (1, size, "new")


def test_removal_keeps_the_other_rows_findable() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    vectors = [unit(1, i) for i in range(4)]
    for i, v in enumerate(vectors):
        index.add("p", "s", v, entry(f"k{i}"))
    index.discard("p", "k1")  # the last row moves into its place
    for i in (0, 2, 3):
        found = index.search("p", vectors[i], "t", 0.9999)
        assert found is not None and found.entry.key == f"k{i}"
    assert index.search("p", vectors[1], "t", 0.9999) is None


def test_retain_drops_the_partitions_of_retired_alias_configs() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    index.add("p1", "old", BASE, entry("a"))
    index.add("p2", "kept", BASE, entry("b"))
    index.retain(["kept"])
    assert index.search("p1", BASE, "t", 0.5) is None
    assert index.search("p2", BASE, "t", 0.5) is not None
    assert (len(index), index.evictions["reload"]) == (1, 1)
    assert index.bytes == BASE.nbytes + entry("b").size


# --- which requests, whose entries ----------------------------------------------------------


async def test_a_paraphrase_is_answered_with_the_cached_answer_and_says_whose() -> None:
    cache = cache_with()
    await answered(cache, request("What is the capital of France?", request_id="first"))
    found = await cache.find(request(PARAPHRASE), "scope", ON)
    assert found.answer is not None and found.answer.text == "Paris."
    assert found.hit is not None
    assert (found.hit.kind, found.hit.request_id) == ("semantic", "first")
    assert found.hit.similarity == pytest.approx(0.97, abs=1e-4)


async def test_below_the_threshold_is_a_miss_and_a_per_alias_threshold_overrides() -> None:
    cache = cache_with()
    await answered(cache, request("What is the capital of France?"))
    farther = request("Tell me the capital city of France.")
    assert (await cache.find(farther, "scope", ON)).result == "miss"
    loose = ModelCacheConfig(semantic=True, threshold=0.75)
    assert (await cache.find(farther, "scope", loose)).result == "hit"


async def test_never_across_tenants_or_alias_configs() -> None:
    tenant = ["acme"]
    cache = cache_with(tenant=tenant)
    await answered(cache, request("What is the capital of France?"))
    tenant[0] = "globex"
    assert (await cache.find(request(PARAPHRASE), "scope", ON)).answer is None
    exact = await cache.find(request("What is the capital of France?"), "scope", ON)
    assert exact.answer is None  # not even the same words
    tenant[0] = "acme"
    assert (await cache.find(request(PARAPHRASE), "other scope", ON)).answer is None
    assert (await cache.find(request(PARAPHRASE), "scope", ON)).answer is not None


async def test_everything_but_the_last_user_turn_must_match_exactly() -> None:
    cache = cache_with()
    await answered(cache, request("What is the capital of France?"))
    found = await cache.find(request(PARAPHRASE, system="answer in French"), "scope", ON)
    assert found.answer is None
    found = await cache.find(request(PARAPHRASE, params=Params(0, max_tokens=5)), "scope", ON)
    assert found.answer is None


@pytest.mark.parametrize(
    ("params", "options"),
    [
        (Params(temperature=0.7), ModelCacheConfig(semantic=True)),
        (Params(), ModelCacheConfig(semantic=True)),  # unset: the upstream samples
        (Params(temperature=0, tools=(Tool("f"),)), ModelCacheConfig(semantic=True)),
    ],
)
async def test_sampling_and_tools_are_not_matched_by_meaning_unless_the_alias_allows(
    params: Params, options: ModelCacheConfig
) -> None:
    embedder = FakeEmbedder(VECTORS)
    cache = cache_with(embedder)
    found = await cache.find(request(PARAPHRASE, params=params), "scope", options)
    assert (found.answer, found.pending, embedder.calls) == (None, None, [])  # not embedded
    allowed = ModelCacheConfig(semantic=True, with_sampling=True, with_tools=True)
    first = request("What is the capital of France?", params=params)
    found = await cache.find(first, "scope", allowed)
    await cache.remember(found, CachedAnswer(("Paris.",), "stop", Usage(1, 1)))
    hit = await cache.find(request(PARAPHRASE, params=params), "scope", allowed)
    assert hit.hit is not None and hit.hit.kind == "semantic"


async def test_a_request_may_opt_in_where_its_alias_does_not() -> None:
    cache = cache_with()
    off = ModelCacheConfig()
    first = request("What is the capital of France?", semantic_cache=True)
    found = await cache.find(first, "scope", off)
    await cache.remember(found, CachedAnswer(("Paris.",), "stop", Usage(1, 1)))
    assert (await cache.find(request(PARAPHRASE), "scope", off)).answer is None
    hit = await cache.find(request(PARAPHRASE, semantic_cache=True), "scope", off)
    assert hit.hit is not None and hit.hit.kind == "semantic"


async def test_long_prompts_images_and_non_user_turns_are_not_embedded() -> None:
    embedder = FakeEmbedder(VECTORS)
    cache = cache_with(embedder, semantic={"max_prompt_chars": 50})
    long = request("x" * 51)
    found = await cache.find(long, "scope", ON)
    assert (found.result, embedder.calls) == ("miss", [])  # exact matching still applies
    assistant_last = Request("m", (Message("user", "hi"), Message("assistant", "hello")),
                             Params(temperature=0))  # fmt: skip
    await cache.find(assistant_last, "scope", ON)
    assert embedder.calls == []


async def test_a_failing_embedder_costs_the_semantic_lookup_not_the_request() -> None:
    embedder = FakeEmbedder(VECTORS)
    cache = cache_with(embedder)
    await answered(cache, request("What is the capital of France?"))
    embedder.broken = True
    found = await cache.find(request(PARAPHRASE), "scope", ON)
    assert (found.result, found.pending) == ("miss", None)
    exact = await cache.find(request("What is the capital of France?"), "scope", ON)
    assert exact.hit is not None and exact.hit.kind == "exact"


async def test_an_entry_whose_answer_left_the_store_is_forgotten() -> None:
    cache = cache_with()
    await answered(cache, request("What is the capital of France?"))
    assert isinstance(cache.store, MemoryCache)
    await cache.store.aclose()  # every answer gone; the index still points at one
    assert (await cache.find(request(PARAPHRASE), "scope", ON)).answer is None
    assert len(cache.index) == 0


async def test_entries_expire_with_the_cache_ttl() -> None:
    clock = FakeClock()
    config = CacheConfig(enabled=True, ttl_s=60)
    cache = RequestCache(MemoryCache(ttl_s=60, timer=clock), config, clock=clock)
    cache.embedder = FakeEmbedder(VECTORS)
    await answered(cache, request("What is the capital of France?"))
    clock.advance(61)
    assert (await cache.find(request(PARAPHRASE), "scope", ON)).answer is None


class Seen:
    def __init__(self) -> None:
        self.lookups: list[tuple[str, str]] = []
        self.similarities: list[float] = []

    def lookup(self, kind: str, result: str, similarity: float = 0.0) -> None:
        self.lookups.append((kind, result))
        if result == "hit":
            self.similarities.append(similarity)


async def test_the_observer_hears_each_lookup_by_kind_and_result() -> None:
    seen = Seen()
    cache = cache_with(semantic={"max_prompt_chars": 60})
    cache.observer = seen
    await answered(cache, request("What is the capital of France?"))
    await cache.find(request(PARAPHRASE), "scope", ON)
    await cache.find(request("What is the capital of France?"), "scope", ON)
    await cache.find(request("y" * 61), "scope", ON)
    assert seen.lookups == [
        ("exact", "miss"), ("semantic", "miss"),
        ("exact", "miss"), ("semantic", "hit"),
        ("exact", "hit"),
        ("semantic", "skipped"), ("exact", "miss"),
    ]  # fmt: skip
    assert seen.similarities[0] == pytest.approx(0.97, abs=1e-4)


# --- through the router -----------------------------------------------------------------------


def semantic_router(providers: Providers, cache: RequestCache, **deployment: Any) -> Router:
    models = {"m": {"deployments": [dep("a", **deployment)], "cache": {"semantic": True}}}
    return Router(config(models, cache={"enabled": True}), providers, cache=cache)


async def test_the_router_serves_a_semantic_hit_unary_and_streamed() -> None:
    providers, cache = Providers(), cache_with()
    router = semantic_router(providers, cache)
    providers["a"].steps.append(answer("Paris."))
    first = await router.generate(request("What is the capital of France?", request_id="r1"))
    await router.flush()
    unary = await router.generate(request(PARAPHRASE))
    assert (first.cache, unary.cache, unary.response.text, unary.deployment) == (
        "miss",
        "hit",
        "Paris.",
        "",
    )
    assert unary.hit is not None and (unary.hit.kind, unary.hit.request_id) == ("semantic", "r1")
    stream = router.stream(request(PARAPHRASE))
    assert "".join([c.delta async for c in stream]) == "Paris."
    assert stream.hit is not None and stream.hit.kind == "semantic"
    assert len(providers["a"].requests) == 1


async def test_a_reload_that_changes_the_alias_leaves_its_entries_unmatched() -> None:
    providers, cache = Providers(), cache_with()
    old = semantic_router(providers, cache)
    await old.generate(request("What is the capital of France?"))
    await old.flush()
    same = semantic_router(providers, cache)
    assert (await same.generate(request(PARAPHRASE))).cache == "hit"
    changed = semantic_router(providers, cache, options={"base_url": "http://elsewhere"})
    cache.retain(changed.scopes.values())
    assert len(cache.index) == 0
    assert (await changed.generate(request(PARAPHRASE))).cache == "miss"
    assert (await changed.generate(request("What is the capital of France?"))).cache == "miss"


async def test_a_price_change_leaves_the_alias_entries_unmatched() -> None:
    from router.pricing import Price

    providers, cache = Providers(), cache_with()
    router = semantic_router(providers, cache)
    await router.generate(request("What is the capital of France?"))
    await router.flush()
    router.use_prices({"a": Price(input=1.0, output=2.0)})
    assert (await router.generate(request(PARAPHRASE))).cache == "miss"


# --- shared between replicas (a real Redis) -----------------------------------------------------


async def test_replicas_on_redis_share_semantic_entries(redis_prefix: str) -> None:
    config = CacheConfig(enabled=True, backend="redis", redis_url=REDIS_URL,
                         key_prefix=redis_prefix)  # fmt: skip
    replicas = []
    for _ in range(2):
        cache = RequestCache(build_cache(config), config, shared=RedisSharedPrompts(config, 1000))
        cache.embedder = FakeEmbedder(VECTORS)
        cache.start()
        replicas.append(cache)
    one, two = replicas
    try:
        await answered(one, request("What is the capital of France?", request_id="on-one"))
        for _ in range(100):  # the follower's next read
            if len(two.index):
                break
            await asyncio.sleep(0.02)
        found = await two.find(request(PARAPHRASE), "scope", ON)
        assert found.hit is not None and found.answer is not None
        assert (found.hit.kind, found.hit.request_id, found.answer.text) == (
            "semantic",
            "on-one",
            "Paris.",
        )
        # A replica started later reads what was shared before it.
        late = RequestCache(build_cache(config), config, shared=RedisSharedPrompts(config, 1000))
        late.embedder = FakeEmbedder(VECTORS)
        late.start()
        replicas.append(late)
        for _ in range(100):
            if len(late.index):
                break
            await asyncio.sleep(0.02)
        assert (await late.find(request(PARAPHRASE), "scope", ON)).result == "hit"
    finally:
        for cache in replicas:
            await cache.aclose()


async def test_a_dead_redis_costs_sharing_not_requests() -> None:
    config = CacheConfig(enabled=True, backend="redis", redis_url="redis://127.0.0.1:1/0")
    cache = RequestCache(build_cache(config), config, shared=RedisSharedPrompts(config, 10))
    cache.embedder = embedder = FakeEmbedder(VECTORS)
    cache.start()
    try:
        found = await cache.find(request("What is the capital of France?"), "scope", ON)
        # The exact lookup failed: no answer could be fetched, so nothing is embedded.
        assert (found.result, found.pending, embedder.calls) == ("miss", None, [])
        await cache.remember(found, CachedAnswer(("Paris.",), "stop", Usage(1, 1)))
        assert len(cache.index) == 0
        assert (await cache.find(request(PARAPHRASE), "scope", ON)).answer is None
    finally:
        await cache.aclose()


@pytest.mark.parametrize(
    ("guard", "asked", "hit"),
    [
        ("strict", "What is 15% of 90?", False),  # numbers
        ("strict", "What is 15 percent of 80?", False),  # one word for another
        ("basic", "What is 15 percent of 80?", True),
        ("basic", "What is 15% of 90?", False),
        ("off", "What is 15% of 90?", True),
    ],
)
async def test_the_configured_guard_vetoes_what_the_embedding_cannot_tell_apart(
    guard: str, asked: str, hit: bool
) -> None:
    close = {"What is 15% of 80?": BASE, asked: near(BASE, 0.99)}
    cache = cache_with(FakeEmbedder(close), semantic={"guard": guard})
    await answered(cache, request("What is 15% of 80?"))
    assert ((await cache.find(request(asked), "scope", ON)).answer is not None) is hit


async def test_an_unknown_alias_is_model_not_found_with_the_cache_on() -> None:
    from router.errors import ModelNotFound

    router = semantic_router(Providers(), cache_with())
    with pytest.raises(ModelNotFound):
        await router.generate(Request("nope", (Message("user", "hi"),), Params(temperature=0)))


class FlakyStore(MemoryCache):
    """A store whose calls fail (answer None, unhealthy) while `down`, as RedisCache's do."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gets = 0

    @property
    def healthy(self) -> bool:
        return not self.down

    async def get(self, key: str) -> CachedAnswer | None:
        self.gets += 1
        return None if self.down else await super().get(key)


def spread(asked: str) -> tuple[list[str], FakeEmbedder]:
    """Seven prompts with orthogonal vectors, and `asked` at cosine 0.378 from each."""
    texts = [f"a question, take {i}" for i in range(1, 8)]
    vectors = {t: unit(*([0.0] * i + [1.0])) for i, t in enumerate(texts, 1)}
    vectors[asked] = unit(0, *([1.0] * 7))
    return texts, FakeEmbedder(vectors)


LOOSE = ModelCacheConfig(semantic=True, threshold=0.3)


async def test_a_failing_store_keeps_the_index_and_bounds_the_lookup() -> None:
    store = FlakyStore()
    cache = RequestCache(store, CacheConfig(enabled=True, semantic={"guard": "off"}))
    texts, cache.embedder = spread("a question?")
    for text in texts:
        await answered(cache, request(text), options=LOOSE)
    store.down, store.gets = True, 0
    assert (await cache.find(request("a question?"), "scope", LOOSE)).answer is None
    assert (store.gets, len(cache.index)) == (1, 7)  # the exact get failed: no semantic gets
    sampled = ModelCacheConfig(semantic=True, threshold=0.3, with_sampling=True)
    asked = request("a question?", params=Params(temperature=0.5))  # no exact lookup first
    await answered(cache, request(texts[0], params=Params(temperature=0.5)), options=sampled)
    store.gets = 0
    assert (await cache.find(asked, "scope", sampled)).answer is None
    assert (store.gets, len(cache.index)) == (1, 8)  # one try, nothing forgotten
    store.down = False
    assert (await cache.find(asked, "scope", sampled)).answer is not None


async def test_a_missing_answer_is_tried_past_but_only_a_few_times() -> None:
    texts, embedder = spread("a question?")
    cache = cache_with(embedder, semantic={"guard": "off"})
    for text in texts:
        await answered(cache, request(text), options=LOOSE)
    assert isinstance(cache.store, MemoryCache)
    await cache.store.aclose()  # every answer gone
    found = await cache.find(request("a question?"), "scope", LOOSE)
    assert found.answer is None and len(cache.index) == 4  # three tried and forgotten


def test_memory_is_given_back_as_a_partition_empties() -> None:
    index = SemanticIndex(1 << 30, FakeClock())
    for i in range(1000):
        index.add("p", "s", unit(1, i), entry(f"k{i}"))
    for i in range(995):
        index.discard("p", f"k{i}")
    shelf = index._shelves["p"]
    assert len(shelf.entries) == 5 and len(shelf.vectors) <= 32
    assert len(index) == 5
    assert index.bytes == sum(unit(1).nbytes + entry(f"k{i}").size for i in range(995, 1000))


def test_the_age_order_does_not_grow_with_churn_and_replacing_refreshes_it() -> None:
    clock = FakeClock()
    one = BASE.nbytes + entry("k0").size
    index = SemanticIndex(3 * one, clock)
    index.add("p", "s", unit(1, 0), entry("k0"))
    for _ in range(10_000):  # added and forgotten (its answer left the store)
        index.add("p", "s", unit(1, 1), entry("churn"))
        index.discard("p", "churn")
    assert len(index._age) <= 2 * len(index) + 1024
    index.add("p", "s", unit(1, 1), entry("k1"))
    index.add("p", "s", unit(1, 0), entry("k0"))  # replaced: now the newest
    index.add("p", "s", unit(1, 2), entry("k2"))
    index.add("p", "s", unit(1, 3), entry("k3"))  # over the bound: the oldest, k1, goes
    assert index.search("p", unit(1, 1), "t", 0.9999) is None
    assert index.search("p", unit(1, 0), "t", 0.9999) is not None


def test_vectors_of_another_size_never_meet() -> None:
    index = SemanticIndex(1 << 20, FakeClock())
    index.add("p", "s", np.ones(16, dtype=np.float32) / 4, entry("wide"))
    index.add("p", "s", BASE, entry("narrow"))  # not comparable with the shelf: not kept
    assert index.search("p", BASE, "t", 0.1) is None
    assert len(index) == 1


async def test_a_slow_embedder_costs_the_semantic_lookup_not_the_call() -> None:
    class Slow(FakeEmbedder):
        async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            await asyncio.sleep(1)
            return await super().embed(texts)

    seen = Seen()
    cache = cache_with(Slow(VECTORS), semantic={"embed_timeout_s": 0.05})
    cache.observer = seen
    found = await cache.find(request(PARAPHRASE), "scope", ON)
    assert (found.result, found.pending) == ("miss", None)
    assert seen.lookups == [("exact", "miss"), ("semantic", "skipped")]
