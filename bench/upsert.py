"""Ingestion through the public RPC: documents/s of `UpsertDocuments` into a
running gateway, one model directory against another in the same run.

    python -m bench.upsert [--docs 300] [--batch 10] [--rounds 3] [--data-dir data]
                           [--models all-MiniLM-L6-v2,all-MiniLM-L6-v2-int8]
                           [--baseline CHECKOUT --baseline-model DIR]

Each round starts one gateway per model (`{data-dir}/models/NAME`, as
`dataset.embedder.model_dir`; `infergate model fetch --int8` makes both
defaults) in a fresh data directory, creates a collection and upserts `--docs`
abstract-length documents (150-300 words of seeded English-like prose, one
or two chunks each, as a public abstract collection has) in calls of `--batch`, one
call at a time. Reported per model: the median documents/s and chunks/s over
the rounds (models alternate within a round), the gateway's CPU seconds per
document, and each row's rate over the first one's. With `--baseline`, the
first row is another checkout's code (e.g. a `git worktree` of main) with
`--baseline-model`, a model directory as that code made it. The gateway runs
unpinned, on every core, as in production; the client is idle while it waits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from bench.ingest import sentence
from bench.rest import ROOT, Process
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc


@contextlib.contextmanager
def dataset_gateway(dataset: dict[str, Any], root: Path = ROOT) -> Iterator[Process]:
    """A gateway of the checkout at `root` on a fresh data directory, serving
    gRPC only, auth off, with the `dataset` section given (snapshots only at
    stop); stopped on exit. The Dataset benches' own."""
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "gateway.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "server": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "grace_period_s": 1},
            "rest": {"enabled": False},
            "apps": {"auth": {"enabled": False}},
            "data_dir": data,
            "models": {"m": {"deployments": [{"name": "m", "provider": "mock", "model": "echo"}]}},
            "dataset": {"snapshot_interval_s": 0, **dataset},
        }))  # fmt: skip
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        env = {**os.environ, "PYTHONPATH": str(root)}
        # cwd=root: `python -m` imports from its working directory first.
        gateway = Process.start(argv, ["serving gRPC on"], None, env, root)
        try:
            yield gateway
        finally:
            gateway.stop()


def abstracts(count: int, seed: int = 11) -> list[pb.Document]:
    rng = random.Random(seed)
    docs = []
    for number in range(count):
        words: list[str] = []
        while len(words) < rng.randint(150, 300):
            words += sentence(rng).split()
        docs.append(pb.Document(id=f"doc-{number}", text=" ".join(words)))
    return docs


async def upsert(address: str, docs: list[pb.Document], batch: int) -> tuple[float, int]:
    """Seconds to upsert every document, and the chunks they made."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="bench"))
        warm = pb.UpsertDocumentsRequest(collection="collections/bench", documents=docs[:1])
        await stub.UpsertDocuments(warm)  # the model's first call allocates its arena
        chunks = 0
        started = time.perf_counter()
        for i in range(0, len(docs), batch):
            request = pb.UpsertDocumentsRequest(
                collection="collections/bench", documents=docs[i : i + batch]
            )
            chunks += (await stub.UpsertDocuments(request, timeout=600)).chunks
        return time.perf_counter() - started, chunks


def one_run(root: Path, model: Path, docs: list[pb.Document], batch: int) -> dict[str, float]:
    with dataset_gateway({"embedder": {"model_dir": str(model.resolve())}}, root) as gateway:
        address = gateway.find(r"serving gRPC on (\S+)")
        before = gateway.cpu_seconds()
        seconds, chunks = asyncio.run(upsert(address, docs, batch))
        cpu = gateway.cpu_seconds() - before
    return {
        "docs_s": len(docs) / seconds,
        "chunks_s": chunks / seconds,
        "cpu_s_doc": cpu / len(docs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--models", default="all-MiniLM-L6-v2,all-MiniLM-L6-v2-int8")
    parser.add_argument("--baseline", type=Path, help="another checkout, for the first row")
    parser.add_argument("--baseline-model", type=Path, help="the model dir for --baseline")
    args = parser.parse_args()
    rows = [(name, ROOT, args.data_dir / "models" / name) for name in args.models.split(",")]
    if args.baseline:
        if not args.baseline_model:
            parser.error("--baseline needs --baseline-model")
        label = f"baseline {args.baseline.name}: {args.baseline_model.name}"
        rows.insert(0, (label, args.baseline.resolve(), args.baseline_model))
    docs = abstracts(args.docs)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in rows}
    for _ in range(args.rounds):
        for label, root, model in rows:
            runs[label].append(one_run(root, model, docs, args.batch))
    words = sum(len(d.text.split()) for d in docs) / len(docs)
    print(f"{len(docs)} documents ({words:.0f} words on average), {args.batch} per call, "
          f"medians of {args.rounds} rounds")  # fmt: skip
    print("| model | docs/s | chunks/s | gateway CPU s/doc | vs first |\n|---|---:|---:|---:|---:|")
    first = 0.0
    for label, results in runs.items():
        median: dict[str, Any] = {k: statistics.median(r[k] for r in results) for k in results[0]}
        first = first or median["docs_s"]
        spread = ", ".join(f"{r['docs_s']:.1f}" for r in results)
        print(f"| {label} | {median['docs_s']:.1f} ({spread}) | {median['chunks_s']:.1f} "
              f"| {median['cpu_s_doc']:.3f} | {median['docs_s'] / first:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
