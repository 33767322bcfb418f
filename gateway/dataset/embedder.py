"""The Dataset layer's embedder and reranker, as the config picks them, and the
`Datasets` over them.

A missing model does not stop the gateway: the Dataset service then answers
FAILED_PRECONDITION naming the command that fetches the model (for the
reranker: what is missing, on a search that asks to rerank).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from gateway.dataset.config import DEFAULT_MODEL, DatasetConfig
from indexer.datasets import NO_RERANKER, Datasets
from indexer.embedder import Embedder
from indexer.errors import NotReady
from indexer.params import Settings
from router.router import Router

if TYPE_CHECKING:  # onnxruntime loads with a configured model, not at import
    from indexer.rerank import Reranker

log = logging.getLogger("infergate")


class RouterEmbedder:
    """`Embedder` over one of this gateway's model aliases (Triton or any remote
    embedding deployment), with the model's tokenizer loaded locally so the
    chunker counts the model's own tokens. `router` returns the current config
    snapshot, so a hot reload is followed. Idempotent; cancellation is the
    router's (the pending upstream call is cancelled)."""

    def __init__(
        self,
        router: Callable[[], Router],
        model: str,
        tokenizer: Path,
        dimensions: int,
        max_tokens: int,
    ) -> None:
        self._router = router
        self._model = model
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise NotReady(f"cannot read the tokenizer {tokenizer}: {exc}") from exc
        self._dimensions = dimensions
        self._max_tokens = max_tokens

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        routed = await self._router().embed(self._model, list(texts))
        vectors = np.asarray(routed.embeddings.vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self._dimensions):
            raise NotReady(
                f"model {self._model!r} returned vectors of shape {vectors.shape}; "
                f"the dataset config says {self._dimensions} dimensions"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: npt.NDArray[np.float32] = vectors / norms
        return normalised

    async def aclose(self) -> None:
        pass


def model_dir(config: DatasetConfig, data_dir: Path) -> Path:
    return config.embedder.model_dir or data_dir / "models" / DEFAULT_MODEL


def build_datasets(config: DatasetConfig, data_dir: Path, router: Callable[[], Router]) -> Datasets:
    """The Datasets the gateway serves; with its embedder missing, one that
    answers every call with NotReady saying what to run."""
    settings = Settings(index=config.index, chunk=config.chunk, search=config.search)
    root = data_dir / "datasets"
    spec = config.embedder
    embedder: Embedder | None = None
    unavailable = ""
    try:
        if spec.kind == "router":
            assert spec.tokenizer is not None
            embedder = RouterEmbedder(
                router, spec.model, spec.tokenizer, spec.dimensions, spec.max_tokens
            )
            name = f"router:{spec.model}"
        else:
            from indexer.onnx_embedder import OnnxEmbedder

            directory = model_dir(config, data_dir)
            name = directory.name
            embedder = OnnxEmbedder(directory, threads=spec.threads)
    except Exception as exc:  # a missing or broken model must not stop the gateway
        unavailable = f"the Dataset service has no embedding model: {exc}"
        log.warning("%s", unavailable)
        name = ""
    reranker, reranker_unavailable = build_reranker(config)
    return Datasets(
        root, embedder, name, settings, unavailable,
        reranker=reranker, reranker_unavailable=reranker_unavailable,
    )  # fmt: skip


def build_reranker(config: DatasetConfig) -> tuple[Reranker | None, str]:
    """The configured reranker, or None and why there is none."""
    spec = config.reranker
    if spec.kind == "none":
        return None, NO_RERANKER
    try:
        from indexer.rerank import OnnxCrossEncoder

        assert spec.model_dir is not None
        return OnnxCrossEncoder(
            spec.model_dir, threads=spec.threads, max_tokens=spec.max_tokens
        ), ""
    except Exception as exc:  # a missing or broken model must not stop the gateway
        unavailable = f"the Dataset service has no reranker: {exc}"
        log.warning("%s", unavailable)
        return None, unavailable
