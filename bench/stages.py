"""Where a streamed OpenAI-route call's time goes before its first byte and
its first token, stage by stage, at concurrency 1.

    python -m bench.stages [--calls 300] [--token-delay-ms 5] [--keep-core-busy] [--root DIR]

The gateway (uvicorn, auth on with a `user`-role key, usage recorded) runs in
a subprocess with timestamps patched in at a few stages of each call, each
measured from the route handler's start: the body parsed; the call started
(the OpenAI body converted); the interceptor chain's handler; the adapter
posting upstream; the upstream's headers in; STARTED reaching the servicer's
context; the Streamed response called; the first body write (the headers and
the role event) handed to uvicorn and done; then the first token: its bytes
in from the upstream, the adapter's chunk, the call's batch, its write
handed to uvicorn and done. `--root` runs another checkout's gateway (a git
worktree) under the same probe. The fake OpenAI server (3
tokens, the given delay before each) and this client share the other core.
Medians over the calls after the first 50.

`--keep-core-busy` runs a `nice 19` spinner on the gateway's core, so that it
never idles between tokens: the difference is what waking an idle core costs
the same code on this machine (bench/RESULTS.md, issue 15).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.latency import user_key
from bench.rest import CLIENT_CORE, GATEWAY_YAML, PROMPT, ROOT, SERVER_CORE, Process

# Runs in the gateway's process: patches the stages, then serves.
PROBE = r"""
import atexit, contextlib, json, statistics, sys, time
import adapters.endpoint as endpoint
import gateway.rest.call as call
import gateway.rest.compat as compat
import gateway.rest.context as context
import gateway.rest.openai as openai_routes
import gateway.rest.responses as responses

now, current, rows = time.perf_counter_ns, {}, []

def mark(name):
    if "t0" in current and name not in current:
        current[name] = now() - current["t0"]

def after(module, name, stage):
    inner = getattr(module, name)
    async def timed(*args, **kwargs):
        out = await inner(*args, **kwargs)
        mark(stage)
        return out
    setattr(module, name, timed)

chat = openai_routes.chat_completions
async def chat_completions(request):
    global current
    current = {"t0": now()}  # a new row; the last one keeps what it got
    rows.append(current)
    return await chat(request)
openai_routes.chat_completions = chat_completions
after(compat, "json_body", "1 body parsed")
batches = compat.batches
def batches_called(*args):
    mark("2 call started")
    return batches(*args)
compat.batches = batches_called
after(call.Calls, "_handler", "3 handler chain")
post = endpoint.Endpoint.post
async def posted(self, body, deadline):
    mark("4 adapter posts")
    answer = await post(self, body, deadline)
    mark("5 upstream headers in")
    return answer
endpoint.Endpoint.post = posted
import adapters.http1 as http1
received = http1._Connection.data_received
def data_received(self, data):
    if "9 first body written" in current:
        mark("b token in")
    return received(self, data)
http1._Connection.data_received = data_received
import adapters.openai as openai_adapter
adapter_stream = openai_adapter.OpenAIProvider.stream
async def stream(self, *args):
    async with contextlib.aclosing(adapter_stream(self, *args)) as chunks:
        async for chunk in chunks:
            if getattr(chunk, "delta", None):
                mark("c adapter yields it")
            yield chunk
openai_adapter.OpenAIProvider.stream = stream
batched = call.Calls.batches
async def batch_out(self, *args):
    async with contextlib.aclosing(batched(self, *args)) as batches:
        async for batch in batches:
            if batch and batch[0].delta:
                mark("d the call yields it")
            yield batch
call.Calls.batches = batch_out
started = context.RestContext.send_initial_metadata
async def started_at(self, metadata):
    mark("6 STARTED at the servicer")
    return await started(self, metadata)
context.RestContext.send_initial_metadata = started_at
streamed = responses.Streamed.__call__
async def streamed_call(self, scope, receive, send):
    mark("7 Streamed called")
    async def first_send(message):
        if message["type"] == "http.response.body" and "9 first body written" not in current:
            mark("8 first body to uvicorn")
            await send(message)
            mark("9 first body written")
            return
        if message["type"] == "http.response.body" and "b token in" in current:
            mark("e token to uvicorn")
            await send(message)
            mark("f token written")
            return
        await send(message)
    return await streamed(self, scope, receive, first_send)
responses.Streamed.__call__ = streamed_call

def report():
    kept = rows[50:]
    if kept:
        names = sorted(set().union(*kept) - {"t0"})
        seen = {n: [r[n] for r in kept if n in r] for n in names}
        medians = {n: statistics.median(xs) / 1000 for n, xs in seen.items()}
        with open(sys.argv[1], "w") as out:
            json.dump({"calls": len(kept), "median_us": medians,
                       "seen": {n: len(xs) for n, xs in seen.items()}}, out)
atexit.register(report)
from gateway.cli import main
sys.exit(main(sys.argv[2:]))
"""


async def calls(url: str, key: str, count: int) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(count):
            async with http.post(url + "/v1/chat/completions", json=body) as reply:
                async for _line in reply.content:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--token-delay-ms", type=float, default=5)
    parser.add_argument("--keep-core-busy", action="store_true")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose gateway runs (a git worktree)"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CORE})
    fake = Process.start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--tokens", "3",
         "--token-delay-ms", str(args.token_delay_ms), "--uvloop"],
        ["listening on"], CLIENT_CORE,
    )  # fmt: skip
    spinner = None
    try:
        if args.keep_core_busy:
            spin = [sys.executable, "-c", "while True: pass"]
            spinner = subprocess.Popen(["nice", "-n", "19", *spin])
            os.sched_setaffinity(spinner.pid, {SERVER_CORE})
        with tempfile.TemporaryDirectory() as data:
            upstream = fake.find(r"listening on (\S+)").rstrip("/")
            config = Path(data) / "gateway.yaml"
            config.write_text(
                GATEWAY_YAML.format(server="uvicorn", upstream=upstream, data=data, auth="true")
            )
            probe, out = Path(data) / "probe.py", Path(data) / "stages.json"
            probe.write_text(PROBE)
            env = {**os.environ, "BENCH_FAKE_KEY": "sk-fake", "INFERGATE_LOG_LEVEL": "INFO",
                   "PYTHONPATH": str(args.root.resolve())}  # fmt: skip
            argv = [sys.executable, str(probe), str(out), "serve", "--config", str(config)]
            gateway = Process.start(argv, ["serving gRPC on", "serving HTTP on"], SERVER_CORE, env)
            try:
                url = "http://" + gateway.find(r"serving HTTP on (\S+)")
                key = asyncio.run(user_key(url, gateway.find(r"(igk_\S+)")))
                asyncio.run(calls(url, key, args.calls))
            finally:
                gateway.stop()
            if not out.is_file():
                raise SystemExit(
                    "no stage timings were written: the gateway did not exit cleanly, "
                    "or no more than 50 calls (the warm-up) ran"
                )
            result = json.loads(out.read_text())
    finally:
        fake.stop()
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    busy = ", the gateway's core kept busy" if args.keep_core_busy else ""
    print(f"{result['calls']} streamed calls, {args.token_delay_ms:g} ms before each token{busy}")
    print("| stage (from the route handler's start) | µs, median |\n|---|---:|")
    for stage, us in result["median_us"].items():
        seen = result["seen"][stage]
        some = "" if seen == result["calls"] else f" ({seen} of the calls)"
        print(f"| {stage}{some} | {us:.0f} |")


if __name__ == "__main__":
    main()
