"""The request cache as the router uses it: which requests it may answer, and
how — exactly (router/cache.py's key) first, then by meaning (the last user
turn's embedding against cached prompts that share everything else,
router/semantic.py).

Every key and partition includes a scope: the caller's tenant (the cache never
answers one tenant with another's entry) and a fingerprint of the alias's
config (its deployments, their upstream models, options and prices, and its
fallbacks'), so a reload that changes what would answer leaves the old entries
unmatched; the semantic index also drops them.

A semantic match needs all of: the alias opts in (`models.X.cache.semantic`)
or the request does (`semantic_cache`); the last message is a plain-text user
turn of at most `max_prompt_chars`; temperature 0 and no tools, unless the
alias allows them; cosine similarity at or above the threshold; and
router/semantic_guard.py's checks (numbers, negations, opposites, swapped
arguments, names; `strict`: a one-word substitution), which the embedding
cannot be trusted with (bench/RESULTS.md, "Issue 22"). A failing embedder
costs the semantic lookup, never the request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from router.cache import (
    CachedAnswer,
    ResponseCache,
    exact_cacheable,
    lookup,
    semantic_partition,
    storage_key,
)
from router.config import CacheConfig, ModelCacheConfig
from router.semantic import Entry, Guard, SemanticIndex, Vector
from router.semantic_guard import compatible
from router.types import Request

log = logging.getLogger("infergate.cache")


class PromptEmbedder(Protocol):
    """indexer.embedder.Embedder's one method the cache uses."""

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text. Cancelling drops the texts."""
        ...


class SharedPrompts(Protocol):
    """Semantic entries shared between replicas (adapters/redis_cache.py):
    each replica publishes the prompts it cached and follows the others'."""

    async def publish(self, partition: str, scope: str, vector: Vector, entry: Entry) -> None:
        """Best effort: a failure is logged, not raised."""
        ...

    async def follow(self, index: SemanticIndex) -> None:
        """Add the other replicas' entries to `index` as they come, from the
        oldest still shared; runs until cancelled."""
        ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    """Where the cache reports what it did (the gateway's metrics)."""

    def lookup(self, kind: str, result: str, similarity: float = 0.0) -> None:
        """kind "exact" or "semantic"; result "hit", "miss" or "skipped"
        (semantic: the prompt was not embedded)."""
        ...


class _Silent:
    def lookup(self, kind: str, result: str, similarity: float = 0.0) -> None:
        pass


@dataclass(frozen=True, slots=True)
class CacheHit:
    kind: str  # "exact" or "semantic"
    similarity: float  # cosine similarity of the prompts; 1.0 for an exact hit
    request_id: str  # the request whose answer is served


@dataclass(frozen=True, slots=True)
class _Pending:
    """A semantic entry to index once the answer is stored."""

    partition: str
    scope: str
    vector: Vector
    text: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the cache said about one request. `key` is where a miss's answer
    goes (None: not cached); `hit` is set for an answer from the cache."""

    key: str | None = None
    answer: CachedAnswer | None = None
    hit: CacheHit | None = None
    pending: _Pending | None = None

    @property
    def result(self) -> str:
        """ "hit", "miss", or "" when the request is not cached."""
        return "" if self.key is None else "hit" if self.answer is not None else "miss"


NOT_CACHED = Lookup()


class RequestCache:
    """One per process, shared by every Router snapshot (reloads keep it
    unless the cache config changes). `tenant` names the caller's tenant
    (read when a call starts). Until `use_embedder` gives it one, semantic
    lookups are skipped."""

    def __init__(
        self,
        store: ResponseCache,
        config: CacheConfig,
        *,
        tenant: Callable[[], str] = lambda: "",
        shared: SharedPrompts | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.index = SemanticIndex(config.semantic.max_bytes, clock)
        self.embedder: PromptEmbedder | None = None
        self.embedder_name = ""  # in every partition: vectors of two models never meet
        self.observer: Observer = observer or _Silent()
        self._tenant = tenant
        self._guard = _GUARDS[config.semantic.guard]
        self._shared = shared
        self._following: asyncio.Task[None] | None = None
        self._copies: set[asyncio.Task[None]] = set()
        self._failing = False

    def use_embedder(self, embedder: PromptEmbedder | None, name: str) -> None:
        """Embed prompts with `embedder` (None: semantic lookups are skipped);
        `name` says which model it runs."""
        self.embedder, self.embedder_name = embedder, name

    def start(self) -> None:
        """Follow the other replicas' semantic entries (shared backends only)."""
        if self._shared is not None and self._following is None:
            self._following = asyncio.create_task(self._shared.follow(self.index))
            self._following.add_done_callback(_stopped)

    def applies(self, request: Request, options: ModelCacheConfig) -> bool:
        """Whether `find` may answer or keep `request` (no I/O)."""
        return exact_cacheable(request) or self._semantic_text(request, options) is not None

    async def find(self, request: Request, scope: str, options: ModelCacheConfig) -> Lookup:
        """Look `request` up: exact first, then by meaning where it applies.
        Cancel-safe; never raises for a failing backend or embedder. No
        deadline of its own: the store's calls are bounded by its timeouts,
        the embedding by `semantic.embed_timeout_s` (then: a miss)."""
        text = self._semantic_text(request, options)  # None: not semantic; "": not embedded
        if text == "":
            self.observer.lookup("semantic", "skipped")
        exact = exact_cacheable(request)
        if not text and not exact:
            return NOT_CACHED
        alias_scope, scope = scope, f"{self._tenant()}\0{scope}"
        key = storage_key(request, scope)
        if exact:
            answer = await lookup(self.store, key)
            self.observer.lookup("exact", "hit" if answer else "miss")
            if answer is not None:
                return Lookup(key, answer, CacheHit("exact", 1.0, answer.request_id))
            if text and not self.store.healthy:  # no answer could be fetched now
                self.observer.lookup("semantic", "skipped")
                return Lookup(key)
        if not text:
            return Lookup(key)
        vector = await self._embed(text)
        if vector is None:
            self.observer.lookup("semantic", "skipped")
            return Lookup(key)
        model = f"{scope}\0{self.embedder_name}\0{len(vector)}"
        partition = semantic_partition(request, model)
        threshold = options.threshold or self.config.semantic.threshold
        for _ in range(_CANDIDATES):
            match = self.index.search(partition, vector, text, threshold, self._guard)
            if match is None:
                break
            answer = await self.store.get(match.entry.key)
            if answer is not None:
                self.observer.lookup("semantic", "hit", match.similarity)
                if exact:  # the same words again are then an exact hit, not another embedding
                    self._copy(key, answer)
                source = answer.request_id or match.entry.request_id
                return Lookup(key, answer, CacheHit("semantic", match.similarity, source))
            if not self.store.healthy:  # a failing store, not a missing answer: keep the entry
                break
            self.index.discard(partition, match.entry.key)  # its answer is gone: try the next
        self.observer.lookup("semantic", "miss")
        return Lookup(key, pending=_Pending(partition, alias_scope, vector, text))

    async def remember(self, lookup: Lookup, answer: CachedAnswer) -> None:
        """Store a miss's answer, then index its prompt (so no replica finds
        the prompt before its answer)."""
        assert lookup.key is not None
        await self.store.put(lookup.key, answer)
        pending = lookup.pending
        if pending is None:
            return
        expires = self.index.clock() + self.config.ttl_s
        entry = Entry(lookup.key, pending.text, answer.request_id, expires)
        self.index.add(pending.partition, pending.scope, pending.vector, entry)
        if self._shared is not None:
            await self._shared.publish(pending.partition, pending.scope, pending.vector, entry)

    def retain(self, scopes: Iterable[str]) -> None:
        """After a reload: forget the semantic entries of alias configs gone."""
        self.index.retain(scopes)

    def _copy(self, key: str, answer: CachedAnswer) -> None:
        task = asyncio.create_task(self.store.put(key, answer))
        self._copies.add(task)
        task.add_done_callback(self._copies.discard)

    async def aclose(self) -> None:
        if self._copies:
            await asyncio.gather(*self._copies, return_exceptions=True)
        if self._following is not None:
            # Bounded: a client library may take a while to give up a blocking read.
            self._following.cancel()
            await asyncio.wait({self._following}, timeout=2.0)
        if self._shared is not None:
            await self._shared.aclose()
        self.index.clear()
        await self.store.aclose()

    def _semantic_text(self, request: Request, options: ModelCacheConfig) -> str | None:
        """The last user turn to embed; None when semantic matching does not
        apply, "" when it does but the turn is blank or over the length cap."""
        if not (options.semantic or request.semantic_cache) or not request.messages:
            return None
        last, params = request.messages[-1], request.params
        if last.role != "user" or any(p.image_url is not None for p in last.parts):
            return None
        if (params.tools or params.tool_choice) and not options.with_tools:
            return None
        if params.temperature != 0 and not options.with_sampling:
            return None
        text = last.text()
        if not text.strip() or len(text) > self.config.semantic.max_prompt_chars:
            return ""
        return text

    async def _embed(self, text: str) -> Vector | None:
        if self.embedder is None:
            return None
        try:
            async with asyncio.timeout(self.config.semantic.embed_timeout_s):
                rows = await self.embedder.embed([text])
        except TimeoutError:  # a busy embedder (ingestion, a burst): this call goes on as a miss
            log.debug(
                "semantic cache: embedding took over %gs", self.config.semantic.embed_timeout_s
            )
            return None
        except Exception as exc:  # any embedder failure costs the lookup, not the call
            if not self._failing:
                self._failing = True
                log.warning("semantic cache: embedding failed, matching exactly only: %r", exc)
            return None
        if self._failing:
            self._failing = False
            log.info("semantic cache: embedding works again")
        vector: Vector = np.asarray(rows[0], dtype=np.float32)
        return vector


def _stopped(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("semantic cache: following the other replicas stopped", exc_info=task.exception())


_CANDIDATES = 3  # answers fetched per semantic lookup at most: a failing store must not stall it
_GUARDS: dict[str, Guard] = {
    "strict": functools.partial(compatible, strict=True),
    "basic": compatible,
    "off": lambda cached, asked: True,
}


def fingerprint(parts: object) -> str:
    """A short stable digest of an alias's config (JSON-able `parts`)."""
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(data.encode(), digest_size=12).hexdigest()
