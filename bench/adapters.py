"""The openai adapter's cost: the same openai SDK calling the local fake
directly, vs gRPC clients calling the gateway, which calls the fake through
the adapter. Same run, alternating rounds, medians reported.

    python -m bench.adapters [--seconds 4] [--rounds 3] [--record]

The fake (tests/fakes/openai_server.py, zero latency, 20-token answers) runs
in its own process on uvloop; its CPU time per call is read from /proc and
reported, to show it is not what limits either side. The clients (the direct
SDK, or the gRPC load generator) run on the first core; the fake and the
gateway share the last, like the server side of bench.overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import uvloop
import yaml

from bench import load
from bench.overhead import TICK, Server, _medians
from gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KEY_ENV = "INFERGATE_BENCH_OPENAI_KEY"
TOKENS = 20
SCENARIOS = [  # name, streaming, concurrency, fixed call count (else timed)
    ("unary c=1", False, 1, 1000),
    ("unary c=64", False, 64, None),
    (f"stream{TOKENS} c=1", True, 1, 500),
    (f"stream{TOKENS} c=64", True, 64, None),
]


class Fake:
    """The OpenAI fake in its own process."""

    def __init__(self, core: int) -> None:
        argv = [sys.executable, "-m", "tests.fakes.openai_server", "--uvloop",
                "--tokens", str(TOKENS)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        os.sched_setaffinity(self.proc.pid, {core})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the fake did not start: {line!r}")
        self.base_url = line.split()[-1]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


async def direct(
    client: openai.AsyncOpenAI, *, streaming: bool, concurrency: int, seconds: float | None,
    calls: int | None,
) -> load.Result:  # fmt: skip
    """load.run's loop, but each call is the SDK's own request to the fake."""
    result = load.Result()
    messages: Any = [{"role": "user", "content": load.PROMPT}]
    budget = [calls if calls is not None else 1 << 62]
    stop_at = time.perf_counter() + (seconds if seconds is not None else 1e9)

    async def one() -> None:
        if not streaming:
            await client.chat.completions.create(model="gpt-fake", messages=messages)
            return
        started = time.perf_counter_ns()
        first = True
        stream = await client.chat.completions.create(
            model="gpt-fake", messages=messages, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for chunk in stream:
            if first:
                result.first_token.record_value((time.perf_counter_ns() - started) // 1000)
                first = False
            if chunk.choices and chunk.choices[0].delta.content:
                result.tokens += 1

    async def caller() -> None:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            started = time.perf_counter_ns()
            try:
                await one()
            except openai.OpenAIError:
                result.errors += 1
                continue
            result.latency.record_value((time.perf_counter_ns() - started) // 1000)
            result.calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def measure_direct(fake: Fake, seconds: float) -> dict[str, dict[str, Any]]:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=fake.base_url, max_retries=0)
    try:
        for streaming in (False, True):  # warm up connections and code paths
            await direct(client, streaming=streaming, concurrency=8, seconds=None, calls=300)
        figures = {}
        for name, streaming, concurrency, calls in SCENARIOS:
            cpu, own = fake.cpu_seconds(), time.process_time()
            result = await direct(
                client, streaming=streaming, concurrency=concurrency,
                seconds=None if calls else seconds, calls=calls,
            )  # fmt: skip
            figures[name] = _summary(result, fake, cpu)
            # The SDK's CPU on the caller's side: what the gateway takes over.
            figures[name]["client_cpu_us_per_call"] = (
                (time.process_time() - own) * 1e6 / max(result.calls, 1)
            )
            _progress(f"  {name}: {figures[name]['rps']:.0f} calls/s")
        return figures
    finally:
        await client.close()


async def measure_gateway(gateway: Server, fake: Fake, seconds: float) -> dict[str, dict[str, Any]]:
    for streaming in (False, True):
        await load.run(gateway.address, "bench", streaming=streaming, concurrency=8, calls=300)
    figures = {}
    for name, streaming, concurrency, calls in SCENARIOS:
        cpu, gateway_cpu = fake.cpu_seconds(), gateway.cpu_seconds()
        result = await load.run(
            gateway.address, "bench", streaming=streaming, concurrency=concurrency,
            seconds=None if calls else seconds, calls=calls,
        )  # fmt: skip
        figures[name] = _summary(result, fake, cpu)
        _progress(f"  {name}: {figures[name]['rps']:.0f} calls/s, {result.errors} errors")
        figures[name]["gateway_cpu_us_per_call"] = (
            (gateway.cpu_seconds() - gateway_cpu) * 1e6 / max(result.calls, 1)
        )
    return figures


def _summary(result: load.Result, fake: Fake, cpu_before: float) -> dict[str, Any]:
    summary: dict[str, Any] = result.summary()
    summary["fake_cpu_us_per_call"] = (fake.cpu_seconds() - cpu_before) * 1e6 / max(result.calls, 1)
    return summary


def gateway_config(base_url: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    # A directory of its own: the gateway watches its config file's directory.
    path = OUT / "adapters" / "gateway.yaml"
    path.parent.mkdir(exist_ok=True)
    options = {"base_url": base_url, "api_key_env": KEY_ENV}
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "grace_period_s": 1},
        "routing": {"probe_interval_s": 0},
        "models": {
            "bench": {"deployments": [
                {"name": "openai", "provider": "openai", "model": "gpt-fake", "options": options}
            ]}
        },
    }  # fmt: skip
    # The gRPC adapter path alone: no API keys or usage records (issue 8's
    # layer), no REST listener (issue 7's) on a fixed port.
    if "apps" in GatewayConfig.model_fields:
        config["apps"] = {"auth": {"enabled": False}, "usage": {"enabled": False}}
    if "rest" in GatewayConfig.model_fields:
        config["rest"] = {"enabled": False}
    config["data_dir"] = str(OUT / "adapters-data")
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed scenario")
    parser.add_argument("--rounds", type=int, default=3, help="direct and gateway alternate")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-bench"
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[-1]
    os.sched_setaffinity(0, set(cores[:-1]) or {cores[0]})
    fake = Fake(server_core)
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {"direct": [], "gateway": []}
    try:
        config = gateway_config(fake.base_url)
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        for round_ in range(args.rounds):
            _progress(f"round {round_ + 1}: direct")
            rounds["direct"].append(uvloop.run(measure_direct(fake, args.seconds)))
            _progress(f"round {round_ + 1}: gateway")
            gateway = Server.start("gateway", argv, server_core)
            try:
                rounds["gateway"].append(uvloop.run(measure_gateway(gateway, fake, args.seconds)))
            finally:
                gateway.stop()
    finally:
        fake.stop()
    results = {name: _medians(runs) for name, runs in rounds.items()}
    (OUT / "adapters.json").write_text(json.dumps(results, indent=2))
    report = render(results, args, _load())
    print(report)
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + report)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def render(
    results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, load_avg: str
) -> str:
    direct_, gw = results["direct"], results["gateway"]
    rows = [
        "| scenario | metric | direct SDK | via gateway | added (or ratio) |",
        "|---|---|---:|---:|---:|",
    ]
    for scenario in direct_:
        d, g = direct_[scenario], gw[scenario]
        rows.append(f"| {scenario} | calls/s | {d['rps']:.0f} | {g['rps']:.0f} | "
                    f"{g['rps'] / d['rps']:.2f}x |")  # fmt: skip
        for key, label in (("p50_us", "p50 µs"), ("p99_us", "p99 µs")):
            rows.append(f"| {scenario} | {label} | {d[key]:.0f} | {g[key]:.0f} | "
                        f"{g[key] - d[key]:+.0f} µs |")  # fmt: skip
        if "ttft_p50_us" in d:
            dt, gt = d["ttft_p50_us"], g["ttft_p50_us"]
            rows.append(f"| {scenario} | TTFT p50 µs | {dt:.0f} | {gt:.0f} | {gt - dt:+.0f} µs |")
        rows.append(f"| {scenario} | fake CPU µs/call | {d['fake_cpu_us_per_call']:.0f} | "
                    f"{g['fake_cpu_us_per_call']:.0f} | |")  # fmt: skip
        dc, gc = d["client_cpu_us_per_call"], g["gateway_cpu_us_per_call"]
        rows.append(f"| {scenario} | SDK client / gateway CPU µs/call | {dc:.0f} | {gc:.0f} | "
                    f"{gc - dc:+.0f} µs |")  # fmt: skip
    errors = sum(s["errors"] for r in results.values() for s in r.values())
    head = [
        "### openai adapter: the gateway vs the same SDK calling the fake directly — "
        f"{datetime.date.today()}",
        "",
        f"- command: `python -m bench.adapters --seconds {args.seconds:g} --rounds {args.rounds}` "
        f"(medians of {args.rounds} alternating rounds)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (clients on one; the "
        f"gateway and the fake share the other), Python {platform.python_version()}; "
        f"load average at the end: {load_avg}",
        f"- errors: {errors}",
        "",
    ]
    return "\n".join(head + rows) + "\n"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


if __name__ == "__main__":
    main()
