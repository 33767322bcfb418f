"""The request cache's semantic index: the embeddings of cached prompts' last
user turns, by partition, each pointing at the exact key its answer is stored
under.

A partition holds the prompts that may answer one another: same tenant, same
alias config, same messages before the last user turn, same parameters
(`router/request_cache.py` computes it). Inside one, search is exact (one
matrix product over at most a few thousand rows is cheaper than keeping an
HNSW graph per partition, and never misses a neighbour). Synchronous and on a
clock; only the event loop touches it.

Bounded by bytes (vectors, texts and bookkeeping): the oldest entries go
first. Entries expire on the clock; an expired entry is dropped when a search
meets it, or when its turn comes in the age order.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Guard = Callable[[str, str], bool]  # may a cached answer to the first prompt answer the second?

_OVERHEAD = 200  # bytes per entry besides its vector and text: the slot, the dict entries
_CANDIDATES = 4  # above the threshold, how many best matches the guard may look at


def _any(cached: str, asked: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # the exact cache key its answer is stored under
    text: str  # the prompt's last user turn: the guard compares it
    request_id: str  # the request whose answer it is
    expires: float  # on the index's clock

    @property
    def size(self) -> int:
        return _OVERHEAD + len(self.key) + len(self.request_id) + 2 * len(self.text)


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    similarity: float


class _Shelf:
    """One partition: a growable matrix of unit vectors and their entries."""

    def __init__(self, scope: str, dimensions: int) -> None:
        self.scope = scope
        self.vectors: Vector = np.empty((4, dimensions), dtype=np.float32)
        self.entries: list[Entry] = []
        self.slots: dict[str, int] = {}  # key -> row

    def put(self, vector: Vector, entry: Entry) -> Entry | None:
        """Add, or replace the entry of the same key (returned)."""
        row = self.slots.get(entry.key)
        if row is not None:
            old = self.entries[row]
            self.entries[row] = entry
            self.vectors[row] = vector
            return old
        n = len(self.entries)
        if n == len(self.vectors):
            grown = np.empty((2 * n, self.vectors.shape[1]), dtype=np.float32)
            grown[:n] = self.vectors
            self.vectors = grown
        self.vectors[n] = vector
        self.entries.append(entry)
        self.slots[entry.key] = n
        return None

    def drop(self, key: str) -> Entry | None:
        row = self.slots.pop(key, None)
        if row is None:
            return None
        entry = self.entries[row]
        last = len(self.entries) - 1
        if row != last:  # the last row fills the hole
            moved = self.entries[last]
            self.entries[row] = moved
            self.vectors[row] = self.vectors[last]
            self.slots[moved.key] = row
        self.entries.pop()
        if 4 < len(self.vectors) and last < len(self.vectors) // 4:  # give memory back
            self.vectors = self.vectors[: len(self.vectors) // 2].copy()
        return entry

    def best(self, vector: Vector, threshold: float) -> list[tuple[float, Entry]]:
        """Entries at or above `threshold`, most similar first (at most _CANDIDATES)."""
        n = len(self.entries)
        similarities = self.vectors[:n] @ vector
        rows = np.flatnonzero(similarities >= threshold)
        if len(rows) > _CANDIDATES:
            rows = rows[np.argpartition(-similarities[rows], _CANDIDATES)[:_CANDIDATES]]
        ranked = sorted(((float(similarities[r]), int(r)) for r in rows), reverse=True)
        return [(s, self.entries[r]) for s, r in ranked]


class SemanticIndex:
    """Cached prompts by meaning. `evictions` counts entries removed before
    their answer was asked for again, by reason: "size", "expired", "reload".
    `bytes` counts live entries; matrices are halved as they empty."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self.evictions: Counter[str] = Counter()
        self._entries = 0
        self._shelves: dict[str, _Shelf] = {}
        # (partition, entry), oldest first; an entry no longer in its shelf is stale.
        self._age: deque[tuple[str, Entry]] = deque()

    def __len__(self) -> int:
        return self._entries

    def search(
        self, partition: str, vector: Vector, text: str, threshold: float, guard: Guard = _any
    ) -> Match | None:
        """The most similar live entry at or above `threshold` whose text
        `guard` finds compatible with `text` (router/semantic_guard.py: the
        numbers, negations and swaps an embedding does not tell apart), or None."""
        shelf = self._shelves.get(partition)
        if shelf is None or shelf.vectors.shape[1] != len(vector):
            return None
        now = self.clock()
        for similarity, entry in shelf.best(vector, threshold):
            if entry.expires <= now:
                self._drop(partition, entry.key, "expired")
            elif guard(entry.text, text):
                return Match(entry, min(similarity, 1.0))
        return None

    def add(self, partition: str, scope: str, vector: Vector, entry: Entry) -> None:
        """Index `entry` (a unit `vector`) in `partition`, which belongs to the
        alias config `scope`; an entry of the same key is replaced. An entry
        larger than the whole index is not kept."""
        vector = np.asarray(vector, dtype=np.float32)
        size = vector.nbytes + entry.size
        if size > self.max_bytes:
            return
        shelf = self._shelves.get(partition)
        if shelf is None:
            shelf = self._shelves[partition] = _Shelf(scope, len(vector))
        elif shelf.vectors.shape[1] != len(vector):  # another model's: never comparable
            return
        old = shelf.put(vector, entry)
        self.bytes += size - (old.size + vector.nbytes if old is not None else 0)
        self._entries += old is None
        self._age.append((partition, entry))  # a replaced entry's tuple goes stale
        if len(self._age) > 2 * len(self) + 1024:  # stale tuples: drop them all at once
            self._age = deque(t for t in self._age if self._live(*t))
        self._shrink()

    def discard(self, partition: str, key: str) -> None:
        """Forget `key` (its answer is gone from the store)."""
        self._drop(partition, key, "")

    def retain(self, scopes: Iterable[str]) -> None:
        """Drop the partitions of every alias config not in `scopes` (a reload
        changed it: its entries can never match again)."""
        keep = set(scopes)
        for partition in [p for p, s in self._shelves.items() if s.scope not in keep]:
            shelf = self._shelves.pop(partition)
            self.evictions["reload"] += len(shelf.entries)
            self._entries -= len(shelf.entries)
            self.bytes -= sum(e.size + shelf.vectors.shape[1] * 4 for e in shelf.entries)

    def clear(self) -> None:
        self._shelves.clear()
        self._age.clear()
        self.bytes = self._entries = 0

    def _shrink(self) -> None:
        """Oldest first until within bounds; expired entries at the front go too."""
        now = self.clock()
        while self._age:
            partition, entry = self._age[0]
            if not self._live(partition, entry):  # dropped or replaced since
                self._age.popleft()
                continue
            if self.bytes > self.max_bytes:
                reason = "size"
            elif entry.expires <= now:
                reason = "expired"
            else:
                return
            self._age.popleft()
            self._drop(partition, entry.key, reason)

    def _live(self, partition: str, entry: Entry) -> bool:
        shelf = self._shelves.get(partition)
        row = shelf.slots.get(entry.key) if shelf is not None else None
        return row is not None and shelf is not None and shelf.entries[row] is entry

    def _drop(self, partition: str, key: str, reason: str) -> None:
        shelf = self._shelves.get(partition)
        if shelf is None:
            return
        entry = shelf.drop(key)
        if entry is None:
            return
        self._entries -= 1
        self.bytes -= entry.size + shelf.vectors.shape[1] * 4
        if reason:
            self.evictions[reason] += 1
        if not shelf.entries:
            del self._shelves[partition]
