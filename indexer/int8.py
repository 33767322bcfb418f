"""An int8 copy of a converted embedding model: about twice the embeddings per
second on CPU for a small, measured change in its vectors.

`infergate model fetch --int8` writes `{data_dir}/models/all-MiniLM-L6-v2-int8`
beside the float model; `dataset.embedder.model_dir` pointed at it selects it.
ONNX Runtime's dynamic quantization: weights int8 per output channel,
activations quantized per call; the float graph's fused Attention becomes
QAttention (indexer/minilm.py). The directory name is the collection's
`embedding_model`, so a collection embedded with one model is never searched
with the other's vectors: the Dataset service answers FAILED_PRECONDITION and
names the model the collection was embedded with.

Verified like the float model: the mean-pooled, normalised vectors of sample
texts from both models must agree to a cosine of at least MIN_COSINE, else
ConversionError; verified.json records the lowest cosine and the float
model's sha256, and a changed float model makes the copy stale.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto
from onnxruntime.quantization import QuantType, quantize_dynamic

from indexer.minilm import (
    MARKER,
    ConversionError,
    file_sha256,
    is_verified,
    last_hidden_state,
    staged,
)

log = logging.getLogger("infergate.indexer")

SUFFIX = "-int8"
MIN_COSINE = 0.97
_COPIED = ("tokenizer.json", "config.json", "sentence_bert_config.json")
_SAMPLES = (
    "A gateway routes requests to many model backends and retries on failure.",
    "Embeddings turn text into vectors that a nearest-neighbour index can search.",
    "The quota for this key is exceeded: ERR_QUOTA_4291, retry after one minute.",
    "Vitamin D deficiency is common in patients with chronic kidney disease.",
    "hello",
    "Set max_concurrent_streams to bound how many calls one connection carries.",
)


def int8_dir(float_dir: Path) -> Path:
    return float_dir.with_name(float_dir.name + SUFFIX)


def is_current(target: Path, source: Path) -> bool:
    """Whether `target` is a verified int8 copy of the float model in `source` as it is now."""
    if not is_verified(target):
        return False
    marker = json.loads((target / MARKER).read_text())
    return bool(marker.get("quantized_from") == file_sha256(source / "model.onnx"))


def quantize(source: Path, target: Path) -> Path:
    """Write the verified int8 copy of the model directory `source` at
    `target`, replacing a previous one only once the new one has passed."""
    with staged(target) as (staging, marker):
        for name in _COPIED:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        with _quiet_quantizer():
            # A loaded model, not its path: given a path, the quantizer writes its
            # shape-inferred copy beside the input (the live float model's directory).
            quantize_dynamic(
                onnx.load(source / "model.onnx"), staging / "model.onnx",
                weight_type=QuantType.QInt8, per_channel=True,
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )  # fmt: skip
        cosine = lowest_cosine(source, staging, _SAMPLES)
        if cosine < MIN_COSINE:
            raise ConversionError(
                f"{target}: the int8 model's vectors differ from the float model's "
                f"(lowest cosine {cosine:.4f}, at least {MIN_COSINE} needed)"
            )
        marker.update(
            quantized_from=file_sha256(source / "model.onnx"),
            min_cosine=cosine,
            reference=f"the float model in {source.name}, on {len(_SAMPLES)} sample texts",
        )
    log.info("quantized %s to %s (lowest cosine %.4f)", source, target, cosine)
    return target


def lowest_cosine(first: Path, second: Path, texts: Sequence[str]) -> float:
    """The lowest cosine between the two model directories' sentence vectors of `texts`."""
    a, b = (_sentence_vectors(d, texts) for d in (first, second))
    return float(np.min(np.sum(a * b, axis=1)))


def _sentence_vectors(directory: Path, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Mean-pooled, L2-normalised vectors (texts short enough for one window)."""
    hidden, _, mask = last_hidden_state(directory, texts)
    sums = np.einsum("bsh,bs->bh", hidden, mask.astype(np.float32))
    vectors = sums / mask.sum(axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice to run its shape pre-processing on the root
    logger; this graph's shapes are already known, so the advice is noise."""
    advice = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)
