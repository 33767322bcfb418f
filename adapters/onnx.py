"""Local models in ONNX Runtime, as a Provider: embeddings
(indexer.onnx_embedder) and reranking with a cross-encoder (indexer.rerank).

No chat: generate and stream fail with BAD_REQUEST. A deployment serves
Embed when it names `model_dir`, Rerank when it names `cross_encoder_dir`
(either or both); the other answers UNIMPLEMENTED. `probe()` runs one short
input through each model it has. The models load when the deployment is built,
so a missing model directory is a config error naming it (run `infergate
model fetch` for the embedder).

Deployment options:

    model_dir: data/models/all-MiniLM-L6-v2   # a converted embedding model directory
    cross_encoder_dir: data/models/reranker   # a cross-encoder directory (indexer.rerank)
    threads: 2                  # ONNX Runtime intra-op threads (default: every core)
    max_batch_tokens: 8192      # padded tokens per model call
    max_wait_s: 0.002           # how long a first input waits for company
    max_padding: 0.1            # most of a batch that may be padding
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.trace import Span, SpanKind
from pydantic import Field

from adapters._options import parse_options
from indexer.batching import BatcherClosed
from indexer.errors import NotReady
from indexer.onnx_embedder import OnnxEmbedder
from indexer.rerank import OnnxCrossEncoder
from router import spans
from router.config import Frozen
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import Chunk, Embeddings, Ranking, Request, Response, Usage, ranked

VENDOR = "onnx"


class OnnxSettings(Frozen):
    model_dir: Path | None = None
    cross_encoder_dir: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=256)
    max_batch_tokens: int = Field(default=8192, ge=1)
    max_wait_s: float = Field(default=0.002, ge=0, le=1)
    max_padding: float = Field(default=0.1, ge=0, le=1)


class OnnxProvider(Provider):
    """One local embedding model and/or cross-encoder; concurrent calls share
    model calls."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = settings = parse_options(OnnxSettings, options, VENDOR)
        if settings.model_dir is None and settings.cross_encoder_dir is None:
            raise ValueError(
                f"{VENDOR}: options.model_dir (embeddings) or options.cross_encoder_dir "
                "(rerank) is required"
            )
        self.embedder = _loaded(OnnxEmbedder, settings.model_dir, "model_dir", settings)
        self.cross_encoder = _loaded(
            OnnxCrossEncoder, settings.cross_encoder_dir, "cross_encoder_dir", settings
        )

    async def generate(self, request: Request, deadline: float | None) -> Response:
        raise self._embedding_only()

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        raise self._embedding_only()
        yield Chunk()  # pragma: no cover - makes this an async generator

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Idempotent; cancelling drops the texts not yet computed. No deadline of
        its own: the router's attempt timeout cancels it."""
        embedder = self.embedder
        if embedder is None:
            raise self._lacks("an embedding model", "model_dir")
        attributes = {"infergate.texts": len(texts)}
        with _inference(attributes) as span:
            vectors, tokens = await embedder.embed_counted(texts)
            span.set_attribute("infergate.tokens", tokens)
        return Embeddings(vectors.tolist(), Usage(input_tokens=tokens))

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """The cross-encoder's logit per (query, document); idempotent.
        Cancelling drops the pairs not yet computed; the deadline is left to
        the router's attempt timeout, as for embed."""
        encoder = self.cross_encoder
        if encoder is None:
            raise self._lacks("a cross-encoder", "cross_encoder_dir")
        with _inference({"infergate.documents": len(documents)}):
            scores = await encoder.score(query, documents)
        return Ranking(ranked(scores, top_n), Usage())

    async def probe(self) -> None:
        if self.embedder is not None:
            await self.embed(["probe"])
        if self.cross_encoder is not None:
            await self.rerank("probe", ["probe"], 0, None)

    def upstream_body(self, request: Request) -> bytes:
        return b""  # a local model: nothing is sent

    def upstream_request(self, request: Request) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_dir": str(self.settings.model_dir or ""),
            "cross_encoder_dir": str(self.settings.cross_encoder_dir or ""),
            "refused": "embedding and rerank only: generate and stream are not served",
        }

    async def aclose(self) -> None:
        if self.embedder is not None:
            await self.embedder.aclose()
        if self.cross_encoder is not None:
            await self.cross_encoder.aclose()

    def _lacks(self, what: str, option: str) -> ProviderError:
        return ProviderError(
            ErrorKind.UNIMPLEMENTED,
            f"{VENDOR} deployment {self.model!r} has no {what} (options.{option})",
        )

    def _embedding_only(self) -> ProviderError:
        return ProviderError(
            ErrorKind.BAD_REQUEST,
            f"{VENDOR} deployment {self.model!r} is embedding-only: use Embed or Rerank",
        )


M = TypeVar("M", OnnxEmbedder, OnnxCrossEncoder)


def _loaded(load: type[M], directory: Path | None, option: str, settings: OnnxSettings) -> M | None:
    if directory is None:
        return None
    try:
        return load(
            directory,
            threads=settings.threads,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_s=settings.max_wait_s,
            max_padding=settings.max_padding,
        )
    except NotReady as exc:
        raise ValueError(f"{VENDOR}: options.{option}: {exc}") from None


@contextlib.contextmanager
def _inference(attributes: spans.Attributes) -> Iterator[Span]:
    """One local model call: its span (in-process: no one to propagate the trace
    to), and its failures as router errors."""
    try:
        with spans.upstream(attributes, kind=SpanKind.INTERNAL) as span:
            yield span
    except BatcherClosed as exc:
        raise ProviderError(ErrorKind.UNAVAILABLE, f"{VENDOR}: {exc}") from exc
    except ProviderError:
        raise
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ProviderError(ErrorKind.UPSTREAM_5XX, f"{VENDOR}: inference failed: {exc}") from exc
