"""The request cache: which requests may be answered from it, under what key,
what an entry holds, and the in-process backend. The Redis backend lives in
adapters/redis_cache.py; the router sees both only through `ResponseCache`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from router import spans
from router.types import Chunk, Message, Params, Request, ResponseFormat, ToolCall, Usage

# Bump when the key's canonical form or CachedAnswer's JSON changes: old entries
# then stop matching instead of being misread.
_VERSION = 2
_PLAIN_TEXT = ResponseFormat()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A finished upstream answer, kept as its streamed pieces so that a hit can
    be replayed as the same stream."""

    deltas: tuple[str, ...]
    finish_reason: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    request_id: str = ""  # the request whose answer it is

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def size(self) -> int:
        """Approximate bytes held in memory, for the memory backend's bound."""
        calls = sum(sys.getsizeof(c.id) + sys.getsizeof(c.arguments) for c in self.tool_calls)
        held = sys.getsizeof(self.deltas) + len(self.request_id)
        return 256 + held + sum(map(sys.getsizeof, self.deltas)) + calls

    def chunks(self) -> tuple[Chunk, ...]:
        """The answer as a stream: one chunk per delta, then a last chunk with
        the tool calls, finish reason and usage."""
        last = Chunk(tool_calls=self.tool_calls, finish_reason=self.finish_reason, usage=self.usage)
        return (*(Chunk(delta=d) for d in self.deltas), last)

    def to_json(self) -> bytes:
        usage = self.usage
        data = {
            "v": _VERSION,
            "d": self.deltas,
            "f": self.finish_reason,
            "u": (usage.input_tokens, usage.output_tokens),
            "t": [(c.id, c.name, c.arguments) for c in self.tool_calls],
            "r": self.request_id,
        }
        # surrogatepass: a lone surrogate from an upstream must round-trip, not raise.
        return _COMPACT.encode(data).encode("utf-8", "surrogatepass")

    @classmethod
    def from_json(cls, data: bytes | str) -> CachedAnswer:
        """The answer `to_json` wrote; ValueError for anything else."""
        try:
            obj = json.loads(data)
            deltas, finish, usage, calls = obj["d"], obj["f"], obj["u"], obj["t"]
            request_id = obj["r"]
            if obj["v"] != _VERSION or not (
                isinstance(finish, str) and isinstance(request_id, str)
            ):
                raise ValueError("unknown format")
            answer = cls(
                deltas=_strings(deltas),
                finish_reason=finish,
                usage=Usage(*_counts(usage)),
                tool_calls=tuple(ToolCall(*_strings(c, 3)) for c in calls),
                request_id=request_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a cached answer: {exc!r}") from exc
        return answer


def exact_cacheable(request: Request) -> bool:
    """Deterministic requests (`params.temperature == 0`) and requests that opt
    in (`request.cache`); any other sampling may legitimately answer
    differently each time."""
    return request.cache or request.params.temperature == 0


def cache_key(request: Request, scope: str = "") -> str | None:
    """`storage_key` for a request the exact cache may answer, else None."""
    return storage_key(request, scope) if exact_cacheable(request) else None


def storage_key(request: Request, scope: str = "") -> str:
    """The key (64 hex digits) the request's answer is stored under.

    It hashes a canonical JSON form (sorted keys, no spaces, UTF-8) of:
    `scope` (whose cache it is: the tenant and the alias config, see
    router/request_cache.py); the model alias; the manual `deployment`
    override when set, since it asks for one upstream; every message field
    (role, content, parts, name, tool_calls, tool_call_id); every param.
    Normalised, because they mean the same to every upstream: mapping key
    order (JSON schemas, tool parameters); 0 vs 0.0 and -0.0 in
    temperature/top_p; the order and repeats of `stop`; a plain-text
    `response_format` vs none. Left out: `metadata` (routing hints, not
    content) and the cache flags. Message and tool order, content vs text
    parts, tool-call ids and argument text are kept as given.
    """
    return _hash((_VERSION, scope, request.model, request.deployment,
                  [_message(m) for m in request.messages], _params(request.params)))  # fmt: skip


def semantic_partition(request: Request, scope: str = "") -> str:
    """Which cached prompts may answer `request` by meaning: the same as
    `storage_key`'s form, with the last message's text left out (its role
    and the rest of it stay)."""
    *before, last = request.messages
    bare = _message(last)
    bare[1], bare[2] = "", []  # content, parts
    return _hash(("semantic", _VERSION, scope, request.model, request.deployment,
                  [_message(m) for m in before], bare, _params(request.params)))  # fmt: skip


def _hash(form: object) -> str:
    canonical = _CANONICAL.encode(form).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(canonical, digest_size=32).hexdigest()


class ResponseCache(Protocol):
    """Where cached answers live, keyed by `cache_key`.

    A failing backend never fails a request: `get` answers None and `put` drops
    the answer; the implementation logs the failure at warning level once per
    streak of failures, not once per call. Calls are bounded by the backend's
    own short timeouts (no deadline argument) and are safe to cancel. `put` is
    idempotent (last write wins); entries expire after the configured TTL.
    """

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer) -> None: ...

    @property
    def healthy(self) -> bool:
        """False while calls fail: a None from `get` then says nothing about the key."""
        ...

    async def aclose(self) -> None:
        """Release connections; the cache is not used afterwards."""
        ...


async def lookup(cache: ResponseCache, key: str) -> CachedAnswer | None:
    """`cache.get(key)`, in a span of its own when tracing is on."""
    if not spans.ON:
        return await cache.get(key)
    with spans.span("infergate.cache.lookup") as span:
        hit = await cache.get(key)
        span.set_attribute("infergate.cache.hit", hit is not None)
        return hit


class _Entries(TTLCache[str, CachedAnswer]):
    """A TTLCache that counts what it evicts, by reason."""

    def __init__(self, max_bytes: int, ttl_s: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=_size)
        self.evictions: Counter[str] = Counter()

    def popitem(self) -> tuple[str, CachedAnswer]:  # cachetools calls it to make room
        item = super().popitem()
        self.evictions["size"] += 1
        return item

    def expire(self, time: float | None = None) -> list[tuple[str, CachedAnswer]]:
        expired = super().expire(time)
        self.evictions["expired"] += len(expired)
        return expired


class MemoryCache:
    """An in-process ResponseCache: entries expire after `ttl_s` on `timer`'s
    clock and the least recently used go first once `max_bytes` is reached.
    `bytes` and `evictions` (by reason: "size", "expired") are for metrics."""

    def __init__(
        self,
        max_bytes: int = 64 << 20,
        ttl_s: float = 300.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries = _Entries(max_bytes, ttl_s, timer)

    @property
    def healthy(self) -> bool:
        return True

    @property
    def bytes(self) -> int:
        return int(self._entries.currsize)

    @property
    def evictions(self) -> Counter[str]:
        return self._entries.evictions

    async def get(self, key: str) -> CachedAnswer | None:
        return self._entries.get(key)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        try:
            self._entries[key] = answer
        except ValueError:  # larger than the whole cache: not stored
            self._entries.pop(key, None)

    async def aclose(self) -> None:
        self._entries.clear()


def _size(answer: CachedAnswer) -> int:
    return answer.size


def _message(m: Message) -> list[Any]:
    return [
        m.role,
        m.content,
        [(p.text, p.image_url) for p in m.parts],
        m.name,
        [(c.id, c.name, c.arguments) for c in m.tool_calls],
        m.tool_call_id,
    ]


def _params(p: Params) -> list[Any]:
    rf = p.response_format
    return [
        _number(p.temperature),
        _number(p.top_p),
        p.max_tokens,
        sorted(set(p.stop)),
        None if rf is None or rf == _PLAIN_TEXT else (rf.type, rf.schema_name, rf.json_schema),
        [(t.name, t.description, t.parameters) for t in p.tools],
        p.tool_choice,
        p.seed,
    ]


def _number(value: float | None) -> float | None:
    return None if value is None else float(value) + 0.0  # + 0.0 turns -0.0 into 0.0


def _plain(obj: object) -> object:
    """JSON for what the encoder does not know: read-only mappings (e.g. MappingProxyType)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} cannot be part of a cache key")


def _strings(value: Any, n: int | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise ValueError(f"expected a list of {n or 'any number of'} strings")
    if not all(isinstance(s, str) for s in value):
        raise ValueError("expected strings")
    return tuple(value)


def _counts(value: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("expected two token counts")
    inputs, outputs = value
    if type(inputs) is not int or type(outputs) is not int:
        raise ValueError("expected integer token counts")
    return inputs, outputs


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
