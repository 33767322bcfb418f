"""Sentence embeddings with ONNX Runtime: CUDA when present, else CPU; micro-batched.

A model directory (see indexer/minilm.py) holds model.onnx (BERT-style inputs
input_ids / attention_mask / token_type_ids, output last_hidden_state),
tokenizer.json, config.json (hidden_size) and optionally
sentence_bert_config.json (max_seq_length, else the config's
max_position_embeddings) which sets `max_tokens`.

A text's vector is the mean of the last hidden states over its tokens
(attention-masked, [CLS] and [SEP] included, as sentence-transformers does),
L2-normalised. Windowed pooling, never truncation: a text longer than
`max_tokens` is cut into windows of `max_tokens - 2` content tokens, each
starting half a window after the previous one (the last one ends at the
text's end), each embedded with its own [CLS] and [SEP]; the text's vector is
the mean over every token position of every window, then L2-normalised. A
text that fits gets exactly the single-call embedding.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from indexer.batching import MicroBatcher
from indexer.errors import NotReady
from indexer.onnx_session import bert_tokenizer, open_session, padded

Vector = npt.NDArray[np.float32]
# Tokenizing this many characters takes long enough to leave the event loop for.
_INLINE_TOKENIZE_CHARS = 8192


class OnnxEmbedder:
    """`indexer.embedder.Embedder` over one ONNX model directory.

    Concurrent `embed` calls share model calls through a MicroBatcher
    (length-sorted batches of at most `max_batch_tokens` padded tokens, at most
    `max_padding` of them padding, the first input waiting at most
    `max_wait_s`); inference runs in a worker thread. On CPU padding is pure
    waste, so a few length-homogeneous calls beat one padded call.
    `threads` is ONNX Runtime's intra-op thread count (default: every core);
    one model call runs at a time, so that is all the CPU it takes.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        max_batch_tokens: int = 8192,
        max_batch_size: int = 128,
        max_wait_s: float = 0.002,
        max_padding: float = 0.1,
    ) -> None:
        directory = Path(model_dir)
        self.model_dir = directory
        missing = [
            n
            for n in ("model.onnx", "tokenizer.json", "config.json")
            if not (directory / n).is_file()
        ]
        if missing:
            raise NotReady(
                f"no embedding model in {directory} (missing {', '.join(missing)}): "
                "run `infergate model fetch`"
            )
        self._tokenizer, self._cls, self._sep, self._pad = bert_tokenizer(directory)
        config = json.loads((directory / "config.json").read_text())
        self._dimensions = int(config["hidden_size"])
        self._max_tokens = _max_tokens(directory, config)
        self._session = open_session(directory / "model.onnx", providers, threads)
        self._inputs = {i.name for i in self._session.get_inputs()}
        if "last_hidden_state" not in {o.name for o in self._session.get_outputs()}:
            raise NotReady(f"{directory}/model.onnx has no last_hidden_state output")
        self.providers = self._session.get_providers()
        self.inference_calls = 0  # model calls so far, for tests and metrics
        self.inference_rows = 0  # windows embedded so far
        self._batcher: MicroBatcher[list[int], tuple[Vector, int]] = MicroBatcher(
            self._infer,
            max_batch_tokens=max(max_batch_tokens, self._max_tokens),
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            max_padding=max_padding,
            thread_name="onnx-embedder",
        )

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_batch_size(self) -> int:
        """Windows one model call may take: batch occupancy's denominator."""
        return self._batcher.max_batch_size

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised float32 row per text, in order (shape [len(texts),
        dimensions]). Idempotent. Cancelling the caller drops its texts that have
        not reached the model yet; no deadline of its own (wrap it in
        asyncio.timeout). Long texts are pooled over windows (module docstring)."""
        vectors, _ = await self.embed_counted(texts)
        return vectors

    async def embed_counted(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], int]:
        """`embed`, plus the number of tokens the model processed for them."""
        if not texts:
            return np.zeros((0, self._dimensions), np.float32), 0
        if sum(len(t) for t in texts) > _INLINE_TOKENIZE_CHARS:
            windows = await asyncio.to_thread(self.windows, texts)
        else:
            windows = self.windows(texts)
        flat = [(w, len(w)) for per_text in windows for w in per_text]
        pooled = await self._batcher.submit(flat)
        vectors = np.empty((len(texts), self._dimensions), np.float32)
        position = 0
        for row, per_text in enumerate(windows):
            parts = pooled[position : position + len(per_text)]
            position += len(per_text)
            total = np.sum([s for s, _ in parts], axis=0)
            vectors[row] = total / sum(count for _, count in parts)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, 1e-12)
        return vectors, sum(count for _, count in flat)

    def windows(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Per text, the token id windows (with [CLS]/[SEP]) that the model sees."""
        size = self._max_tokens - 2
        out: list[list[list[int]]] = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False):
            ids = encoding.ids
            starts = [0]
            if len(ids) > size:
                starts = [*range(0, len(ids) - size, max(1, size // 2)), len(ids) - size]
            out.append([[self._cls, *ids[s : s + size], self._sep] for s in starts])
        return out

    async def aclose(self) -> None:
        """Fails callers still waiting with BatcherClosed; idempotent."""
        await self._batcher.aclose()

    def _infer(self, windows: list[list[int]]) -> list[tuple[Vector, int]]:
        """One model call (worker thread): per window, the sum of its hidden
        states and its token count."""
        self.inference_calls += 1
        self.inference_rows += len(windows)
        ids, mask = padded(windows, self._pad)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        sums = np.einsum("bsh,bs->bh", hidden, mask.astype(np.float32))
        return [(sums[row], len(window)) for row, window in enumerate(windows)]


def _max_tokens(directory: Path, config: dict[str, object]) -> int:
    """sentence_bert_config's max_seq_length, never beyond the position table."""
    positions = int(str(config["max_position_embeddings"]))
    sentence_config = directory / "sentence_bert_config.json"
    if sentence_config.is_file():
        return min(positions, int(json.loads(sentence_config.read_text())["max_seq_length"]))
    return positions
