"""The int8 copy of a converted embedding model (indexer.int8), `infergate model
fetch --int8`, and the CPU session that runs the float and int8 graphs, all on
the tiny checkpoint (no download). bench/upsert.py measures the speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gateway.cli import main
from indexer import int8, minilm
from indexer.minilm import ConversionError, convert, model_dir
from indexer.onnx_embedder import OnnxEmbedder
from indexer.onnx_session import _SLOWER_ON_CPU, open_session
from indexer.testmodel import write_tiny_checkpoint

TEXTS = ["cats chase mice in the barn", "dogs chase cats", "the river floods the valley"]


@pytest.fixture
def float_model(tmp_path: Path) -> Path:
    checkpoint = write_tiny_checkpoint(tmp_path / "checkpoint")
    return convert(checkpoint, model_dir(tmp_path / "data"))


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


async def test_the_int8_copy_is_verified_and_embeds_like_the_float_model(
    float_model: Path,
) -> None:
    target = int8.quantize(float_model, int8.int8_dir(float_model))
    assert target.name == f"{minilm.MODEL_NAME}-int8"
    marker = json.loads((target / "verified.json").read_text())
    assert int8.MIN_COSINE <= marker["min_cosine"] <= 1.0 + 1e-6
    assert int8.is_current(target, float_model)
    assert {"QAttention", "MatMulInteger"} <= op_types(target / "model.onnx")
    assert "Attention" not in op_types(target / "model.onnx")  # every layer was quantized
    assert (target / "model.onnx").stat().st_size < (float_model / "model.onnx").stat().st_size
    for name in ("tokenizer.json", "config.json", "sentence_bert_config.json"):
        assert (target / name).read_bytes() == (float_model / name).read_bytes()

    embedders = [OnnxEmbedder(float_model), OnnxEmbedder(target)]
    exact, quantized = [await e.embed(TEXTS) for e in embedders]
    for embedder in embedders:
        await embedder.aclose()
    assert np.all(np.sum(exact * quantized, axis=1) >= int8.MIN_COSINE)
    # The copy keeps what the vectors mean: related texts stay closer than unrelated ones.
    assert quantized[0] @ quantized[1] > quantized[0] @ quantized[2]


def test_a_changed_float_model_makes_the_copy_stale(float_model: Path) -> None:
    target = int8.quantize(float_model, int8.int8_dir(float_model))
    model = onnx.load(str(float_model / "model.onnx"))
    model.doc_string = "converted again"
    onnx.save(model, str(float_model / "model.onnx"))
    assert minilm.is_verified(target) and not int8.is_current(target, float_model)
    assert not int8.is_current(float_model.with_name("absent"), float_model)


def test_a_copy_too_far_from_the_float_model_is_refused_and_the_previous_kept(
    float_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = int8.quantize(float_model, int8.int8_dir(float_model))
    before = (target / "model.onnx").read_bytes()
    monkeypatch.setattr(int8, "MIN_COSINE", 1.01)
    with pytest.raises(ConversionError, match=r"lowest cosine 0\.9\d+, at least 1\.01 needed"):
        int8.quantize(float_model, target)
    assert (target / "model.onnx").read_bytes() == before and int8.is_current(target, float_model)
    assert not list(target.parent.glob(".*partial*"))  # no staging left behind


def test_the_cli_writes_the_int8_copy_once(
    float_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    assert main(["model", "fetch", "--data-dir", str(data_dir), "--int8"]) == 0
    target = int8.int8_dir(float_model)
    assert capsys.readouterr().out.strip() == str(target)
    assert int8.is_current(target, float_model)
    stamp = (target / "model.onnx").stat().st_mtime_ns
    assert main(["model", "fetch", "--data-dir", str(data_dir), "--int8"]) == 0
    assert (target / "model.onnx").stat().st_mtime_ns == stamp  # current: left alone
    assert capsys.readouterr().out.strip() == str(target)


@pytest.mark.parametrize("fusion_off", [False, True])
def test_cpu_sessions_keep_the_slow_fused_kernels_out(
    float_model: Path, tmp_path: Path, fusion_off: bool
) -> None:
    """The optimizer names open_session disables still exist in this onnxruntime
    and still stop the fusions: an unknown name would be ignored silently. (On
    this tiny graph only the Gelu fusion fires; on all-MiniLM-L6-v2 both do.)"""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(
        str(float_model / "model.onnx"), options, providers=["CPUExecutionProvider"],
        disabled_optimizers=list(_SLOWER_ON_CPU) if fusion_off else [],
    )  # fmt: skip
    fused = op_types(tmp_path / "optimized.onnx") & {"SkipLayerNormalization", "BiasGelu"}
    assert fused == (set() if fusion_off else {"BiasGelu"})


@pytest.mark.parametrize(
    ("providers", "unfused"),
    [
        (["CPUExecutionProvider"], list(_SLOWER_ON_CPU)),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], []),  # CUDA's fused kernels are fast
    ],
)
def test_open_session_turns_the_fusions_off_on_cpu_only(
    float_model: Path, monkeypatch: pytest.MonkeyPatch, providers: list[str], unfused: list[str]
) -> None:
    seen: dict[str, object] = {}

    def session(path: str, options: object, **kwargs: object) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(ort, "InferenceSession", session)
    open_session(float_model / "model.onnx", providers, None)
    assert seen == {"providers": providers, "disabled_optimizers": unfused}
