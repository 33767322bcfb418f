"""The REST shim under load, in one run.

    python -m bench.rest shim   [--seconds 5] [--rounds 3]  # REST vs gRPC; uvicorn vs granian
    python -m bench.rest openai [--seconds 5] [--server uvicorn|granian ...]
                                [--litellm /tmp/litellm-venv/bin/litellm]

`shim`: one gateway process (mock provider, zero latency, 20 tokens) per ASGI
server, pinned to the last core; HTTP load from wrk (C, one thread) and gRPC
load from bench.load (Python grpc.aio), both pinned to the other core. The
gateway's own CPU time per call (from /proc) is reported beside client-side
RPS and latency, since on two cores the client may saturate first.

`openai`: wrk -> POST /v1/chat/completions -> router -> openai adapter -> the
fake OpenAI server (tests/fakes, zero latency), against LiteLLM's proxy (one
worker) over the same fake, side by side; "added" latency is the proxy's
minus the fake's own, measured in the same run (the fake alone on the other
core, as a proxy has it). RSS is read after the run.
Results (JSON) go to bench/out/; the figures are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TICK = os.sysconf("SC_CLK_TCK")
CORES = sorted(os.sched_getaffinity(0))
SERVER_CORE, CLIENT_CORE = CORES[-1], CORES[0]
PROMPT = load.PROMPT
GATEWAY_YAML = """
server: {{host: 127.0.0.1, port: 0, metrics_port: 0, grace_period_s: 1}}
rest: {{host: 127.0.0.1, port: 0, server: {server}}}
routing: {{probe_interval_s: 0}}
retry: {{retries: 0}}
apps: {{auth: {{enabled: {auth}}}}}
data_dir: {data}
models:
  m:
    deployments: [{{name: m, provider: mock, model: echo, options: {{tokens: 20}}}}]
  gpt:
    deployments:
      - name: fake
        provider: openai
        model: gpt-fake
        options: {{base_url: "{upstream}", api_key_env: BENCH_FAKE_KEY}}
"""
WRK_LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
{accept}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {{"calls":%d,"seconds":%f,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Process:
    """A server subprocess pinned to one core (or none); its stderr is drained in a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(
        cls, argv: list[str], wants: list[str], core: int | None, env: Any = None, cwd: Path = ROOT
    ) -> Process:
        """`cwd` is also where `python -m` imports from first, before PYTHONPATH."""
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env,
            start_new_session=True,  # its own process group: stop() ends its workers too
        )  # fmt: skip
        if core is not None:
            os.sched_setaffinity(proc.pid, {core})
        me = cls(proc)
        found = threading.Event()

        def drain() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                me.lines.append(line)
                if all(any(w in seen for seen in me.lines) for w in wants):
                    found.set()
            found.set()

        me.reader = threading.Thread(target=drain, daemon=True)
        me.reader.start()
        if not found.wait(120) or proc.poll() is not None:
            me.stop()
            raise RuntimeError(f"{argv[:3]} did not start:\n{''.join(me.lines[-20:])}")
        return me

    def find(self, pattern: str) -> str:
        for line in self.lines:
            if match := re.search(pattern, line):
                return match.group(1)
        raise RuntimeError(f"no {pattern!r} in the output")

    def cpu_seconds(self) -> float:
        """This process and its children's (LiteLLM's worker) user + system time."""
        pids = [self.proc.pid, *_children(self.proc.pid)]
        total = 0.0
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(stat[11]) + int(stat[12])) / TICK
        return total

    def rss_mib(self) -> float:
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return total / 1024

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.reader is not None:
            self.reader.join(5)  # the pipe's end: then its file can be closed
        if self.proc.stdout is not None and not (self.reader and self.reader.is_alive()):
            self.proc.stdout.close()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for kid in map(int, kids):
        found += [kid, *_children(kid)]
    return found


def wrk(
    url: str, body: dict[str, Any], concurrency: int, seconds: float, sse: bool, key: str = ""
) -> Any:
    accept = 'wrk.headers["Accept"] = "text/event-stream"' if sse else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA.format(body=json.dumps(body), accept=accept, key=key or "none"))
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "10s",
            "-s", script.name, url]  # fmt: skip
    out = subprocess.run(
        ["taskset", "-c", str(CLIENT_CORE), *argv], capture_output=True, text=True, check=True
    ).stdout
    os.unlink(script.name)
    result = json.loads(out.split("RESULT ", 1)[1])
    result["rps"] = result["calls"] / result["seconds"]
    if result["non2xx"] > result["calls"] / 100:  # a benchmark of error answers is no benchmark
        raise RuntimeError(f"{url}: {result['non2xx']} of {result['calls']} answers were not 2xx")
    return result


def measured(server: Process, run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one scenario and add the server's CPU µs per call."""
    before = server.cpu_seconds()
    result = run(*args)
    result["server_cpu_us_per_call"] = (
        (server.cpu_seconds() - before) * 1e6 / max(result["calls"], 1)
    )
    return result


def grpc_load(address: str, streaming: bool, concurrency: int, seconds: float) -> dict[str, Any]:
    os.sched_setaffinity(0, {CLIENT_CORE})
    import uvloop

    result = uvloop.run(
        load.run(address, "m", streaming=streaming, concurrency=concurrency, seconds=seconds)
    )
    return result.summary()  # type: ignore[no-any-return]


def start_gateway(server: str, upstream: str, data: str, auth: bool = False) -> Process:
    """With `auth`, the first admin key it prints is the one to call with."""
    config = Path(data) / f"gateway-{server}.yaml"
    text = GATEWAY_YAML.format(server=server, upstream=upstream, data=data, auth=str(auth).lower())
    config.write_text(text)
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "INFERGATE_LOG_LEVEL": "INFO"}
    return Process.start(argv, ["serving gRPC on", "serving HTTP on"], SERVER_CORE, env)


def shim(args: argparse.Namespace) -> dict[str, Any]:
    """The two ASGI servers alternate over `rounds`; each figure is the median."""
    runs: dict[str, list[dict[str, Any]]] = {"uvicorn": [], "granian": []}
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
    with tempfile.TemporaryDirectory() as data:
        for _ in range(args.rounds):
            for server, rows in runs.items():
                gateway = start_gateway(server, "http://127.0.0.1:9/v1", data)
                try:
                    rows.append(_shim_rows(gateway, body, args.seconds))
                finally:
                    gateway.stop()
    return {server: _medians(rows) for server, rows in runs.items()}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = {
                field: statistics.median(run[key][field] for run in runs) for field in first
            }
        else:
            out[key] = statistics.median(run[key] for run in runs)
    return out


def _shim_rows(gateway: Process, body: dict[str, Any], seconds: int) -> dict[str, Any]:
    grpc_address = gateway.find(r"serving gRPC on (\S+)")
    http = "http://" + gateway.find(r"serving HTTP on (\S+)")
    wrk(http + "/v1/generate", body, 8, 1, sse=False)  # warm-up
    rows: dict[str, Any] = {}
    for c in (1, 64):
        rows[f"REST unary c={c}"] = measured(
            gateway, wrk, http + "/v1/generate", body, c, seconds, False
        )
        rows[f"REST SSE (20 tokens) c={c}"] = measured(
            gateway, wrk, http + "/v1/generate:stream", body, c, seconds, True
        )
        rows[f"gRPC unary c={c}"] = measured(gateway, _in_child, grpc_address, False, c, seconds)
        rows[f"gRPC stream (20 tokens) c={c}"] = measured(
            gateway, _in_child, grpc_address, True, c, seconds
        )
    rows["rss_mib"] = gateway.rss_mib()
    return rows


def _in_child(address: str, streaming: bool, concurrency: int, seconds: float) -> dict[str, Any]:
    """bench.load in a fresh process pinned to the client core (this one stays free)."""
    code = (
        "import json,sys; from bench.rest import grpc_load; "
        f"print(json.dumps(grpc_load({address!r}, {streaming}, {concurrency}, {seconds})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def openai_path(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    fake = Process.start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--tokens", "20",
         "--uvloop"],
        ["listening on"], CLIENT_CORE,
    )  # fmt: skip
    upstream = fake.find(r"listening on (\S+)").rstrip("/")
    body = {"model": "gpt", "messages": [{"role": "user", "content": PROMPT}]}
    stream_body = {**body, "stream": True}
    try:
        rows = results["upstream (fake, direct)"] = {}
        # The fake on the proxies' core while it is measured alone: sharing
        # wrk's core at full speed, its p99 is the scheduler's, no baseline.
        os.sched_setaffinity(fake.proc.pid, {SERVER_CORE})
        for c in (1, 64):
            fake_body = {**body, "model": "gpt-fake"}
            rows[f"c={c}"] = wrk(upstream + "/chat/completions", fake_body, c, args.seconds, False)
            rows[f"stream c={c}"] = wrk(
                upstream + "/chat/completions", {**fake_body, "stream": True}, c, args.seconds, True
            )
        os.sched_setaffinity(fake.proc.pid, {CLIENT_CORE})
        with tempfile.TemporaryDirectory() as data:
            # Both check an API key on every call: the gateway its own, LiteLLM a master key.
            for server in args.server:
                home = Path(data) / server  # a fresh store: the gateway prints its first key
                home.mkdir()
                gateway = start_gateway(server, upstream, str(home), auth=True)
                try:
                    url = "http://" + gateway.find(r"serving HTTP on (\S+)")
                    key = gateway.find(r"(igk_\S+)")
                    results[f"infergate ({server})"] = _proxy_rows(
                        gateway, url + "/v1/chat/completions", body, stream_body, args.seconds, key
                    )
                finally:
                    gateway.stop()
            if args.litellm:
                litellm = start_litellm(args.litellm, upstream, data)
                try:
                    url = "http://127.0.0.1:4011/v1/chat/completions"
                    results["litellm"] = _proxy_rows(
                        litellm, url, body, stream_body, args.seconds, "sk-bench-master"
                    )
                finally:
                    litellm.stop()
    finally:
        fake.stop()
    for name, rows in results.items():
        if name != "upstream (fake, direct)":
            for key, row in rows.items():
                if isinstance(row, dict):
                    base = results["upstream (fake, direct)"][key]
                    row["added_p50_us"] = row["p50_us"] - base["p50_us"]
                    row["added_p99_us"] = row["p99_us"] - base["p99_us"]
    return results


def _proxy_rows(
    proxy: Process,
    url: str,
    body: dict[str, Any],
    stream_body: dict[str, Any],
    seconds: float,
    key: str,
) -> dict[str, Any]:
    wrk(url, body, 4, 2, False, key)  # warm-up: connections, caches
    rows: dict[str, Any] = {}
    for c in (1, 64):
        rows[f"c={c}"] = measured(proxy, wrk, url, body, c, seconds, False, key)
        rows[f"stream c={c}"] = measured(proxy, wrk, url, stream_body, c, seconds, True, key)
    rows["rss_mib"] = proxy.rss_mib()
    return rows


def start_litellm(binary: str, upstream: str, data: str) -> Process:
    config = Path(data) / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt\n"
        "    litellm_params:\n"
        "      model: openai/gpt-fake\n"
        f"      api_base: {upstream}\n"
        "      api_key: sk-fake\n"
    )
    argv = [binary, "--config", str(config), "--port", "4011", "--host", "127.0.0.1",
            "--num_workers", "1"]  # fmt: skip
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": "sk-bench-master"}
    proxy = Process.start(argv, ["Proxy initialized"], SERVER_CORE, env)
    for _ in range(600):  # its uvicorn logs nothing at this level: wait for the port
        try:
            socket.create_connection(("127.0.0.1", 4011), 1).close()
            return proxy
        except OSError:
            time.sleep(0.1)
    proxy.stop()
    raise RuntimeError("LiteLLM did not open its port")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("shim", "openai"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="shim: alternating rounds")
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm")
    parser.add_argument(
        "--server",
        nargs="+",
        default=["uvicorn", "granian"],
        help="openai: the gateway's ASGI servers",
    )
    args = parser.parse_args()
    results = shim(args) if args.what == "shim" else openai_path(args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"rest-{args.what}.json").write_text(json.dumps(results, indent=2))
    for name, rows in results.items():
        print(f"\n## {name}")
        for key, row in rows.items():
            print(f"{key:32s} {json.dumps(row) if isinstance(row, dict) else row}")


if __name__ == "__main__":
    main()
