"""A deterministic in-process Embedder: hashed bag of words, no model files.

The in-memory implementation of the `Embedder` interface (tests and benches
that must not depend on a model): texts sharing words get similar vectors, so
retrieval behaves like a crude dense model. Its tokenizer is a real Hugging
Face WordPiece tokenizer built in code (single characters plus `words`), so the
chunker counts tokens exactly as it does with a real model.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

_WORD = re.compile(r"[a-z0-9]+")
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def wordpiece_tokenizer(words: Iterable[str] = ()) -> Tokenizer:
    """A BERT-style tokenizer: lower-cased, split on whitespace and punctuation,
    each word a vocabulary entry when listed, else its characters."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {}
    for token in (*_SPECIALS, *chars, *(f"##{c}" for c in chars), *words):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


class HashedEmbedder:
    """Feature-hashed word counts (sublinear tf), L2-normalised. Idempotent and
    instant; `embed` never blocks the loop long enough to need a thread."""

    def __init__(
        self, dimensions: int = 64, max_tokens: int = 128, words: Iterable[str] = ()
    ) -> None:
        self._dimensions = dimensions
        self._max_tokens = max_tokens
        self._tokenizer = wordpiece_tokenizer(words)
        self.calls = 0  # embed() calls, for tests of batching and caching

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def vector(self, text: str) -> npt.NDArray[np.float32]:
        row = np.zeros(self._dimensions, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            digest = zlib.crc32(word.encode())
            sign = 1.0 if digest & 1 else -1.0
            row[(digest >> 1) % self._dimensions] += sign
        np.copysign(np.log1p(np.abs(row)), row, out=row)
        norm = float(np.linalg.norm(row))
        if norm == 0.0:  # no words: a fixed unit vector keeps cosine defined
            row[0] = 1.0
            return row
        return row / norm

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])

    async def aclose(self) -> None:
        pass
