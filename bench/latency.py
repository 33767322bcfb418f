"""Latency a user feels, at concurrency 1: time to first token and the tail.

    python -m bench.latency [--seconds 10] [--rounds 3] [--token-delay-ms 5] [--tokens 20]
                            [--scenario stream unary] [--baseline DIR]
                            [--max-cpu-wakeup-us US] [--stall-probe] [--record]

The OpenAI route end to end: an asyncio client (aiohttp, one keep-alive
connection) -> POST /v1/chat/completions on the gateway (uvicorn, auth on
with a `user`-role key, usage recorded) -> openai adapter -> the fake OpenAI
server (tests/fakes) in its own process over loopback HTTP. The same client
calls the fake directly in the same rounds: that is the floor, and "added" is
the gateway's figure minus it.

- `stream`: `stream: true`, 20 tokens (`--tokens`), the fake waiting
  `--token-delay-ms` before each one; TTFT is the arrival of the first
  non-empty content delta.
- `unary`: the same call without streaming (the fake answers at once); p50,
  p99 and the slowest call of each run, every run listed (a stall shows as a
  max far above the p99 in some runs only).
- `unary64`: the same from 64 concurrent clients: calls/s and the tail.

`--baseline DIR` adds the gateway of another checkout (a `git worktree`) in
the same rounds. `--stall-probe` puts a sleeper on each core and lists, per
run, each core's longest late wake-up: a slowest call that matches one is the
machine stalling that core (the gateway runs on one core, the client and the
fake on the other, so the direct floor alone never sees the gateway core's
stalls). Targets and results: bench/RESULTS.md ("Issue 15").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.rest import CLIENT_CORE, GATEWAY_YAML, OUT, PROMPT, SERVER_CORE, Process
from gateway import wakeup

ROOT = Path(__file__).resolve().parent.parent


def start_gateway(
    root: Path,
    upstream: str,
    data: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    max_cpu_wakeup_us: int | None = None,
) -> tuple[Process, str, str]:
    """A gateway (of the checkout at `root`) and a user-role key for it. With
    `workers` > 1, `serve --workers` on two free fixed ports (it needs them)."""
    data.mkdir(parents=True, exist_ok=True)
    config = data / "gateway.yaml"
    text = GATEWAY_YAML.format(server="uvicorn", upstream=upstream, data=str(data), auth="true")
    if max_cpu_wakeup_us is not None:
        server = "grace_period_s: 1}"
        assert server in text, "GATEWAY_YAML's server line changed"
        text = text.replace(server, f"grace_period_s: 1, max_cpu_wakeup_us: {max_cpu_wakeup_us}}}")
    if workers > 1:
        for _ in range(2):  # the gRPC port, then the REST one
            text = re.sub(r"(?<![_\w])port: 0,", f"port: {_free_port()},", text, count=1)
    config.write_text(text)
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
            "--workers", str(workers)]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "INFERGATE_LOG_LEVEL": "INFO",
           "PYTHONPATH": path, **(extra_env or {})}  # fmt: skip
    # cwd=root: `python -m` imports from its working directory before PYTHONPATH, so
    # a baseline started from this checkout's directory would run this checkout's code.
    proc = Process.start(argv, ["serving gRPC on", "serving HTTP on"], SERVER_CORE, env, root)
    url = "http://" + proc.find(r"serving HTTP on (\S+)")
    key = asyncio.run(user_key(url, proc.find(r"(igk_\S+)")))
    return proc, url + "/v1/chat/completions", key


async def user_key(url: str, admin: str) -> str:
    """A new `user`-role key of the default tenant, made with the admin key the
    gateway printed at start."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/v1/tenants/default/keys", json={"role": "user"},
            headers={"authorization": f"Bearer {admin}"},
        ) as reply:  # fmt: skip
            return str((await reply.json())["secret"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def openai_calls(
    url: str, body: dict[str, Any], key: str, seconds: float, concurrency: int = 1
) -> dict[str, Any]:
    """Back-to-back calls for `seconds` from `concurrency` clients: each call's
    latency and, when streamed, its time to the first non-empty content delta
    (microseconds)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    stream = bool(body.get("stream"))
    total: list[float] = []
    first: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for _ in range(50):  # warm-up: connections, caches, the JIT-less first calls
            async with http.post(url, json=body) as reply:
                await reply.read()
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                async with http.post(url, json=body) as reply:
                    if reply.status != 200:
                        raise RuntimeError(f"HTTP {reply.status}: {await reply.text()}")
                    if stream:
                        seen = False
                        async for line in reply.content:
                            if not seen and b'"content":"' in line and b'"content":""' not in line:
                                first.append((time.perf_counter() - t0) * 1e6)
                                seen = True
                    else:
                        await reply.read()
                total.append((time.perf_counter() - t0) * 1e6)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"calls": len(total), "seconds": seconds, "total": total, "first": first}


def _summary(samples: dict[str, Any]) -> dict[str, Any]:
    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    out: dict[str, Any] = {"calls": samples["calls"],
                           "calls_per_s": round(samples["calls"] / samples["seconds"])}  # fmt: skip
    for name in ("total", "first"):
        xs = samples[name]
        if xs:
            out[name] = {"p50_us": round(pct(xs, 0.5)), "p99_us": round(pct(xs, 0.99)),
                         "max_us": round(max(xs))}  # fmt: skip
    return out


def measure(
    url: str, body: dict[str, Any], key: str, seconds: float, concurrency: int = 1
) -> dict[str, Any]:
    os.sched_setaffinity(0, {CLIENT_CORE})
    return _summary(asyncio.run(openai_calls(url, body, key, seconds, concurrency)))


# A sleeper pinned to one core: each wake-up later than 3 ms past its 2 ms sleep,
# with the wall time it happened. What delays it delays any process on that core.
STALL_PROBE = """
import sys, time
out = open(sys.argv[1], "a", buffering=1)
while True:
    asked = time.perf_counter()
    time.sleep(0.002)
    late = time.perf_counter() - asked - 0.002
    if late > 0.003:
        out.write(f"{time.time():.6f} {late * 1000:.1f}\\n")
"""


class StallProbes:
    """One sleeper per core (--stall-probe); `worst(start, end)` is each core's
    longest late wake-up in ms between two wall times."""

    def __init__(self, folder: Path) -> None:
        self.files = {
            "server core": folder / "stalls-server",
            "client core": folder / "stalls-client",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        for path, core in zip(self.files.values(), (SERVER_CORE, CLIENT_CORE), strict=True):
            path.touch()
            proc = subprocess.Popen([sys.executable, "-c", STALL_PROBE, str(path)])
            os.sched_setaffinity(proc.pid, {core})
            self.procs.append(proc)

    def worst(self, start: float, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, path in self.files.items():
            rows = (line.split() for line in path.read_text().splitlines())
            lates = [float(late) for at, late in rows if start <= float(at) <= end]
            out[name] = max(lates, default=0.0)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--token-delay-ms", type=float, default=5)
    parser.add_argument(
        "--tokens", type=int, default=20,
        help="per stream: fewer make more calls per run, so a tighter TTFT median",
    )  # fmt: skip
    parser.add_argument("--scenario", nargs="+", default=["stream", "unary", "unary64"])
    parser.add_argument("--baseline", type=Path, help="another checkout's root, measured too")
    parser.add_argument(
        "--traced", type=float, metavar="RATIO",
        help="also this checkout with tracing on (OTEL_* variables), sampling RATIO of calls",
    )  # fmt: skip
    parser.add_argument(
        "--max-cpu-wakeup-us", type=int, metavar="US",
        help="this checkout's gateway's server.max_cpu_wakeup_us (needs root; it holds for "
        "the whole machine while it runs, the floor and a baseline included: compare runs "
        "with and without)",
    )  # fmt: skip
    parser.add_argument(
        "--stall-probe", action="store_true",
        help="a sleeper on each core reports its worst late wake-up in each run (a stall of "
        "the machine, not of a process); it wakes the cores every 2 ms: not for TTFT figures",
    )  # fmt: skip
    parser.add_argument("--record", action="store_true", help="write bench/out/latency-*.json")
    args = parser.parse_args()
    if args.max_cpu_wakeup_us is not None and not os.access(wakeup.DEVICE, os.W_OK):
        parser.error(f"--max-cpu-wakeup-us: {wakeup.DEVICE} is not writable here (needs root)")

    fake = Process.start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
         "--tokens", str(args.tokens), "--token-delay-ms", str(args.token_delay_ms), "--uvloop"],
        ["listening on"], CLIENT_CORE,
    )  # fmt: skip
    upstream = fake.find(r"listening on (\S+)").rstrip("/")
    roots = {"gateway": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    if args.traced is not None:
        roots["traced"] = ROOT
    # Spans go to the fake's port, which answers 404: exported and dropped, as to a busy collector.
    traced = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": upstream + "/v1/traces",
              "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
              "OTEL_TRACES_SAMPLER_ARG": str(args.traced)}  # fmt: skip
    results: dict[str, Any] = {s: {name: [] for name in ["direct", *roots]} for s in args.scenario}
    probes = None
    try:
        with tempfile.TemporaryDirectory() as data:
            if args.stall_probe:
                probes = StallProbes(Path(data))
            gateways = {
                name: start_gateway(
                    root,
                    upstream,
                    Path(data) / name,
                    traced if name == "traced" else None,
                    # Machine-wide: this checkout's gateway holds it for all (a baseline
                    # from before the setting would refuse the key).
                    max_cpu_wakeup_us=args.max_cpu_wakeup_us if name == "gateway" else None,
                )
                for name, root in roots.items()
            }
            try:
                for r in range(args.rounds):
                    order = ["direct", *roots]
                    if r % 2:
                        order.reverse()  # none always measured first
                    for scenario in args.scenario:
                        body: dict[str, Any] = {
                            "model": "gpt", "messages": [{"role": "user", "content": PROMPT}],
                            "stream": scenario == "stream",
                        }  # fmt: skip
                        c = 64 if scenario == "unary64" else 1
                        for name in order:
                            began = time.time()
                            if name == "direct":
                                row = measure(
                                    upstream + "/chat/completions",
                                    {**body, "model": "gpt-fake"}, "", args.seconds, c,
                                )  # fmt: skip
                            else:
                                _, url, key = gateways[name]
                                row = measure(url, body, key, args.seconds, c)
                            if probes is not None:
                                row["stall_ms"] = probes.worst(began, time.time())
                            results[scenario][name].append(row)
                            print(scenario, name, json.dumps(row), flush=True)
            finally:
                for proc, _, _ in gateways.values():
                    proc.stop()
    finally:
        if probes is not None:
            probes.stop()
        fake.stop()
    report = _report(results)
    print(json.dumps(report, indent=2))
    if args.record:
        OUT.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        meta = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                "argv": sys.argv[1:]}  # fmt: skip
        (OUT / f"latency-{stamp}.json").write_text(
            json.dumps({"meta": meta, "runs": results, "report": report}, indent=2)
        )


def _report(results: dict[str, Any]) -> dict[str, Any]:
    """Per scenario and server: the median over runs of each figure, the added
    time over direct's, and each run's max."""
    out: dict[str, Any] = {}
    for scenario, servers in results.items():
        metric = "first" if scenario == "stream" else "total"
        rows: dict[str, Any] = {}
        for name, runs in servers.items():
            row: dict[str, Any] = {"calls_per_s": statistics.median(r["calls_per_s"] for r in runs)}
            for m in ("first", "total"):
                if m in runs[0]:
                    for f in ("p50_us", "p99_us"):
                        row[f"{m}_{f}"] = statistics.median(run[m][f] for run in runs)
                    row[f"{m}_max_us_each_run"] = [run[m]["max_us"] for run in runs]
            if "stall_ms" in runs[0]:
                row["machine_stall_ms_each_run"] = [run["stall_ms"] for run in runs]
            rows[name] = row
        for name, row in rows.items():
            if name != "direct":
                row["added_p50_us"] = row[f"{metric}_p50_us"] - rows["direct"][f"{metric}_p50_us"]
        out[scenario] = rows
    return out


if __name__ == "__main__":
    main()
