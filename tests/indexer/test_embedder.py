"""OnnxEmbedder on the tiny test model: pooling and normalisation against a
numpy reference, windowed long inputs, micro-batching through the real
ONNX Runtime session, cancellation, error propagation and close."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from safetensors.numpy import load_file

from indexer.batching import BatcherClosed
from indexer.embedder import Embedder
from indexer.errors import NotReady
from indexer.minilm import BertConfig, reference_forward
from indexer.onnx_embedder import OnnxEmbedder
from indexer.onnx_session import default_providers

TEXTS = ["cats chase mice", "Dogs chase CATS!", "the weather is cold in winter", ""]


@pytest.fixture
async def embedder(tiny_model: Path) -> AsyncIterator[OnnxEmbedder]:
    embedder = OnnxEmbedder(tiny_model, threads=1)
    yield embedder
    await embedder.aclose()


def reference_pooled(tiny_model: Path, windows: list[list[int]]) -> npt.NDArray[np.float64]:
    """Mean over every token of every window through the numpy forward pass, L2-normalised."""
    checkpoint = tiny_model.parent / "checkpoint"
    weights = load_file(checkpoint / "model.safetensors")
    config = BertConfig.from_file(checkpoint / "config.json")
    total = np.zeros(config.hidden_size)
    count = 0
    for window in windows:
        ids = np.array([window], np.int64)
        hidden = reference_forward(weights, config, ids, np.ones_like(ids), np.zeros_like(ids))
        total += hidden[0].sum(0)
        count += len(window)
    mean = total / count
    return mean / np.linalg.norm(mean)


def test_it_is_an_embedder(embedder: OnnxEmbedder) -> None:
    typed: Embedder = embedder
    assert (typed.dimensions, typed.max_tokens) == (64, 64)
    assert typed.tokenizer.encode("cats chase mice", add_special_tokens=False).tokens == [
        "cats",
        "chase",
        "mice",
    ]
    assert "CPUExecutionProvider" in embedder.providers
    assert default_providers()[-1] == "CPUExecutionProvider"


async def test_vectors_match_the_numpy_reference(embedder: OnnxEmbedder, tiny_model: Path) -> None:
    vectors = await embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    for text, vector in zip(TEXTS, vectors, strict=True):
        (windows,) = embedder.windows([text])
        assert windows[0][0] == embedder.tokenizer.token_to_id("[CLS]")
        np.testing.assert_allclose(vector, reference_pooled(tiny_model, windows), atol=1e-5)


async def test_padding_in_a_batch_does_not_change_a_vector(embedder: OnnxEmbedder) -> None:
    alone = await embedder.embed(["cats chase mice"])
    padded = await embedder.embed(["cats chase mice", " ".join(["music"] * 50)])
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


async def test_texts_sharing_words_are_closer(embedder: OnnxEmbedder) -> None:
    cats, dogs, weather, pizza = await embedder.embed(
        ["cats chase mice", "dogs chase cats", "cold winter weather", "pizza with cheese"]
    )
    assert cats @ dogs > cats @ weather + 0.2
    assert cats @ dogs > cats @ pizza + 0.2


async def test_long_text_is_pooled_over_windows(embedder: OnnxEmbedder, tiny_model: Path) -> None:
    words = ["quizzical", "zebra", "xylophone"] * 12 + ["cats"] * 30  # letters: many tokens
    text = " ".join(words)
    content = embedder.tokenizer.encode(text, add_special_tokens=False).ids
    assert len(content) > 3 * embedder.max_tokens
    (windows,) = embedder.windows([text])
    assert all(len(w) <= embedder.max_tokens for w in windows)
    assert windows[0][1:-1] == content[: embedder.max_tokens - 2]
    assert windows[-1][1:-1] == content[-(embedder.max_tokens - 2) :]  # nothing dropped
    size = embedder.max_tokens - 2
    starts = [*range(0, len(content) - size, size // 2), len(content) - size]  # the docstring's
    assert [w[1:-1] for w in windows] == [content[s : s + size] for s in starts]
    (vector,) = await embedder.embed([text])
    np.testing.assert_allclose(vector, reference_pooled(tiny_model, windows), atol=1e-5)


async def test_concurrent_calls_share_one_inference_call(tiny_model: Path) -> None:
    embedder = OnnxEmbedder(tiny_model, threads=1, max_wait_s=0.05)
    texts = [f"cats number {i} chase mice" for i in range(32)]
    singles = await asyncio.gather(*(embedder.embed([t]) for t in texts))
    assert embedder.inference_calls == 1
    together = await embedder.embed(texts)
    np.testing.assert_allclose(np.vstack(singles), together, atol=1e-5)
    await embedder.aclose()


async def test_the_token_budget_splits_batches(tiny_model: Path) -> None:
    embedder = OnnxEmbedder(tiny_model, threads=1, max_batch_tokens=64, max_wait_s=0.05)
    await asyncio.gather(*(embedder.embed([f"cats {i % 10}"]) for i in range(40)))
    assert embedder.inference_calls == 3  # 4 tokens a row: 16 + 16 + 8 rows
    await embedder.aclose()


async def test_a_cancelled_caller_drops_its_waiting_texts(tiny_model: Path) -> None:
    embedder = OnnxEmbedder(tiny_model, threads=1, max_batch_size=4, max_wait_s=0)
    busy = asyncio.create_task(embedder.embed([" ".join(["music"] * 60)] * 400))
    for _ in range(5000):  # until busy's texts are queued and running
        if embedder.inference_calls:
            break
        await asyncio.sleep(0.001)
    doomed = asyncio.create_task(embedder.embed(["cats chase mice"] * 5))
    await asyncio.sleep(0)
    waiting = embedder._batcher.waiting
    doomed.cancel()
    await asyncio.sleep(0)
    assert embedder._batcher.waiting == waiting - 5
    vectors = await busy
    assert vectors.shape == (400, 64)
    assert embedder.inference_rows == 400  # the cancelled caller's texts never ran
    await embedder.aclose()


def poisoned_model(tiny_model: Path, tmp_path: Path) -> Path:
    """A copy whose tokenizer knows one word more than the model's embedding
    table: a batch holding it fails inside ONNX Runtime."""
    copy = tmp_path / "poisoned"
    shutil.copytree(tiny_model, copy)
    raw = json.loads((copy / "tokenizer.json").read_text())
    raw["model"]["vocab"]["poison"] = len(raw["model"]["vocab"]) + 1000
    (copy / "tokenizer.json").write_text(json.dumps(raw))
    return copy


async def test_a_failed_batch_fails_only_its_callers(tiny_model: Path, tmp_path: Path) -> None:
    model = poisoned_model(tiny_model, tmp_path)
    alone = OnnxEmbedder(model, threads=1, max_batch_size=1, max_wait_s=0.05)
    results = await asyncio.gather(
        alone.embed(["poison"]), alone.embed(["cats"]), return_exceptions=True
    )
    assert isinstance(results[0], Exception) and "poison" not in repr(results[1])
    assert isinstance(results[1], np.ndarray) and results[1].shape == (1, 64)
    await alone.aclose()
    shared = OnnxEmbedder(model, threads=1, max_wait_s=0.05)
    results = await asyncio.gather(
        shared.embed(["poison"]), shared.embed(["cats"]), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)  # one batch: both its callers
    assert (await shared.embed(["cats"])).shape == (1, 64)  # and the embedder goes on
    await shared.aclose()


async def test_close_fails_waiting_callers(tiny_model: Path) -> None:
    embedder = OnnxEmbedder(tiny_model, threads=1, max_wait_s=0.2)
    waiting = asyncio.create_task(embedder.embed(["cats"]))
    await asyncio.sleep(0.01)
    await embedder.aclose()
    with pytest.raises(BatcherClosed):
        await waiting
    with pytest.raises(BatcherClosed):
        await embedder.embed(["cats"])


async def test_no_texts_no_call(embedder: OnnxEmbedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, 64)
    assert embedder.inference_calls == 0


def test_a_missing_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match="infergate model fetch"):
        OnnxEmbedder(tmp_path)
