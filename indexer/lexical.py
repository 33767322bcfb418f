"""BM25 over a collection's chunks (bm25s), persisted beside the HNSW graph.

bm25s builds its index in one pass, so a change marks the index stale and the
next lexical search (or snapshot) rebuilds it from the store; reads between a
change and the rebuild never see a half-built index. The terms are the
collection's analyzer's (analyzer.py); a saved index records its analysis, and
one saved with another (or, from before analyzers, none) is not loaded: the
collection rebuilds it from the chunks in its store.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import tqdm

from indexer.analyzer import Analyzer

# bm25s wraps its loops in tqdm even with show_progress=False, and the first
# tqdm starts a monitor thread that lives as long as the process; no progress
# bar here needs one. Its DEBUG line per index build is noise in the gateway's log.
tqdm.tqdm.monitor_interval = 0
logging.getLogger("bm25s").setLevel(logging.INFO)

Labels = npt.NDArray[np.int64]
Hits = list[tuple[int, float]]  # (label, BM25 score), best first


class LexicalIndex:
    """An immutable BM25 index over (label, text) pairs."""

    def __init__(
        self, labels: Labels, retriever: bm25s.BM25 | None, generation: int, analyzer: Analyzer
    ) -> None:
        self.labels = labels  # ascending; position i is the corpus' document i
        self._retriever = retriever
        self.generation = generation
        self.analyzer = analyzer

    @classmethod
    def build(
        cls, labels: Sequence[int], texts: Sequence[str], generation: int,
        analyzer: Analyzer | None = None,
    ) -> LexicalIndex:  # fmt: skip
        analyzer = analyzer or Analyzer()
        order = np.argsort(np.asarray(labels, dtype=np.int64), kind="stable")
        sorted_labels = np.asarray(labels, dtype=np.int64)[order]
        if not len(labels):
            return cls(sorted_labels, None, generation, analyzer)
        analysis = analyzer.analysis
        retriever = bm25s.BM25(k1=analysis.k1, b=analysis.b)
        retriever.index(analyzer.corpus([texts[i] for i in order]), show_progress=False)
        return cls(sorted_labels, retriever, generation, analyzer)

    def search(self, query: str, k: int, allowed: Labels | None = None) -> Hits:
        """At most k chunks with a positive score (among `allowed` when given)."""
        if self._retriever is None or k <= 0:
            return []
        words = self.analyzer.terms(query)
        vocabulary = self._retriever.vocab_dict
        words = [w for w in words if w in vocabulary]
        if not words:
            return []
        scores = np.asarray(self._retriever.get_scores(words), dtype=np.float32)
        if allowed is not None:
            mask = np.zeros(len(scores), dtype=bool)
            positions = np.searchsorted(self.labels, allowed)
            valid = positions < len(self.labels)
            positions = positions[valid]
            positions = positions[self.labels[positions] == allowed[valid]]
            mask[positions] = True
            scores = np.where(mask, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(int(self.labels[i]), float(scores[i])) for i in candidates]

    def save(self, directory: Path) -> None:
        """Write a fresh directory, then swap it in (a crash leaves one whole
        version, or none, which the next load rebuilds)."""
        temporary = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        np.save(temporary / "labels.npy", self.labels)
        if self._retriever is not None:
            self._retriever.save(str(temporary / "bm25"), show_progress=False)
        (temporary / "generation.json").write_text(json.dumps(self.generation))
        (temporary / "analysis.json").write_text(self.analyzer.analysis.signature())
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            os.replace(directory, old)
        os.replace(temporary, directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path, analyzer: Analyzer | None = None) -> LexicalIndex | None:
        """The saved index, or None when there is none, it is unreadable or it
        was built with another analysis than `analyzer`'s."""
        analyzer = analyzer or Analyzer()
        try:
            if (directory / "analysis.json").read_text() != analyzer.analysis.signature():
                return None
            generation = int(json.loads((directory / "generation.json").read_text()))
            labels = np.load(directory / "labels.npy")
            retriever = None
            if len(labels):
                retriever = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
        except (OSError, ValueError):
            return None
        return cls(labels.astype(np.int64), retriever, generation, analyzer)
