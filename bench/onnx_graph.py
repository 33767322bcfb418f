"""One embedding model call, model directory against model directory, and the
CPU kernels behind the fusions `indexer.onnx_session.open_session` turns off.

    python -m bench.onnx_graph [--data-dir data] [--seconds 5] [--rounds 2]
                               [--models all-MiniLM-L6-v2,all-MiniLM-L6-v2-int8]

Models: a batch of 16 windows of 256 random token ids through a session made
by open_session (as the embedder makes it), windows/s, models alternating over
the rounds, each round's figure printed. Kernels, on [16, 256, 384] (the
LayerNorm) and [16, 256, 1536] (the Gelu) float32 inputs, each a one-node or
few-node graph at ORT_ENABLE_BASIC so that nothing is fused behind its back:
SkipLayerNormalization vs Add + Add + LayerNormalization, BiasGelu vs Add +
Gelu; milliseconds per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from indexer.onnx_session import open_session

_ORT = "com.microsoft"


def per_call_s(run: Callable[[], object], seconds: float) -> float:
    run()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run()
        calls += 1
    return (time.perf_counter() - started) / calls


def model_calls(directory: Path, seconds: float, batch: int = 16, tokens: int = 256) -> float:
    session = open_session(directory / "model.onnx", ["CPUExecutionProvider"], None)
    ids = np.random.default_rng(0).integers(1000, 30000, (batch, tokens)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    feeds["token_type_ids"] = np.zeros_like(ids)
    return batch / per_call_s(lambda: session.run(["last_hidden_state"], feeds), seconds)


def kernel_ms(nodes: list[object], width: int, inputs: list[str], seconds: float) -> float:
    zeros = numpy_helper.from_array(np.zeros(width, np.float32), "zeros")
    ones = numpy_helper.from_array(np.ones(width, np.float32), "ones")
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", width]) for n in inputs]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", width])
    graph = helper.make_graph(nodes, "kernel", info, [out], [zeros, ones])  # type: ignore[arg-type]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(_ORT, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((16, 256, width)).astype(np.float32) for n in inputs}
    return per_call_s(lambda: session.run(None, feeds), seconds) * 1000


def kernels(seconds: float) -> dict[str, float]:
    node = helper.make_node
    return {
        "SkipLayerNormalization": kernel_ms(
            [node("SkipLayerNormalization", ["x", "r", "ones", "zeros", "zeros"], ["y"],
                  domain=_ORT, epsilon=1e-12)], 384, ["x", "r"], seconds,
        ),
        "Add + Add + LayerNormalization": kernel_ms(
            [node("Add", ["x", "zeros"], ["t"]), node("Add", ["t", "r"], ["u"]),
             node("LayerNormalization", ["u", "ones", "zeros"], ["y"], axis=-1, epsilon=1e-12)],
            384, ["x", "r"], seconds,
        ),
        "BiasGelu": kernel_ms(
            [node("BiasGelu", ["x", "zeros"], ["y"], domain=_ORT)], 1536, ["x"], seconds
        ),
        "Add + Gelu": kernel_ms(
            [node("Add", ["x", "zeros"], ["t"]), node("Gelu", ["t"], ["y"], domain=_ORT)],
            1536, ["x"], seconds,
        ),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--models", default="all-MiniLM-L6-v2,all-MiniLM-L6-v2-int8")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    names = args.models.split(",")
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            rates[name].append(model_calls(args.data_dir / "models" / name, args.seconds))
    print("| model | windows/s (16 x 256 tokens a call), per round |\n|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} |")
    print("| kernel | ms a call |\n|---|---:|")
    for name, ms in kernels(args.seconds / 2).items():
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
