"""The bench tools users run: locust against a real gateway, then the report; the
workflows bench; the BEIR evaluation's smoke version."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from bench import beir, report
from gateway.server import Gateway
from indexer.testmodel import build_tiny_cross_encoder


async def test_locustfile_and_report(gateway: Gateway, tmp_path: Path) -> None:
    locust = Path(sys.executable).with_name("locust")
    proc = await asyncio.create_subprocess_exec(
        str(locust), "-f", "bench/locustfile.py", "--headless", "-u", "2", "-r", "2",
        "--iterations", "40", "-t", "30s", "--host", gateway.address, "--model", "chat",
        "--hdr-dir", str(tmp_path), "--check-fail-ratio", "0", "--only-summary",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, output.decode()[-3000:]
    check_outputs(tmp_path)


def check_outputs(tmp_path: Path) -> None:
    counts = {
        p.stem: HdrHistogram.decode(p.read_bytes()).get_total_count()
        for p in tmp_path.glob("*.hdr")
    }
    assert counts["Generate"] + counts["GenerateStream"] == 40
    assert counts["GenerateStream_TTFT"] == counts["GenerateStream"] > 0
    report.main([str(tmp_path)])
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "latency.md").read_text()
    assert f"| Generate | {counts['Generate']} |" in table


def test_workflows_bench_prints_its_figures(tmp_path: Path) -> None:
    """bench/workflows.py end to end, briefly: every table row it claims, with numbers."""
    out = tmp_path / "workflows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.workflows", "--seconds", "0.1", "--rounds", "1",
         "--concurrency", "1,4", "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    number = r"-?\d+(?:\.\d+)?"
    for chain in ("template", "llm", "direct", "llm - direct"):
        assert re.search(rf"^\| {chain} \|( {number} \|){{4}}$", text, re.M), (chain, text)
    assert re.search(rf"engine alone {number} µs/run; .* {number} µs/run: the App layer adds", text)
    cases = [
        "fanout workflow c=1", "fanout direct c=1", "fanout workflow c=4", "fanout direct c=4",
        "single RunWorkflowUnary c=4", "single RunWorkflow c=4", "single Generate c=4",
    ]  # fmt: skip
    for case in cases:
        row = re.search(rf"^\| {case} \|((?: {number} \|){{4}}) 0 \|$", text, re.M)
        assert row, (case, text)
        assert float(row.group(1).split("|")[0]) > 0  # runs/s
    for c in (1, 4):
        assert re.search(rf"added by the workflow at c={c}: p50 [+-]\d+ µs, p99 [+-]\d+ µs", text)
    recorded = int(re.search(r"runs recorded in the store: (\d+)", text).group(1))  # type: ignore[union-attr]
    figures = json.loads(out.read_text())
    served = figures["grpc"]
    assert sorted(served) == sorted(cases)
    workflow_runs = sum(s["calls"] + s["errors"] for k, s in served.items() if "direct" not in k
                        and "Generate" not in k)  # fmt: skip
    assert recorded >= workflow_runs > 0  # every run recorded (warm-ups too)
    assert figures["engine"]["template N=20"] > figures["engine"]["template N=1"] > 0


def test_the_beir_bench_scores_every_run_through_the_rpcs(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/beir.py on a small BEIR-format collection (graded judgements), the
    tiny embedder and the tiny word-overlap cross-encoder: the smoke version of
    the public evaluation."""
    topics = {
        "pets": "cats chase mice and dogs bark at the cats in the garden",
        "food": "pizza with cheese and bread with apples make good food",
        "music": "the guitar and the piano play a song in the movie",
        "weather": "rain and snow and wind in the winter storm",
        "health": "the doctor at the hospital treats heart disease with medicine",
        "travel": "trains and planes and boats go from city to city over the sea",
    }
    collection = tmp_path / "beir"
    (collection / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d-{name}", "title": name, "text": text} for name, text in topics.items()]
    docs.append({"_id": "d-cats-too", "title": "", "text": "cats sleep in the house"})
    (collection / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = {"q1": "cats and dogs", "q2": "pizza and cheese", "q3": "snow storm", "q4": "piano"}
    (collection / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    judged = [("q1", "d-pets", 2), ("q1", "d-cats-too", 1), ("q2", "d-food", 2),
              ("q3", "d-weather", 1), ("q4", "d-music", 2), ("q4", "d-food", 0)]  # fmt: skip
    (collection / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in judged)
    )
    reranker = build_tiny_cross_encoder(tmp_path / "cross-encoder")
    results = beir.main([
        str(collection), "--split", "dev", "--model-dir", str(tiny_model),
        "--reranker", str(reranker),
    ])  # fmt: skip
    runs = {"dense", "lexical", "hybrid", "hybrid + rerank"}
    assert runs | {"reference BM25 (bm25s, stemmed, stop words)"} <= set(results)
    for name in runs:
        ndcg, recall = results[name]
        assert 0.0 <= ndcg <= 1.0 and 0.0 <= recall <= 1.0, (name, results[name])
    # Every query shares its words with its answer: BM25, ours and the reference, finds each.
    assert results["lexical"][1] == 1.0
    assert results["lexical"][0] >= 0.9
    assert results["reference BM25 (bm25s, stemmed, stop words)"][0] >= 0.9
    assert results["hybrid + rerank"][0] >= 0.9
    out = capsys.readouterr().out
    assert "beir, split dev: 7 documents, 4 judged queries" in out
    assert re.search(r"^\| hybrid \+ rerank \| \d\.\d{3} \| \d\.\d{3} \|$", out, re.M)


def test_the_beir_metrics_by_hand() -> None:
    """nDCG@10 with the judged score as the gain (trec_eval's), Recall@100 over
    documents judged above 0."""
    judged = {"b": 2, "c": 1, "z": 1, "n": 0}
    ranking = ["a", "b", "c", "n"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert beir.ndcg_at_10(ranking, judged) == pytest.approx(dcg / ideal)
    assert beir.recall_at_100(ranking, judged) == pytest.approx(2 / 3)
    assert beir.ndcg_at_10(["x"] * 10 + ["b"], judged) == 0.0  # past the tenth: no gain


async def test_a_fake_serving_a_bench_keeps_nothing_of_what_it_sees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fake the benches start (`run_from_cli`) answers as in tests but keeps
    no request: kept, each call's dicts grew its heap, and the collector's full
    passes over them stalled it 30-170 ms at a time (bench/RESULTS.md, issue 15)."""
    import httpx2 as httpx

    from tests.fakes import http
    from tests.fakes.openai_server import OpenAIFake

    def close(coroutine: Any) -> None:  # instead of serving forever
        coroutine.close()

    monkeypatch.setattr(http.asyncio, "run", close)
    kept, bench = OpenAIFake(), OpenAIFake()
    http.run_from_cli(bench.server, "/v1", 0, use_uvloop=False)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for fake in (kept, bench):
        await fake.server.start()
        try:
            async with httpx.AsyncClient(base_url=fake.server.url) as client:
                for _ in range(3):
                    reply = await client.post("/v1/chat/completions", json=body)
                    assert reply.json()["choices"][0]["message"]["content"]
        finally:
            await fake.server.close()
    assert len(kept.observed.requests) == len(kept.observed.paths) == 3
    assert bench.observed.requests == bench.observed.paths == bench.observed.headers == []
