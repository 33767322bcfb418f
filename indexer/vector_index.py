"""One collection's HNSW graph (hnswlib, cosine), safe to share between threads.

hnswlib does not make a search safe while an insert or delete runs on the same
index, so every call takes the one lock; callers run these methods in a worker
thread so that the event loop stays free.

Filtered search picks its path by how many labels the filter allows:
- at most `exact_threshold`: exact search over just those vectors (a copy of
  the normalised vectors is kept for this; it costs what the graph's own copy
  costs, and makes selective filters both exact and fast);
- a larger share: an unfiltered HNSW search for enough extra candidates
  (k / share, three times over) that are then filtered; should that leave fewer than
  k, HNSW again with the filter applied inside the graph walk.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from indexer.params import IndexParams

Vectors = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
Hits = list[tuple[int, float]]  # (label, cosine similarity), best first

_MAX_OVERSAMPLE = 40  # beyond k * this many candidates, filter inside the graph walk


@functools.cache
def single_threaded_blas() -> None:
    """Limit numpy's BLAS to one thread, process-wide (idempotent). Searches run
    in worker threads side by side; a BLAS pool per call oversubscribes the
    cores and made exact subset search ten times slower on 2 busy cores."""
    threadpool_limits(1, user_api="blas")


def _normalised(vectors: Vectors) -> Vectors:
    rows = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = rows / norms
    return out


class VectorIndex:
    def __init__(self, dimensions: int, params: IndexParams, graph: hnswlib.Index | None = None):
        self.dimensions = dimensions
        self.params = params
        self._lock = threading.Lock()
        self._deleted = 0  # graph slots marked deleted and not yet reused
        self._matrix = np.zeros((params.initial_capacity, dimensions), dtype=np.float32)
        self._rows = 0  # rows of _matrix ever used
        self._free: list[int] = []  # rows of deleted vectors, reused first
        self._row_of = np.full(params.initial_capacity, -1, dtype=np.int64)  # label -> row
        if graph is None:
            graph = hnswlib.Index(space="cosine", dim=dimensions)
            graph.init_index(
                max_elements=params.initial_capacity,
                M=params.m,
                ef_construction=params.ef_construction,
                allow_replace_deleted=True,
            )
        graph.set_ef(params.ef)
        self._graph = graph

    @classmethod
    def load(
        cls, path: Path, dimensions: int, params: IndexParams, live: Iterable[int]
    ) -> VectorIndex:
        """The snapshot at `path`, with `ef` restored, reconciled to `live` (the
        labels the store holds): labels the snapshot has but the store lost are
        deleted; the caller adds the `missing()` ones."""
        graph = hnswlib.Index(space="cosine", dim=dimensions)
        graph.load_index(str(path), allow_replace_deleted=True)
        index = cls(dimensions, params, graph)
        wanted = set(live)
        labels = graph.get_ids_list()
        kept = []
        for label in labels:
            if label in wanted:
                kept.append(int(label))
                continue
            try:
                graph.mark_deleted(label)
            except RuntimeError:  # already deleted in the snapshot
                pass
        index._deleted = len(labels) - len(kept)
        for start in range(0, len(kept), 4096):
            part = kept[start : start + 4096]
            index._remember(part, np.asarray(graph.get_items(part), dtype=np.float32))
        return index

    def __len__(self) -> int:
        return self._rows - len(self._free)

    def _has(self, label: int) -> bool:
        return 0 <= label < len(self._row_of) and self._row_of[label] >= 0

    def missing(self, live: Iterable[int]) -> list[int]:
        with self._lock:
            return [label for label in live if not self._has(label)]

    def add(self, labels: Labels, vectors: Vectors) -> None:
        """Insert vectors under new labels; grows the graph by doubling as
        needed and reuses the slots of deleted vectors."""
        if not len(labels):
            return
        rows = _normalised(vectors)
        with self._lock:
            reused = min(self._deleted, len(labels))
            needed = self._graph.element_count + len(labels) - reused
            capacity = self._graph.get_max_elements()
            if needed > capacity:
                self._graph.resize_index(max(needed, 2 * capacity))
            self._graph.add_items(rows, labels, num_threads=1, replace_deleted=True)
            self._deleted -= reused
            self._remember([int(label) for label in labels], rows)

    def _remember(self, labels: list[int], rows: Vectors) -> None:
        top = max(labels) + 1
        if top > len(self._row_of):
            grown = np.full(max(top, 2 * len(self._row_of)), -1, dtype=np.int64)
            grown[: len(self._row_of)] = self._row_of
            self._row_of = grown
        for label, row in zip(labels, rows, strict=True):
            if self._free:
                slot = self._free.pop()
            else:
                slot = self._rows
                self._rows += 1
                if slot >= len(self._matrix):
                    grown_matrix = np.zeros((2 * len(self._matrix), self.dimensions), np.float32)
                    grown_matrix[: len(self._matrix)] = self._matrix
                    self._matrix = grown_matrix
            self._matrix[slot] = row
            self._row_of[label] = slot

    def delete(self, labels: Iterable[int]) -> None:
        with self._lock:
            for label in labels:
                if self._has(label):
                    self._graph.mark_deleted(label)
                    self._free.append(int(self._row_of[label]))
                    self._row_of[label] = -1
                    self._deleted += 1

    def search(self, query: Vectors, k: int, allowed: Labels | None = None) -> Hits:
        """At most k nearest live vectors (among `allowed` when given); fewer
        when fewer exist. Never raises for a small collection or a tight filter."""
        q = _normalised(np.asarray(query, dtype=np.float32).reshape(1, -1))
        with self._lock:
            live = len(self)
            if allowed is not None:
                allowed = allowed[allowed < len(self._row_of)]
                allowed = allowed[self._row_of[allowed] >= 0]
                if len(allowed) <= self.params.exact_threshold:
                    return self._exact(q[0], k, allowed)
            k = min(k, live if allowed is None else len(allowed))
            if k <= 0:
                return []
            if allowed is None:
                return self._knn(q, k, k)
            share = len(allowed) / live
            wanted = math.ceil(3 * k / share)
            if wanted <= k * _MAX_OVERSAMPLE:
                mask = np.zeros(len(self._row_of), dtype=bool)
                mask[allowed] = True
                hits = [h for h in self._knn(q, min(wanted, live), k) if mask[h[0]]]
                if len(hits) >= k:
                    return hits[:k]
            member = set(allowed.tolist()).__contains__
            try:
                return self._knn(q, k, k, member)
            except RuntimeError:  # the walk found fewer than k: search the subset exactly
                return self._exact(q[0], k, allowed)

    def _knn(self, q: Vectors, k: int, keep: int, member: object = None) -> Hits:
        ef = self.params.ef
        if k > ef:  # hnswlib needs ef >= k; widen for this query only
            self._graph.set_ef(k)
        try:
            found, distances = self._graph.knn_query(q, k, num_threads=1, filter=member)
        finally:
            if k > ef:
                self._graph.set_ef(ef)
        return [(int(a), 1.0 - float(d)) for a, d in zip(found[0], distances[0], strict=True)]

    def _exact(self, q: Vectors, k: int, allowed: Labels) -> Hits:
        if not len(allowed) or k <= 0:
            return []
        scores = self._matrix[self._row_of[allowed]] @ q
        top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(allowed[i]), float(scores[i])) for i in top]

    def save(self, path: Path) -> None:
        """Write then rename, so a crash leaves the old snapshot or the new one."""
        temporary = path.with_name(path.name + ".tmp")
        with self._lock:
            self._graph.save_index(str(temporary))
        os.replace(temporary, path)
