"""Sections to chunks measured in the embedder's own tokens.

A chunk never crosses a section (page, heading, CSV row) and never exceeds what
the model embeds in one call, so nothing is truncated: a long section is cut at
the last paragraph break that leaves the chunk at least half full, else at a
sentence break, else between words, else between tokens; every cut is checked
by re-tokenising the chunk. Consecutive chunks of a section share `overlap`
tokens (at most half of the earlier chunk), starting at a sentence or word
boundary.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from indexer.section import Section

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+|\n\s*")


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it is embedded and stored."""

    text: str
    position: int  # 0-based, across the whole document
    tokens: int
    page: int = 0
    heading: str = ""
    extra: Mapping[str, Any] | None = None


def _last_in(points: list[int], low: int, high: int) -> int | None:
    """The largest point p with low < p <= high."""
    i = bisect.bisect_right(points, high) - 1
    return points[i] if i >= 0 and points[i] > low else None


def _first_in(points: list[int], low: int, high: int) -> int | None:
    """The smallest point p with low <= p < high."""
    i = bisect.bisect_left(points, low)
    return points[i] if i < len(points) and points[i] < high else None


class Chunker:
    """Cuts text into chunks of at most `size` tokens (the model's own tokens,
    special tokens excluded). Pure and thread-safe; no I/O."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, tokens: int, overlap: int) -> None:
        # A private copy: the embedder's tokenizer may truncate or pad, which
        # would make every count a lie.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        limit = max_tokens - self._tokenizer.num_special_tokens_to_add(False)
        if limit < 8:
            raise ValueError(f"the model embeds only {max_tokens} tokens; too few to chunk")
        self.size = min(tokens, limit)
        self.overlap = min(overlap, self.size // 2)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def chunks(self, sections: Iterable[Section]) -> Iterator[ChunkDraft]:
        position = 0
        for section in sections:
            for text, tokens in self.split(section.text):
                yield ChunkDraft(
                    text, position, tokens, section.page, section.heading, section.extra or None
                )
                position += 1

    def split(self, text: str) -> list[tuple[str, int]]:
        """(chunk text, token count) pairs covering `text`."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        offsets = encoding.offsets
        n = len(offsets)
        if n == 0:
            return []
        if n <= self.size:
            return [(text.strip(), n)]
        starts = [start for start, _ in offsets]
        paragraphs = self._breaks(_PARAGRAPH, text, starts)
        sentences = sorted({*paragraphs, *self._breaks(_SENTENCE, text, starts)})
        words = [i for i in range(1, n) if offsets[i][0] > offsets[i - 1][1]]
        pieces: list[tuple[str, int]] = []
        s = 0
        while s < n:
            e = self._cut(s, n, paragraphs, sentences, words)
            piece, tokens = self._piece(text, offsets, s, e)
            while tokens > self.size:  # re-tokenised out of context it grew: cut earlier
                e = max(s + 1, e - (tokens - self.size))
                piece, tokens = self._piece(text, offsets, s, e)
            if piece:
                pieces.append((piece, tokens))
            if e >= n:
                break
            s = self._next_start(s, e, sentences, words)
        return pieces

    @staticmethod
    def _breaks(pattern: re.Pattern[str], text: str, starts: list[int]) -> list[int]:
        """Token indices that begin right after a match of `pattern`."""
        points = {bisect.bisect_left(starts, m.end()) for m in pattern.finditer(text)}
        return sorted(p for p in points if 0 < p < len(starts))

    def _cut(
        self, s: int, n: int, paragraphs: list[int], sentences: list[int], words: list[int]
    ) -> int:
        end = s + self.size
        if end >= n:
            return n
        for points, low in (
            (paragraphs, s + self.size // 2),
            (sentences, s + self.size // 4),
            (words, s),
        ):
            if (point := _last_in(points, low, end)) is not None:
                return point
        return end

    def _next_start(self, s: int, e: int, sentences: list[int], words: list[int]) -> int:
        if self.overlap == 0:
            return e
        # At most half of a short chunk (one cut early at a sentence) is repeated:
        # a full overlap would start the next chunk a word or two later.
        low = max(s + 1, e - min(self.overlap, (e - s) // 2))
        for points in (sentences, words):
            if (point := _first_in(points, low, e)) is not None:
                return point
        return low

    def _piece(self, text: str, offsets: list[tuple[int, int]], s: int, e: int) -> tuple[str, int]:
        piece = text[offsets[s][0] : offsets[e - 1][1]].strip()
        return piece, self.count(piece)
