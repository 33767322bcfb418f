"""The interface between the Dataset layer and whatever turns text into vectors.

Implementations: `indexer.onnx_embedder.OnnxEmbedder` (ONNX Runtime, CPU or
CUDA, micro-batched) and, in `gateway/`, an embedder over a Router model alias
(for Triton or any remote embedding deployment). The chunker counts tokens with
`tokenizer`, so chunks are measured in the embedder's own tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer


class Embedder(Protocol):
    @property
    def dimensions(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """The longest input, in tokens including special tokens, that one
        model call embeds; `embed` handles longer texts by windowed pooling."""
        ...

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's own tokenizer (Hugging Face `tokenizers`)."""
        ...

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text, in order. Idempotent; cancelling the
        caller drops its texts from the pending batch."""
        ...

    async def aclose(self) -> None: ...
