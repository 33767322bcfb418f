"""Reranking: a cross-encoder scores (query, passage) pairs read together.

The search stage (indexer.datasets) hands the reranker the retrieval's top
candidates and orders them by its scores. `OnnxCrossEncoder` runs a local
BERT-style cross-encoder in ONNX Runtime over a model directory:

- model.onnx: int64 inputs input_ids / attention_mask (and token_type_ids if
  the graph takes it) of shape [batch, sequence]; its first output holds one
  relevance logit per pair, shaped [batch] or [batch, 1];
- tokenizer.json: a BERT-style tokenizer with [CLS] and [SEP];
- config.json (optional): max_position_embeddings caps the pair length.

A pair is `[CLS] query [SEP] passage [SEP]` (token types 0 then 1), truncated
to `max_tokens` by trimming the longer of the two first, so a long passage
never crowds out a short query.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.batching import MicroBatcher
from indexer.errors import NotReady
from indexer.onnx_session import bert_tokenizer, open_session, padded

Pair = tuple[list[int], list[int]]  # token ids and token type ids
# Tokenizing this many characters takes long enough to leave the event loop for.
_INLINE_TOKENIZE_CHARS = 8192


class Reranker(Protocol):
    @property
    def model(self) -> str:
        """The model's name, for spans and logs."""
        ...

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, in order, higher meaning more relevant to
        `query`; scores of one model are comparable across calls. Idempotent.
        Cancelling the caller drops its pairs that have not reached the model
        yet; no deadline of its own (wrap it in asyncio.timeout)."""
        ...

    async def aclose(self) -> None:
        """Fails callers still waiting; idempotent."""
        ...


class OnnxCrossEncoder:
    """`Reranker` over one ONNX cross-encoder directory (module docstring).

    Concurrent `score` calls share model calls through a MicroBatcher, as
    `OnnxEmbedder` does; inference runs in a worker thread, one model call at
    a time, with `threads` intra-op threads (default: every core).
    `max_tokens` caps a pair's length (config.json may cap it lower).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        max_tokens: int = 512,
        max_batch_tokens: int = 8192,
        max_batch_size: int = 64,
        max_wait_s: float = 0.002,
        max_padding: float = 0.1,
    ) -> None:
        directory = Path(model_dir)
        self.model_dir = directory
        missing = [n for n in ("model.onnx", "tokenizer.json") if not (directory / n).is_file()]
        if missing:
            raise NotReady(f"no cross-encoder model in {directory} (missing {', '.join(missing)})")
        self._tokenizer, self._cls, self._sep, self._pad = bert_tokenizer(directory)
        self._max_tokens = min(max_tokens, _positions(directory))
        if self._max_tokens < 8:
            raise NotReady(f"{directory}: max_tokens {self._max_tokens} leaves no room for a pair")
        self._session = open_session(directory / "model.onnx", providers, threads)
        self._inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self._inputs:
            raise NotReady(f"{directory}/model.onnx lacks input_ids or attention_mask inputs")
        self._output = self._session.get_outputs()[0].name
        self.providers = self._session.get_providers()
        self.inference_calls = 0  # model calls so far, for tests and metrics
        self._batcher: MicroBatcher[Pair, float] = MicroBatcher(
            self._infer,
            max_batch_tokens=max(max_batch_tokens, self._max_tokens),
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            max_padding=max_padding,
            thread_name="onnx-cross-encoder",
        )

    @property
    def model(self) -> str:
        return self.model_dir.name

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        if len(query) + sum(len(t) for t in texts) > _INLINE_TOKENIZE_CHARS:
            pairs = await asyncio.to_thread(self.pairs, query, texts)
        else:
            pairs = self.pairs(query, texts)
        return await self._batcher.submit([(pair, len(pair[0])) for pair in pairs])

    def pairs(self, query: str, texts: Sequence[str]) -> list[Pair]:
        """The token ids and token types the model sees for each (query, text)."""
        budget = self._max_tokens - 3  # [CLS], [SEP], [SEP]
        question = self._tokenizer.encode(query, add_special_tokens=False).ids
        out: list[Pair] = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False):
            passage = encoding.ids
            # The longer side is trimmed first: the query keeps at least half.
            keep = min(len(question), max(budget // 2, budget - len(passage)))
            q, p = question[:keep], passage[: budget - keep]
            ids = [self._cls, *q, self._sep, *p, self._sep]
            out.append((ids, [0] * (len(q) + 2) + [1] * (len(p) + 1)))
        return out

    async def aclose(self) -> None:
        await self._batcher.aclose()

    def _infer(self, pairs: list[Pair]) -> list[float]:
        """One model call (worker thread): one logit per pair."""
        self.inference_calls += 1
        ids, mask = padded([ids for ids, _ in pairs], self._pad)
        types, _ = padded([types for _, types in pairs], 0)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        (logits,) = self._session.run([self._output], feeds)
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.shape != (len(pairs),):
            raise NotReady(
                f"{self.model_dir}/model.onnx returned logits of shape {logits.shape} for "
                f"{len(pairs)} pairs; a cross-encoder gives one per pair"
            )
        return [float(v) for v in logits]


def _positions(directory: Path) -> int:
    """config.json's max_position_embeddings; no limit without one."""
    config = directory / "config.json"
    if not config.is_file():
        return 1 << 30
    return int(json.loads(config.read_text()).get("max_position_embeddings", 1 << 30))
