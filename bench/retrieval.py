"""Retrieval quality: nDCG@10 of dense, lexical and hybrid search on the labelled
set in bench/relevance (61 short documents, 36 queries with graded
judgements: 2 = the answer, 1 = related), so that a change that hurts relevance shows.

    python -m bench.retrieval [--data-dir data] [--dense-weight 1] [--lexical-weight 1]
                              [--fusion rrf|score] [--model all-MiniLM-L6-v2]

Dense search uses all-MiniLM-L6-v2 from `{data-dir}/models/all-MiniLM-L6-v2`
(`infergate model fetch`); without it the run says so and falls back to the
hashed bag-of-words embedder, whose "dense" figures then mean little. Every
document is one chunk; a ranking is scored at document level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from indexer.datasets import Datasets
from indexer.documents import DocumentInput, Mode, Query
from indexer.embedder import Embedder
from indexer.hashed_embedder import HashedEmbedder
from indexer.params import SearchParams, Settings

DATA = Path(__file__).with_name("relevance")


def ndcg(ranking: list[str], relevant: dict[str, int], k: int = 10) -> float:
    gains = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return gains / best if best else 0.0


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def embedder_for(data_dir: Path, model: str = "all-MiniLM-L6-v2") -> tuple[Embedder, str]:
    directory = data_dir / "models" / model
    if (directory / "model.onnx").is_file():
        from indexer.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(directory), f"{model} (ONNX)"
    print(f"NOTE: no model at {directory}: dense search uses the hashed bag-of-words embedder")
    return HashedEmbedder(dimensions=384), "hashed bag of words (no MiniLM found)"


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    embedder, name = embedder_for(args.data_dir, args.model)
    search = SearchParams(
        fusion=args.fusion, dense_weight=args.dense_weight, lexical_weight=args.lexical_weight
    )
    docs, queries = load("docs.jsonl"), load("queries.jsonl")
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as root:
        datasets = Datasets(Path(root), embedder, name, Settings(search=search))
        await datasets.create("bench", "retrieval")
        inputs = [DocumentInput(d["id"], text=d["text"]) for d in docs]
        await datasets.upsert("bench", "retrieval", inputs)
        for mode in (Mode.DENSE, Mode.LEXICAL, Mode.HYBRID):
            per_query = []
            for query in queries:
                hits = await datasets.search(
                    "bench", "retrieval", Query(query["text"], mode=mode, k=10)
                )
                ranking = list(dict.fromkeys(h.chunk.document_id for h in hits))
                per_query.append(
                    (
                        ndcg(ranking, query["relevant"]),
                        ranking[:1] == [max(query["relevant"], key=query["relevant"].get)],
                    )
                )
            scores[mode.value] = {
                "ndcg@10": sum(s for s, _ in per_query) / len(per_query),
                "top1": sum(t for _, t in per_query) / len(per_query),
            }
        await datasets.aclose()
    print(f"embedder: {name}; {len(docs)} documents, {len(queries)} queries; fusion {args.fusion}")
    print("| mode | nDCG@10 | answer ranked first |\n|---|---:|---:|")
    for mode, values in scores.items():
        print(f"| {mode} | {values['ndcg@10']:.3f} | {values['top1']:.0%} |")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--lexical-weight", type=float, default=1.0)
    parser.add_argument("--fusion", choices=["rrf", "score"], default="rrf")
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="a model directory under {data-dir}/models"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
