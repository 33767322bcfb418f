"""The `dataset` section of the gateway config: which embedder, reranker, index and
chunk settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from indexer.params import ChunkParams, IndexParams, SearchParams
from router.config import Frozen

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class EmbedderConfig(Frozen):
    """`onnx`: a local model directory (default `{data_dir}/models/all-MiniLM-L6-v2`,
    made by `infergate model fetch`). `router`: a model alias of this gateway
    (e.g. a Triton deployment), with the model's tokenizer.json for chunking."""

    kind: Literal["onnx", "router"] = "onnx"
    model_dir: Path | None = Field(default=None, description="onnx: default under data_dir")
    model: str = Field(default="", description="router: the embedding model alias")
    tokenizer: Path | None = Field(default=None, description="router: the model's tokenizer.json")
    dimensions: int = Field(default=0, ge=0, description="router: the vectors' size")
    max_tokens: int = Field(default=256, ge=16, description="router: the model's longest input")
    threads: int | None = Field(default=None, ge=1, description="onnx: intra-op threads")

    @model_validator(mode="after")
    def _router_needs(self) -> EmbedderConfig:
        if self.kind == "router":
            missing = [
                name
                for name, value in (
                    ("model", self.model), ("tokenizer", self.tokenizer),
                    ("dimensions", self.dimensions),
                )
                if not value
            ]  # fmt: skip
            if missing:
                raise ValueError(f"a router embedder needs {', '.join(missing)}")
        return self


class RerankerConfig(Frozen):
    """The cross-encoder that `Search` with `rerank` uses. `none` (the default):
    such a search answers FAILED_PRECONDITION. `onnx`: a local model directory
    (model.onnx, tokenizer.json; see indexer.rerank); a missing or broken one
    does not stop the gateway, the search then answers FAILED_PRECONDITION
    saying what is wrong."""

    kind: Literal["none", "onnx"] = "none"
    model_dir: Path | None = Field(default=None, description="onnx: the model directory")
    threads: int | None = Field(default=None, ge=1, description="onnx: intra-op threads")
    max_tokens: int = Field(
        default=512, ge=8, le=8192, description="the longest query + passage pair, in tokens"
    )

    @model_validator(mode="after")
    def _onnx_needs_a_model(self) -> RerankerConfig:
        if self.kind == "onnx" and self.model_dir is None:
            raise ValueError("an onnx reranker needs model_dir")
        return self


class SnapshotConfig(Frozen):
    """S3 credentials come from the usual AWS chain (environment, ~/.aws)."""

    bucket: str = Field(min_length=1)
    prefix: str = Field(default="datasets/", pattern=r"^(.*/)?$", description="ends with /")
    endpoint_url: str | None = Field(default=None, description="an S3-compatible server")
    region: str = "us-east-1"
    load_at_start: bool = Field(
        default=True, description="an empty datasets directory loads the latest snapshot"
    )


class DatasetConfig(Frozen):
    enabled: bool = Field(
        default=True,
        description="false: the Dataset RPCs answer UNIMPLEMENTED and no dataset is opened",
    )
    embedder: EmbedderConfig = EmbedderConfig()
    reranker: RerankerConfig = RerankerConfig()
    index: IndexParams = IndexParams()
    chunk: ChunkParams = ChunkParams()
    search: SearchParams = SearchParams()
    snapshot_interval_s: float = Field(
        default=30, ge=0, description="how often changed indexes are saved (0: only at stop)"
    )
    snapshots: SnapshotConfig | None = Field(
        default=None, description="S3-compatible object storage for dataset snapshots"
    )
    # Matches rest.max_upload_bytes: a gRPC stream has no total size of its own.
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="IngestFile: the largest file accepted"
    )
