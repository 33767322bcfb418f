"""The lexical analyzer: text -> the terms BM25 indexes and searches, the same
way at index and at query time.

    "Max_Concurrent_Streams limits running streams"
    -> ["max_concurrent_streams", "max", "concurr", "stream", "limit", "run", "stream"]

Unicode NFKC normalisation and case folding, words of two or more word
characters, the language's stop words dropped, a Snowball stemmer (PyStemmer)
on the rest. An identifier (a word with `_` or with letters and digits, e.g.
`ERR_QUOTA_4291`, `gpt4o`) is kept whole and unstemmed, so it matches exactly,
and a `_`-joined one adds its parts as ordinary words, so `concurrent
streams` finds `max_concurrent_streams` too. Each collection has its own
`Analysis` (language, BM25's k1 and b); language "none" only normalises and
splits.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import bm25s.stopwords
import Stemmer

from indexer.errors import InvalidInput

# Snowball's languages that bm25s has a stop word list for; the others stem only.
_STOPWORDS = {
    "english": bm25s.stopwords.STOPWORDS_EN, "danish": bm25s.stopwords.STOPWORDS_DANISH,
    "dutch": bm25s.stopwords.STOPWORDS_DUTCH, "french": bm25s.stopwords.STOPWORDS_FRENCH,
    "german": bm25s.stopwords.STOPWORDS_GERMAN, "italian": bm25s.stopwords.STOPWORDS_ITALIAN,
    "norwegian": bm25s.stopwords.STOPWORDS_NORWEGIAN,
    "portuguese": bm25s.stopwords.STOPWORDS_PORTUGUESE,
    "russian": bm25s.stopwords.STOPWORDS_RUSSIAN, "spanish": bm25s.stopwords.STOPWORDS_SPANISH,
    "swedish": bm25s.stopwords.STOPWORDS_SWEDISH, "turkish": bm25s.stopwords.STOPWORDS_TURKISH,
}  # fmt: skip
LANGUAGES = ("none", *Stemmer.algorithms())
_WORD = re.compile(r"\w\w+")
_IDENTIFIER = re.compile(r"_|\d")


@dataclass(frozen=True, slots=True)
class Analysis:
    """How a collection's text becomes terms, and BM25's parameters over them."""

    language: str = "english"
    k1: float = 1.5
    b: float = 0.75

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise InvalidInput(
                "collection.lexical.language",
                f"unknown language {self.language!r}; one of: {', '.join(LANGUAGES)}",
            )
        if not 0 < self.k1 <= 10:
            raise InvalidInput("collection.lexical.k1", f"must be in (0, 10], got {self.k1}")
        if not 0 <= self.b <= 1:
            raise InvalidInput("collection.lexical.b", f"must be in [0, 1], got {self.b}")

    def signature(self) -> str:
        """What an index built with this analysis records (a change rebuilds it)."""
        return json.dumps({"analyzer": 1, **asdict(self)}, sort_keys=True)


DEFAULT = Analysis()


class Analyzer:
    def __init__(self, analysis: Analysis = DEFAULT) -> None:
        self.analysis = analysis
        language = analysis.language
        self._stem = Stemmer.Stemmer(language).stemWords if language != "none" else None
        self._stopwords = frozenset(_STOPWORDS.get(language, ()))

    def terms(self, text: str) -> list[str]:
        words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
        out: list[str] = []
        plain: list[str] = []
        for word in words:
            if _IDENTIFIER.search(word) and not word.isdigit():
                out.append(word)  # whole, as written: an exact match
                if "_" in word:
                    plain += [p for p in word.split("_") if len(p) > 1 and not p.isdigit()]
            else:
                plain.append(word)
        plain = [w for w in plain if w not in self._stopwords]
        if self._stem is not None:
            plain = self._stem(plain)
        return out + plain

    def corpus(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.terms(text) for text in texts]
