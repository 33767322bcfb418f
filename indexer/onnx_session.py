"""What every ONNX Runtime model of the Dataset layer shares: the execution
providers, the session options and the BERT special-token lookup."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from indexer.errors import NotReady

_SLOWER_ON_CPU = ("SkipLayerNormFusion", "BiasGeluFusion")


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build and machine have it, then CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def open_session(
    path: Path, providers: Sequence[str] | None, threads: int | None
) -> ort.InferenceSession:
    """A session tuned for one model call at a time (a MicroBatcher's worker)."""
    options = ort.SessionOptions()
    # One call at a time: all cores inside the call, none spent between operators.
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: the event loop (and gRPC)
    # share these cores, and spinning steals them between model calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about shape merges are noise here
    chosen = list(providers or default_providers())
    # On CPU these two fused kernels are slower than the ops they replace
    # (SkipLayerNormalization 3.5x slower than Add + Add + LayerNormalization on
    # [16, 256, 384]; BiasGelu 1.3x slower than Add + Gelu): bench/RESULTS.md.
    unfused = [] if "CUDAExecutionProvider" in chosen else list(_SLOWER_ON_CPU)
    return ort.InferenceSession(str(path), options, providers=chosen, disabled_optimizers=unfused)


def bert_tokenizer(model_dir: Path) -> tuple[Tokenizer, int, int, int]:
    """`model_dir`'s tokenizer.json with no truncation and no padding (the
    caller counts and pads), and its [CLS], [SEP] and [PAD] ids ([PAD]: 0 if
    absent); NotReady without [CLS] or [SEP]."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls, sep = (special_token(tokenizer, t, model_dir) for t in ("[CLS]", "[SEP]"))
    return tokenizer, cls, sep, tokenizer.token_to_id("[PAD]") or 0


def special_token(tokenizer: Tokenizer, token: str, model_dir: Path) -> int:
    """The id of a BERT special token ([CLS], [SEP]); NotReady when the
    tokenizer has none."""
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise NotReady(f"{model_dir}/tokenizer.json has no {token} token (BERT-style expected)")
    return token_id


def padded(
    rows: Sequence[Sequence[int]], pad: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Token id rows padded to the longest, and their attention mask."""
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad, np.int64)
    mask = np.zeros((len(rows), longest), np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
