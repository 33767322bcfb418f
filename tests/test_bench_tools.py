"""The load-test tools users run: locust against a real gateway, then the report."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench import report
from gateway.server import Gateway


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
