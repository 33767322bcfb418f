"""The GPU path, checked on a lent GPU machine in under 5 minutes (issue 18, part 6).

    bash bench/gpu_check.sh          # or: python3 -m bench.gpu_check [--seconds 20]

That machine has no network and only what travels with the working tree (at
most 64 MiB), so no model and no wheel can be fetched there: the model is
all-MiniLM-L6-v2's *shape* (6 layers, hidden 384, 12 heads, 1,536 inner,
30,522 words) with seeded random weights, built on the spot — throughput does
not depend on the weights. What runs depends on what the machine has:

- ONNX Runtime with CUDAExecutionProvider and this project's indexer
  dependencies (numpy, onnx, tokenizers): the graph `infergate model fetch`
  writes (indexer.minilm.bert_graph), embedded through `OnnxEmbedder` on CUDA
  and on CPU: texts/s at concurrency 1 and 64 (micro-batched).
- PyTorch with CUDA (the reference the issue asks for when ONNX Runtime's CUDA
  provider cannot be brought there): the same shape as a torch encoder, texts/s
  per batch size, fp32 and fp16.
- NVML (nvidia-ml-py): each device's name, utilisation and memory, as
  gateway/gpu.py exports them.

Prints one JSON document; a missing piece is a line saying why, never a
failure. Nothing here runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPE = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
         "num_attention_heads": 12, "intermediate_size": 1536,
         "max_position_embeddings": 512}  # fmt: skip
TOKENS = 64  # per text: a short paragraph


def _have(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # an absent or broken module is a finding, not a failure
        return f"{type(exc).__name__}: {exc}"


def nvml() -> dict[str, Any]:
    pynvml = _have("pynvml")
    if isinstance(pynvml, str):
        return {"skipped": pynvml}
    try:
        pynvml.nvmlInit()
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append({
                "name": pynvml.nvmlDeviceGetName(handle),
                "utilization_percent": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                "memory_used_bytes": memory.used, "memory_total_bytes": memory.total,
            })  # fmt: skip
        return {"devices": devices}
    except Exception as exc:
        return {"skipped": f"NVML: {exc}"}


def _random_weights(seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    h, inner = SHAPE["hidden_size"], SHAPE["intermediate_size"]

    def normal(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(SHAPE["vocab_size"], h),
        "embeddings.position_embeddings.weight": normal(SHAPE["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": normal(2, h),
        "embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(h, np.float32),
    }
    dense = {"attention.self.query": (h, h), "attention.self.key": (h, h),
             "attention.self.value": (h, h), "attention.output.dense": (h, h),
             "intermediate.dense": (inner, h), "output.dense": (h, inner)}  # fmt: skip
    for layer in range(SHAPE["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}."
        for name, shape in dense.items():
            weights[f"{prefix}{name}.weight"] = normal(*shape)
            weights[f"{prefix}{name}.bias"] = normal(shape[0])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{prefix}{norm}.weight"] = np.ones(h, np.float32)
            weights[f"{prefix}{norm}.bias"] = np.zeros(h, np.float32)
    return weights


def _model_dir(into: Path) -> Path:
    """A MiniLM-shaped model directory OnnxEmbedder opens (random weights)."""
    import onnx
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from indexer.minilm import BertConfig, bert_graph

    config = BertConfig(**SHAPE)
    onnx.save(bert_graph(_random_weights(), config), str(into / "model.onnx"))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({f"w{i}": i for i in range(4, SHAPE["vocab_size"])})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(into / "tokenizer.json"))
    (into / "config.json").write_text(json.dumps({"model_type": "bert", **SHAPE}))
    (into / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    return into


def onnx_runtime(seconds: float) -> dict[str, Any]:
    ort = _have("onnxruntime")
    if isinstance(ort, str):
        return {"skipped": ort}
    found: dict[str, Any] = {"version": ort.__version__,
                             "providers": ort.get_available_providers()}  # fmt: skip
    for needed in ("numpy", "onnx", "tokenizers"):
        if isinstance(missing := _have(needed), str):
            return {**found, "skipped": missing}
    from indexer.onnx_embedder import OnnxEmbedder

    texts = [" ".join(f"w{(i * 7 + j) % 30000 + 4}" for j in range(TOKENS - 2)) for i in range(512)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = _model_dir(Path(tmp))
        for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
            if provider not in found["providers"]:
                found[provider] = "not available"
                continue
            embedder = OnnxEmbedder(directory, providers=[provider])
            found[provider] = asyncio.run(_embed_rates(embedder, texts, seconds))
    return found


async def _embed_rates(embedder: Any, texts: list[str], seconds: float) -> dict[str, float]:
    await embedder.embed(texts[:8])  # session warm-up (CUDA: kernels, allocator)
    rates = {}
    for concurrency in (1, 64):
        until = time.perf_counter() + seconds / 2
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(_caller(embedder, texts, c, concurrency, until) for c in range(concurrency))
        )
        rate = sum(counts) / (time.perf_counter() - started)
        rates[f"texts_per_s_c{concurrency}"] = round(rate, 1)
    await embedder.aclose()
    return rates


async def _caller(embedder: Any, texts: list[str], first: int, step: int, until: float) -> int:
    """One text per call, back to back, until `until`: how many were embedded."""
    done, i = 0, first
    while time.perf_counter() < until:
        await embedder.embed([texts[i % len(texts)]])
        done, i = done + 1, i + step
    return done


def torch_reference(seconds: float) -> dict[str, Any]:
    torch = _have("torch")
    if isinstance(torch, str):
        return {"skipped": torch}
    found: dict[str, Any] = {"version": torch.__version__, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        return {**found, "skipped": "no CUDA device visible to torch"}
    found["device"] = torch.cuda.get_device_name(0)
    h = SHAPE["hidden_size"]
    layer = torch.nn.TransformerEncoderLayer(
        h, SHAPE["num_attention_heads"], SHAPE["intermediate_size"], activation="gelu",
        batch_first=True,
    )  # fmt: skip
    encoder = (
        torch.nn.Sequential(
            torch.nn.Embedding(SHAPE["vocab_size"], h),
            torch.nn.TransformerEncoder(
                layer, SHAPE["num_hidden_layers"], enable_nested_tensor=False
            ),
        )
        .cuda()
        .eval()
    )
    for dtype in (torch.float32, torch.float16):
        model = encoder.to(dtype)
        for batch in (1, 32, 128):
            ids = torch.randint(4, SHAPE["vocab_size"], (batch, TOKENS), device="cuda")
            with torch.inference_mode():
                model(ids)
                torch.cuda.synchronize()
                runs, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds / 6:
                    model(ids).mean(dim=1)
                    runs += 1
                torch.cuda.synchronize()
            rate = runs * batch / (time.perf_counter() - started)
            found[f"{str(dtype).removeprefix('torch.')}_batch{batch}_texts_per_s"] = round(rate, 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="per engine (CUDA, CPU, torch)")
    args = parser.parse_args()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(), "machine": platform.machine(),
        "tokens_per_text": TOKENS, "model": "all-MiniLM-L6-v2 shape, random weights",
        "nvml": nvml(),
        "onnxruntime": onnx_runtime(args.seconds),
        "torch": torch_reference(args.seconds),
    }  # fmt: skip
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
