"""Gateway (mock provider, zero latency) vs a bare grpc.aio server, in one run.

    python -m bench.overhead [--seconds 5] [--rounds 3] [--baseline DIR]
                             [--scenario NAME ...] [--record]

Each server runs in its own process pinned to the last core; this load
generator is pinned to the others. Alongside client-side throughput and
latency, the server's own CPU time per call is read from /proc, which does
not depend on whether the client or the server saturates first.

`--baseline DIR` adds a third server in the same rounds: the gateway of
another checkout (e.g. `git worktree add /tmp/before HEAD~1`), so that a
change is measured against the code before it on the same machine, same run.
The servers take turns in reverse order every other round, so that none is
always measured first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench import load

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SERVING = re.compile(r"serving gRPC on (\S+)")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    address: str

    @classmethod
    def start(cls, name: str, argv: list[str], core: int, cwd: Path = ROOT) -> Server:
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=cwd)
        os.sched_setaffinity(proc.pid, {core})
        assert proc.stderr is not None
        for line in proc.stderr:
            if match := SERVING.search(line):
                return cls(name, proc, match.group(1))
        raise RuntimeError(f"{name} did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


SCENARIOS = [  # name, streaming, concurrency, fixed call count (else timed)
    ("unary c=1", False, 1, 3000),
    ("unary c=64", False, 64, None),
    ("stream20 c=1", True, 1, 1000),
    ("stream20 c=64", True, 64, None),
]


async def measure(
    server: Server, model: str, seconds: float, only: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    # Warm up: connections, code paths, allocator.
    await load.run(server.address, model, streaming=False, concurrency=8, calls=500)
    await load.run(server.address, model, streaming=True, concurrency=8, calls=200)
    figures = {}
    for name, streaming, concurrency, calls in SCENARIOS:
        if only and name not in only:
            continue
        cpu = server.cpu_seconds()
        result = await load.run(
            server.address, model, streaming=streaming, concurrency=concurrency,
            seconds=None if calls else seconds, calls=calls,
        )  # fmt: skip
        summary = result.summary()
        summary["server_cpu_us_per_call"] = (server.cpu_seconds() - cpu) * 1e6 / result.calls
        figures[name] = summary
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed scenario")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare and gateway alternate; medians are reported"
    )
    parser.add_argument("--baseline", type=Path, help="also serve the gateway of this checkout")
    parser.add_argument(
        "--scenario", action="append", choices=[s[0] for s in SCENARIOS], help="only these"
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_cores = cores[-1], set(cores[:-1]) or {cores[0]}
    os.sched_setaffinity(0, client_cores)
    py = sys.executable
    serve = [py, "-m", "gateway.cli", "serve", "--config", "bench/gateway.yaml"]
    targets = [("bare", [py, "-m", "bench.bare"], ROOT), ("gateway", serve, ROOT)]
    if args.baseline:
        targets.append(("baseline", serve, args.baseline.resolve()))
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name, _, _ in targets}
    for round_ in range(args.rounds):
        for name, argv, cwd in targets if round_ % 2 == 0 else targets[::-1]:
            server = Server.start(name, argv, server_core, cwd)
            try:
                figures = measure(server, "bench", args.seconds, args.scenario)
                rounds[name].append(uvloop.run(figures))
            finally:
                server.stop()
    results = {name: _medians(runs) for name, runs in rounds.items()}
    report = render(results, args)
    print(report)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "overhead.json").write_text(json.dumps(results, indent=2))
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + report)


def _medians(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per scenario and metric, the median over rounds (errors: the sum)."""
    out: dict[str, dict[str, Any]] = {}
    for scenario in runs[0]:
        out[scenario] = {
            key: sum(r[scenario][key] for r in runs)
            if key == "errors"
            else statistics.median(r[scenario][key] for r in runs)
            for key in runs[0][scenario]
        }
    return out


def render(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    bare, gw, base = results["bare"], results["gateway"], results.get("baseline")
    rows = [
        "| scenario | metric | bare | gateway | gateway/bare |"
        + (" baseline | baseline/bare |" if base else ""),
        "|---|---|---:|---:|---:|" + ("---:|---:|" if base else ""),
    ]
    metrics = [
        ("rps", "calls/s", "{:.0f}"),
        ("tokens_per_s", "tokens/s", "{:.0f}"),
        ("p50_us", "p50 µs", "{:.0f}"),
        ("p99_us", "p99 µs", "{:.0f}"),
        ("ttft_p50_us", "TTFT p50 µs", "{:.0f}"),
        ("server_cpu_us_per_call", "server CPU µs/call", "{:.0f}"),
    ]
    for scenario in bare:
        for key, label, fmt in metrics:
            if key not in bare[scenario]:
                continue
            b, g = bare[scenario][key], gw[scenario][key]
            row = f"| {scenario} | {label} | {fmt.format(b)} | {fmt.format(g)} | {g / b:.2f} |"
            if base:
                was = base[scenario][key]
                row += f" {fmt.format(was)} | {was / b:.2f} |"
            rows.append(row)
    first = next(iter(bare))
    added = gw[first]["p50_us"] - bare[first]["p50_us"]
    errors = sum(s["errors"] for r in results.values() for s in r.values())
    head = [
        f"### Gateway overhead vs bare grpc.aio — {datetime.date.today()}",
        "",
        f"- command: `python -m bench.overhead --seconds {args.seconds:g} "
        f"--rounds {args.rounds}"
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + "".join(f' --scenario "{s}"' for s in args.scenario or ())
        + f"` (medians of {args.rounds} alternating rounds)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(server pinned to 1 core, load generator to the other), Python "
        f"{platform.python_version()}",
        f"- added p50 ({first}): {added:.0f} µs; errors: {errors}",
        "",
    ]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    main()
