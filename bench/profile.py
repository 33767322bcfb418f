"""Where one gateway process spends its CPU, by sampling profile (py-spy).

    python -m bench.profile [--scenario openai-unary openai-stream grpc-stream grpc-unary ...]
                            [--concurrency 1 64] [--seconds 10] [--rate 500] [--top 25]

The paths users load most, each driven at each concurrency while py-spy
samples the gateway (uvicorn, auth on with a `user`-role key, usage recorded):
- `openai-unary`: POST /v1/chat/completions -> openai adapter -> the fake
  OpenAI server in its own process over loopback HTTP (one token at once);
- `openai-stream`: the same with `stream: true`, 20 tokens, no delay;
- `grpc-stream`: gRPC GenerateStream on the mock (20 tokens); `grpc-unary`:
  gRPC Generate on the mock;
- `grpc-bare`, `grpc-bare-unary`: the same calls to a bare grpc.aio server of
  the same message shapes (bench/bare.py), sampled the same way: the floor
  of the gRPC path.

For each run: calls/s, then the top frames by self time (the sampled leaf)
and by cumulative time (a frame anywhere in the stack, counted once per
sample), as shares of the samples in which the gateway held the GIL
(`--gil`: idle waits in the event loop's poll are not counted). The raw
collapsed stacks are kept under bench/out/ for a flame graph.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import load as bench_load
from bench.latency import ROOT, openai_calls, start_gateway
from bench.rest import CLIENT_CORE, OUT, PROMPT, SERVER_CORE, Process

NATIVE = ["--native"] if os.environ.get("PROFILE_NATIVE") else []


def load(scenario: str, url: str, target: str, key: str, seconds: float, c: int) -> int:
    """Calls done in `seconds` from `c` clients: bench.load's gRPC streams on the
    mock, or bench.latency's OpenAI-route calls."""
    os.sched_setaffinity(0, {CLIENT_CORE})
    if scenario.startswith("grpc-"):
        auth = (("authorization", f"Bearer {key}"),)
        streaming = not scenario.endswith("unary")
        run = bench_load.run(target, "m", streaming=streaming, concurrency=c, seconds=seconds,
                             metadata=auth)  # fmt: skip
        result = asyncio.run(run)
        if result.errors:
            raise RuntimeError(f"{result.errors} gRPC calls failed")
        return result.calls
    body = {"model": "gpt", "messages": [{"role": "user", "content": PROMPT}],
            "stream": scenario == "openai-stream"}  # fmt: skip
    return int(asyncio.run(openai_calls(url, body, key, seconds, c))["calls"])


def _frame(line: str) -> str:
    """`function (path/to/file.py:12)` as `function (file.py)`: lines differ
    within one function, and the share of a function is what is read."""
    name, _, where = line.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("/site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise(collapsed: Path, top: int) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            cumulative[frame] += n

    def shares(counter: collections.Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * n / total, 1), f) for f, n in counter.most_common(top)]

    return {"samples": total, "self": shares(own), "cumulative": shares(cumulative)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    scenarios = ["openai-unary", "openai-stream", "grpc-stream", "grpc-bare"]
    scenarios += ["grpc-unary", "grpc-bare-unary"]
    parser.add_argument("--scenario", nargs="+", default=scenarios)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N (one core)")
    args = parser.parse_args()
    fake = Process.start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--tokens", "20",
         "--token-delay-ms", "0", "--uvloop"],
        ["listening on"], CLIENT_CORE,
    )  # fmt: skip
    upstream = fake.find(r"listening on (\S+)").rstrip("/")
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        with tempfile.TemporaryDirectory() as data:
            gateway, url, key = start_gateway(
                ROOT, upstream, Path(data) / "gateway", workers=args.workers
            )
            bare = Process.start([sys.executable, "-m", "bench.bare"], ["serving gRPC on"],
                                 SERVER_CORE)  # fmt: skip
            try:
                for scenario in args.scenario:
                    proc = bare if scenario.startswith("grpc-bare") else gateway
                    target = proc.find(r"serving gRPC on (\S+)")
                    for c in args.concurrency:
                        load(scenario, url, target, key, 2, c)  # warm-up
                        raw = OUT / f"profile-{stamp}-{scenario}-c{c}.txt"
                        spy = subprocess.Popen(
                            [str(Path(sys.executable).parent / "py-spy"), "record", "--gil",
                             *(NATIVE or ["--nonblocking"]), "--format", "raw",
                             *(["--subprocesses"] if args.workers > 1 else []),
                             "--rate", str(args.rate),
                             "--duration", str(int(args.seconds)), "--output", str(raw),
                             "--pid", str(proc.proc.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        )  # fmt: skip
                        used = proc.cpu_seconds()  # the workers' too, with --workers
                        done = load(scenario, url, target, key, args.seconds + 1, c)
                        used = proc.cpu_seconds() - used
                        spy.wait(timeout=60)
                        report = summarise(raw, args.top)
                        print(f"\n## {scenario}, c={c}: {done / (args.seconds + 1):.0f} calls/s, "
                              f"gateway CPU {1e6 * used / done:.0f} µs per call, "
                              f"{report['samples']} samples with the GIL ({raw.name})")  # fmt: skip
                        for kind in ("self", "cumulative"):
                            print(f"\n{kind}:")
                            for share, frame in report[kind]:
                                print(f"  {share:5.1f}%  {frame}")
            finally:
                gateway.stop()
                bare.stop()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
