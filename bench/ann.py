"""ANN quality and speed of the collection index (indexer.vector_index.VectorIndex).

    python -m bench.ann [--n 100000] [--queries 1000] [--m 16 32] [--ef 16 32 64 128 256]

Vectors (384 dimensions, like all-MiniLM-L6-v2): a seeded Gaussian mixture
shaped like sentence embeddings rather than uniform noise: 2,000 topic centres
with Zipf-distributed sizes, each point = shared mean direction * 0.5 + its
centre + isotropic noise (sigma 0.75 per unit norm), L2-normalised. Random pairs
then have cosine ~0.2, same-topic pairs ~0.6, a query's true nearest neighbour
~0.7. Queries are fresh draws from the same mixture.

Reported per (M, ef): recall@10 against exact search (numpy, same vectors) and
single-thread queries/s through VectorIndex.search (its lock and Python
included); the baseline is exact brute-force search in the same run. Then
filtered search at 50%, 10% and 1% selectivity (a metadata range through
indexer.filters.MetadataIndex, as a collection does): above
`exact_threshold` matching chunks HNSW walks with the filter, below it the
matching subset is searched exactly.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import numpy.typing as npt

from indexer.filters import MetadataIndex, Range
from indexer.params import IndexParams
from indexer.vector_index import VectorIndex, single_threaded_blas

DIMS = 384
Matrix = npt.NDArray[np.float32]


def mixture(n: int, seed: int, centres: int = 2000) -> Matrix:
    rng = np.random.default_rng(1234)  # the same topics for documents and queries
    mean = rng.normal(size=DIMS)
    mean /= np.linalg.norm(mean)
    topics = rng.normal(size=(centres, DIMS))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, centres + 1) ** 0.8
    draw = np.random.default_rng(seed)
    which = draw.choice(centres, size=n, p=weights / weights.sum())
    noise = draw.normal(size=(n, DIMS)) * (0.75 / np.sqrt(DIMS))
    rows = 0.5 * mean + topics[which] + noise
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def exact_top(
    rows: Matrix, queries: Matrix, k: int, subset: npt.NDArray[np.int64] | None = None
) -> list[list[int]]:
    labels = np.arange(len(rows)) if subset is None else subset
    data = rows if subset is None else rows[subset]
    found = []
    for start in range(0, len(queries), 100):
        scores = queries[start : start + 100] @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        found += [labels[t].tolist() for t in top]
    return found


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def timed(queries: Matrix, search: object) -> tuple[list[list[int]], float]:
    start = time.perf_counter()
    found = [[label for label, _ in search(q)] for q in queries]  # type: ignore[operator]
    return found, len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--filter-ef", type=int, default=64)
    args = parser.parse_args()
    single_threaded_blas()  # as Datasets does
    k = 10
    rows, queries = mixture(args.n, seed=1), mixture(args.queries, seed=2)
    print(f"{args.n} x {DIMS} vectors, {args.queries} queries; load {os.getloadavg()[0]:.1f}")
    sample = rows[:2000] @ rows[:2000].T
    nearest = np.sort(queries[:200] @ rows.T, axis=1)[:, -1].mean()
    pairs = sample[np.triu_indices(2000, 1)].mean()
    print(f"cosine: random pairs {pairs:.2f}, nearest neighbour of a query {nearest:.2f}")
    truth = exact_top(rows, queries, k)
    start = time.perf_counter()
    exact_top(rows, queries[:200], k)
    batched = 200 / (time.perf_counter() - start)
    print(f"baseline exact search (numpy, batched by 100): {batched:.0f} q/s")
    single = time.perf_counter()
    for q in queries[:50]:
        np.argpartition(-(rows @ q), k)[:k]
    one = 50 / (time.perf_counter() - single)
    print(f"baseline exact search (numpy, one query at a time): {one:.0f} q/s")
    print("\n| M | ef | recall@10 | queries/s (1 thread) | build s |\n|---:|---:|---:|---:|---:|")
    labels = np.arange(args.n, dtype=np.int64)
    index = None
    for m in args.m:
        params = IndexParams(m=m, ef_construction=args.ef_construction, initial_capacity=args.n)
        index = VectorIndex(DIMS, params)
        start = time.perf_counter()
        for lo in range(0, args.n, 10_000):
            index.add(labels[lo : lo + 10_000], rows[lo : lo + 10_000])
        build = time.perf_counter() - start
        for ef in args.ef:
            index._graph.set_ef(ef)
            found, qps = timed(queries, lambda q, index=index: index.search(q, k))
            print(f"| {m} | {ef} | {recall(found, truth):.3f} | {qps:.0f} | {build:.0f} |")
    assert index is not None
    index._graph.set_ef(args.filter_ef)
    metadata = MetadataIndex()
    for label in range(args.n):
        metadata.add(label, {"bucket": label % 100})
    threshold = index.params.exact_threshold
    print(f"\nfiltered (M={args.m[-1]}, ef={args.filter_ef}, exact_threshold={threshold}):")
    print("| selectivity | matching | path | recall@10 | queries/s | exact-subset baseline q/s |")
    print("|---:|---:|---|---:|---:|---:|")
    for percent in (50, 10, 1):
        condition = [Range("bucket", lt=percent)]
        allowed = metadata.matching(condition)
        assert allowed is not None
        path = "exact subset" if len(allowed) <= threshold else "HNSW"
        truth_f = exact_top(rows, queries, k, allowed)
        few = queries[:300]
        found, qps = timed(few, lambda q, c=condition: index.search(q, k, metadata.matching(c)))
        start = time.perf_counter()
        for q in few[:50]:
            subset = metadata.matching(condition)
            np.argpartition(-(rows[subset] @ q), k)[:k]
        base = 50 / (time.perf_counter() - start)
        got = recall(found, truth_f[:300])
        print(f"| {percent}% | {len(allowed)} | {path} | {got:.3f} | {qps:.0f} | {base:.0f} |")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
