"""A sensitive-word filter over streamed model output.

One Aho-Corasick automaton per config is shared by every stream. Each stream holds
back only the tail that could still grow into a term, so a term split across chunks
is caught while the rest of the text flows with no added delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import ahocorasick

from router.config import FilterConfig

# U+0130 (capital I with dot) is the one character whose lower() is two characters long;
# folding it to "i" keeps folded text index-aligned with the original, as masking needs.
_LENGTH_KEEPING = {0x130: "i"}
_FINAL_SIGMA, _SIGMA = "\u03c2", "\u03c3"


def _fold(text: str) -> str:
    """Lowercase `text` without changing its length or looking at neighbours."""
    # lower() picks final or medial sigma by the following character, which may sit in
    # the next chunk; folding both to the medial one makes the result chunking-proof.
    return text.translate(_LENGTH_KEEPING).lower().replace(_FINAL_SIGMA, _SIGMA)


@dataclass(frozen=True, slots=True, eq=False)
class SensitiveWords:
    """The compiled terms of one FilterConfig: immutable, shared by all streams.

    Unless `case_sensitive`, terms and text are lowercased per character (dotted capital
    I to "i", final sigma to sigma), not casefolded: casefold changes lengths ("ß" to
    "ss") and masks must line up with the original text. So "straße" matches "Straße"
    and "STRAẞE" but not "STRASSE"; "Ärger" matches "ÄRGER" and "ärger".
    """

    config: FilterConfig
    _automaton: Any = field(init=False, repr=False)
    _firsts: frozenset[str] = field(init=False, repr=False)
    _longest: int = field(init=False, repr=False)
    _extendable: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        keys = sorted({self._fold(term) for term in self.config.terms})
        automaton = ahocorasick.Automaton()
        for key in keys:
            automaton.add_word(key, len(key))
        automaton.make_automaton()
        # Frozen, so derived fields are set this way, here only. In sorted order a key
        # that is a proper prefix of another key is directly followed by one.
        extendable = frozenset(a for a, b in pairwise(keys) if b.startswith(a))
        object.__setattr__(self, "_automaton", automaton)
        object.__setattr__(self, "_firsts", frozenset(key[0] for key in keys))
        object.__setattr__(self, "_longest", max(map(len, keys)))
        object.__setattr__(self, "_extendable", extendable)

    def _fold(self, text: str) -> str:
        return text if self.config.case_sensitive else _fold(text)

    def stream(self) -> StreamFilter:
        """A fresh filter for one response stream."""
        return StreamFilter(self)

    def apply(self, text: str) -> tuple[str, bool]:
        """Filter a whole text: (filtered text, whether a term blocked it)."""
        stream = self.stream()
        return stream.feed(text) + stream.finish(), stream.blocked

    def _mask(self, text: str, folded: str) -> str:
        chars: list[str] | None = None
        for end, length in self._automaton.iter(folded):
            if chars is None:
                chars = list(text)
            chars[end - length + 1 : end + 1] = self.config.mask_char * length
        return text if chars is None else "".join(chars)

    def _first_start(self, folded: str) -> int | None:
        """Where the first term to complete starts (the longest, if several do)."""
        # Matches come by end index, and at one end longest first (output links lead
        # from a trie node to ever shorter suffixes).
        end, length = next(self._automaton.iter(folded), (-1, 0))
        return end - length + 1 if end >= 0 else None

    def _tail(self, folded: str) -> int:
        """Length of the longest suffix of `folded` that could still grow into a term."""
        n = len(folded)
        for i in range(max(0, n - self._longest + 1), n):
            tail = folded[i:]
            if folded[i] in self._firsts and self._automaton.match(tail):
                # A whole term that no longer term starts with is already masked: emit it.
                if tail in self._extendable or not self._automaton.exists(tail):
                    return n - i
        return 0


class StreamFilter:
    """The filter state of one response stream; use it from one task only.

    `feed(delta)` returns what is safe to emit now, holding back only the longest tail
    that could still grow into a term (shorter than the longest term); `finish()`
    returns that tail. However the text is chunked, the outputs add up to
    `SensitiveWords.apply` of the whole text. mask: each match becomes `mask_char`
    repeated, overlapping matches their union. block: at the first term to complete,
    output stops just before its start, `blocked` turns True, later calls return "".
    """

    __slots__ = ("_blocked", "_held", "_held_folded", "_words")

    def __init__(self, words: SensitiveWords) -> None:
        self._words = words
        self._held = ""  # already masked, so a match seen once stays masked
        self._held_folded = ""
        self._blocked = False

    @property
    def blocked(self) -> bool:
        return self._blocked

    def feed(self, delta: str) -> str:
        if self._blocked or not delta:
            return ""
        words = self._words
        # A term that ends in `delta` starts inside the held tail, so only these are scanned.
        text = self._held + delta
        folded = self._held_folded + words._fold(delta)
        if words.config.action == "block":
            start = words._first_start(folded)
            if start is not None:
                self._blocked, self._held, self._held_folded = True, "", ""
                return text[:start]
        else:
            text = words._mask(text, folded)
        cut = len(folded) - words._tail(folded)
        self._held, self._held_folded = text[cut:], folded[cut:]
        return text[:cut]

    def finish(self) -> str:
        out, self._held, self._held_folded = self._held, "", ""
        return out
