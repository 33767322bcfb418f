"""Workflow engine overhead, against mock models that answer instantly.

    python -m bench.workflows [--seconds 2] [--rounds 3] [--concurrency 1,64] [--json PATH]

Every model is the mock provider's `echo?tokens=8` (no simulated latency), so
what is measured is the gateway's own cost. Three parts:

1. engine, in process (no gRPC, no store): chains `start -> N nodes -> end`,
   N = 1, 5, 20, run one after another. "µs/run" is the mean wall time of a
   whole run (events consumed); "µs/added node" is the least-squares slope
   over N. For `llm` chains the same N `Router.stream` calls the nodes make
   (same requests, consumed the same way) are timed directly, alternating with
   the engine: "llm - direct" is what the engine adds to the model calls.
   Then part 2's fan-out workflow twice: the engine alone, and the way
   RunWorkflowUnary runs it less gRPC (WorkflowRunner over a SQLite store:
   prepared, recorded, read back); the difference is the App layer's
   bookkeeping per run.
2. fan-out over gRPC: a gateway subprocess (`infergate serve`; auth, usage and
   REST off; SQLite store in a temp dir) pinned to one core, this client to
   the others. `start -> {llm a, llm b} -> template -> end` by
   RunWorkflowUnary vs the client calling Router.Generate for a and b with
   asyncio.gather and joining the texts. Latency p50/p99 of both, "added" =
   workflow - direct, runs/s, and the server's own CPU per run (from /proc).
3. `start -> llm -> end` at the highest concurrency: RunWorkflowUnary,
   RunWorkflow (streamed to its run_finished) and, as the baseline, one
   Router.Generate.

A workflow run over gRPC costs what users get: the saved version read and its
definition checked again (2 store reads), the run record written when it
starts and when it ends (2 SQLite transactions), and for RunWorkflowUnary the
record read back as the answer. Cases alternate within each round (order
reversed every other round); medians over rounds are reported. Raw figures
go to bench/out/workflows.json (`--json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import uvloop
import yaml
from google.protobuf import struct_pb2

from adapters import build_provider
from bench.load import PROMPT, Result
from bench.overhead import OUT, ROOT, Server
from gateway.apps.store import Store
from gateway.apps.workflow_runner import WorkflowRunner, new_run_id
from gateway.apps.workflows.engine import Run
from gateway.apps.workflows.events import RunFinished
from gateway.apps.workflows.nodes.base import Services
from gateway.apps.workflows.validate import load
from gateway.config import parse_config
from gateway.pb import app_pb2, app_pb2_grpc, router_pb2, router_pb2_grpc
from router.router import Router
from router.types import Message, Params, Request

MODEL = {"deployments": [{"name": "mock", "provider": "mock", "model": "echo?tokens=8"}]}
LENGTHS = (1, 5, 20)
PROMPTS = {"a": f"first: {PROMPT}", "b": f"second: {PROMPT}"}


def _wf(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "inputs": {"q": {"type": "string", "required": True}},
        "nodes": [{"id": "start", "type": "start"}, *nodes],
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


def _llm(node: str, prompt: str = "{{ start.q }}") -> dict[str, Any]:
    config = {"model": "chat", "messages": [{"role": "user", "content": prompt}]}
    return {"id": node, "type": "llm", "config": config}


def _end(ref: str) -> dict[str, Any]:
    return {"id": "end", "type": "end", "config": {"outputs": {"text": f"{{{{ {ref}.text }}}}"}}}


def chain(kind: str, n: int) -> dict[str, Any]:
    """start -> n1 -> ... -> nN -> end, every node `template` or `llm`."""
    ids = [f"n{i}" for i in range(1, n + 1)]
    if kind == "llm":
        nodes = [_llm(i) for i in ids]
    else:
        sources = ["{{ start.q }}"] + [f"{{{{ {i}.text }}}}" for i in ids[:-1]]
        nodes = [{"id": i, "type": "template", "config": {"template": f"{s}."}}
                 for i, s in zip(ids, sources, strict=True)]  # fmt: skip
    path = ["start", *ids, "end"]
    return _wf([*nodes, _end(ids[-1])], list(itertools.pairwise(path)))


FANOUT = _wf(  # 5 nodes
    [_llm("a", "first: {{ start.q }}"), _llm("b", "second: {{ start.q }}"),
     {"id": "merge", "type": "template", "config": {"template": "{{ a.text }}\n{{ b.text }}"}},
     _end("merge")],
    [("start", "a"), ("start", "b"), ("a", "merge"), ("b", "merge"), ("merge", "end")],
)  # fmt: skip
SINGLE = _wf([_llm("a"), _end("a")], [("start", "a"), ("a", "end")])  # 3 nodes


# --- part 1: the engine in process -------------------------------------------------------


class _NoRetriever:
    async def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise NotImplementedError


def _router() -> Router:
    config = parse_config({"routing": {"probe_interval_s": 0}, "models": {"chat": MODEL}})
    return Router(config, build_provider)


async def _timed(once: Callable[[], Awaitable[None]], seconds: float) -> float:
    """Mean µs per call of `once`, called back to back for `seconds`."""
    calls, started = 0, time.perf_counter()
    stop = started + seconds
    while (now := time.perf_counter()) < stop or calls == 0:
        await once()
        calls += 1
    return (now - started) * 1e6 / calls


async def engine_round(
    router: Router, runner: WorkflowRunner, seconds: float, reverse: bool
) -> dict[str, float]:
    services = Services(lambda: router, _NoRetriever())
    inputs = {"q": PROMPT}
    messages = (Message("user", PROMPT),)

    def engine(definition: Any) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            run = Run(definition, inputs, services, tenant="bench", run_id="r")
            async for event in run.events():
                last = event
            assert isinstance(last, RunFinished) and last.status == "succeeded", last

        return once

    def direct(n: int) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            for _ in range(n):
                request = Request(
                    "chat", messages, Params(), request_id="wf-" + secrets.token_hex(8)
                )
                routed = router.stream(request, None)
                async with contextlib.aclosing(routed.chunks()) as chunks:
                    async for _chunk in chunks:
                        pass

        return once

    cases = [(f"{kind} N={n}", engine(load(chain(kind, n)))) for kind in ("template", "llm")
             for n in LENGTHS]  # fmt: skip
    cases += [(f"direct N={n}", direct(n)) for n in LENGTHS]

    async def recorded() -> None:  # RunWorkflowUnary's path, less gRPC
        saved, definition, checked = await runner.prepare("bench", "fanout", 0, inputs)
        run_id = new_run_id()
        events = runner.run("bench", "", saved, definition, checked, None, run_id)
        async with contextlib.aclosing(events) as stream:
            async for _event in stream:
                pass
        assert (await runner.runs.get("bench", run_id)).status == "succeeded"

    cases += [("fanout engine", engine(load(FANOUT))), ("fanout recorded", recorded)]
    for _, once in cases:  # warm up
        for _ in range(20):
            await once()
    out = {}
    for name, once in cases[::-1] if reverse else cases:
        out[name] = await _timed(once, seconds)
    return out


async def in_process(db: Path, args: argparse.Namespace) -> dict[str, float]:
    """Part 1's rounds, with a store of its own for the recorded runs."""
    router = _router()
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        services = Services(lambda: router, _NoRetriever())
        runner = WorkflowRunner(store.workflows, store.runs, lambda: services)
        await runner.create("bench", "fanout", "fanout", "", FANOUT, "bench")
        rounds = [await engine_round(router, runner, args.seconds, r % 2 == 1)
                  for r in range(args.rounds)]  # fmt: skip
    finally:
        await store.aclose()
    return _medians(rounds)


def _slope(us: dict[str, float], kind: str) -> float:
    return statistics.linear_regression(LENGTHS, [us[f"{kind} N={n}"] for n in LENGTHS]).slope


# --- parts 2 and 3: a gateway over gRPC --------------------------------------------------


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def _generate(prompt: str) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(
        model="chat", messages=[router_pb2.Message(role="user", content=prompt)]
    )


async def closed_loop(
    call: Callable[[int], Awaitable[bool]], concurrency: int, seconds: float
) -> Result:
    """`concurrency` callers, each calling back to back for `seconds`;
    `call(i)` (i: the caller) answers whether the call succeeded."""
    result = Result()
    stop_at = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter_ns()
            try:
                ok = await call(i)
            except grpc.aio.AioRpcError:
                ok = False
            if not ok:
                result.errors += 1
                continue
            result.latency.record_value((time.perf_counter_ns() - started) // 1000)
            result.calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def grpc_round(
    server: Server, seconds: float, concurrency: list[int], reverse: bool
) -> dict[str, dict[str, float]]:
    channels = [grpc.aio.insecure_channel(server.address) for _ in range(4)]
    apps = [app_pb2_grpc.AppStub(c) for c in channels]
    routers = [router_pb2_grpc.RouterStub(c) for c in channels]
    inputs = _struct({"q": PROMPT})
    fanout = app_pb2.RunWorkflowRequest(name="workflows/fanout", inputs=inputs)
    single = app_pb2.RunWorkflowRequest(name="workflows/single", inputs=inputs)
    gen = {k: _generate(p) for k, p in PROMPTS.items()}

    async def wf_unary(req: app_pb2.RunWorkflowRequest, i: int) -> bool:
        run = await apps[i % 4].RunWorkflowUnary(req)
        return bool(run.status == "succeeded")

    async def wf_stream(req: app_pb2.RunWorkflowRequest, i: int) -> bool:
        async for event in apps[i % 4].RunWorkflow(req):
            last = event
        return bool(last.run_finished.status == "succeeded")

    async def direct_fanout(i: int) -> bool:
        a, b = await asyncio.gather(*(routers[i % 4].Generate(gen[k]) for k in "ab"))
        joined = f"{a.text}\n{b.text}"  # what the merge node renders
        return bool(a.text and b.text and joined)

    async def direct_single(i: int) -> bool:
        return bool((await routers[i % 4].Generate(gen["a"])).text)

    top = max(concurrency)
    cases: list[tuple[str, int, Callable[[int], Awaitable[bool]]]] = []
    for c in concurrency:
        cases += [(f"fanout workflow c={c}", c, lambda i: wf_unary(fanout, i)),
                  (f"fanout direct c={c}", c, direct_fanout)]  # fmt: skip
    cases += [
        (f"single RunWorkflowUnary c={top}", top, lambda i: wf_unary(single, i)),
        (f"single RunWorkflow c={top}", top, lambda i: wf_stream(single, i)),
        (f"single Generate c={top}", top, direct_single),
    ]
    for _, c, call in cases:  # warm up
        await closed_loop(call, min(c, 8), min(seconds, 0.5))
    out = {}
    for name, c, call in cases[::-1] if reverse else cases:
        cpu = server.cpu_seconds()
        result = await closed_loop(call, c, seconds)
        summary = result.summary()
        summary["server_cpu_us"] = (server.cpu_seconds() - cpu) * 1e6 / max(result.calls, 1)
        out[name] = summary
    for channel in channels:
        await channel.close()
    return out


async def _create_workflows(address: str) -> None:
    """Save both workflows; check the fan-out answers what the direct calls join."""
    async with grpc.aio.insecure_channel(address) as channel:
        app, router = app_pb2_grpc.AppStub(channel), router_pb2_grpc.RouterStub(channel)
        for wid, doc in (("fanout", FANOUT), ("single", SINGLE)):
            workflow = app_pb2.Workflow(display_name=wid, definition=_struct(doc))
            await app.CreateWorkflow(
                app_pb2.CreateWorkflowRequest(workflow_id=wid, workflow=workflow)
            )
        run = await app.RunWorkflowUnary(
            app_pb2.RunWorkflowRequest(name="workflows/fanout", inputs=_struct({"q": PROMPT}))
        )
        texts = [(await router.Generate(_generate(p))).text for p in PROMPTS.values()]
        assert run.outputs["text"] == "\n".join(texts), (run.outputs, texts)


def _serve(workdir: Path, core: int) -> Server:
    config = yaml.safe_load((ROOT / "bench" / "gateway.yaml").read_text())
    config.update(data_dir=str(workdir / "data"), models={"chat": MODEL})
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)]
    return Server.start("gateway", argv, core)


def _stop(server: Server) -> None:
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


# --- the run and its report --------------------------------------------------------------


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over rounds (calls and errors: the sum)."""
    first = runs[0]
    if isinstance(next(iter(first.values())), dict):
        return {k: _medians([r[k] for r in runs]) for k in first}
    total = {"calls", "errors"}
    return {k: (sum if k in total else statistics.median)(r[k] for r in runs) for k in first}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case per round")
    parser.add_argument("--rounds", type=int, default=3, help="cases alternate; medians reported")
    parser.add_argument("--concurrency", default="1,64", help="part 2's client concurrency")
    parser.add_argument("--json", type=Path, default=OUT / "workflows.json", help="raw figures")
    args = parser.parse_args(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_cores = cores[-1], set(cores[:-1]) or {cores[0]}
    os.sched_setaffinity(0, client_cores)

    load_before = _load()
    workdir = Path(tempfile.mkdtemp(prefix="infergate-bench-workflows-"))
    try:
        engine = uvloop.run(in_process(workdir / "engine.db", args))
        server = _serve(workdir, server_core)
        try:
            uvloop.run(_create_workflows(server.address))
            served = [uvloop.run(grpc_round(server, args.seconds, concurrency, r % 2 == 1))
                      for r in range(args.rounds)]  # fmt: skip
        finally:
            _stop(server)
        runs = _count_runs(workdir / "data" / "infergate.db")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "engine": engine, "grpc": _medians(served), "runs_recorded": runs,
        "load": [load_before, _load()],
    }  # fmt: skip
    print(render(results, args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


def _count_runs(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("select count(*) from workflow_runs").fetchone()[0])


def _load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    us, served = results["engine"], results["grpc"]
    lines = [
        f"command: `python -m bench.workflows --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--concurrency {args.concurrency}` (medians of {args.rounds} alternating rounds)",
        f"date: {datetime.date.today()}; machine: {_cpu()}, {platform.machine()}, "
        f"{os.cpu_count()} cores (server pinned to 1, client to the rest), Python "
        f"{platform.python_version()}; load average before / after: " + " / ".join(results["load"]),
        "",
        "engine in process (µs/run, one run at a time):",
        "",
        "| chain | " + " | ".join(f"N={n}" for n in LENGTHS) + " | µs/added node |",
        "|---|" + "---:|" * (len(LENGTHS) + 1),
    ]
    for kind in ("template", "llm", "direct"):
        cells = " | ".join(f"{us[f'{kind} N={n}']:.0f}" for n in LENGTHS)
        lines.append(f"| {kind} | {cells} | {_slope(us, kind):.1f} |")
    diff = " | ".join(f"{us[f'llm N={n}'] - us[f'direct N={n}']:.0f}" for n in LENGTHS)
    book = us["fanout recorded"] - us["fanout engine"]
    lines += [
        f"| llm - direct | {diff} | {_slope(us, 'llm') - _slope(us, 'direct'):.1f} |",
        "",
        f"fan-out workflow in process: engine alone {us['fanout engine']:.0f} µs/run; "
        f"prepared, recorded and read back (RunWorkflowUnary less gRPC, SQLite) "
        f"{us['fanout recorded']:.0f} µs/run: the App layer adds {book:.0f} µs",
        "",
        f"over gRPC (workflow runs recorded in the store: {results['runs_recorded']}):",
        "",
        "| case | runs/s | p50 µs | p99 µs | server CPU µs/run | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in served.items():
        lines.append(f"| {name} | {s['rps']:.0f} | {s['p50_us']:.0f} | {s['p99_us']:.0f} | "
                     f"{s['server_cpu_us']:.0f} | {s['errors']:.0f} |")  # fmt: skip
    lines.append("")
    for c in [int(c) for c in args.concurrency.split(",")]:
        wf, direct = served[f"fanout workflow c={c}"], served[f"fanout direct c={c}"]
        lines.append(
            f"fan-out added by the workflow at c={c}: p50 {wf['p50_us'] - direct['p50_us']:+.0f} "
            f"µs, p99 {wf['p99_us'] - direct['p99_us']:+.0f} µs, "
            f"runs/s {wf['rps'] / direct['rps']:.2f}x direct"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
