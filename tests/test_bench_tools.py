"""The load-test tools users run: locust against a real gateway, then the report."""

from __future__ import annotations

import asyncio
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
