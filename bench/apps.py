"""The App layer's hot-path cost: the gateway with auth + rate limits + usage
recording vs the same gateway with all three off, in one run.

    python -m bench.apps [--seconds 5] [--rounds 3] [--record]
    python -m bench.apps --spend [--calls 20000] [--record]

`--spend` measures, in process, what pricing and spend budgets add to one
metered call (µs per call): the interceptor's spend steps alone, with prices
and budgets off, with prices only, and with a key and a tenant budget on the
memory and on the Redis ledger (127.0.0.1:6379), one after another and 32 at
a time, in the same run.

Reuses bench/overhead.py's harness: each server in its own process pinned to
the last core, this load generator on the others, rounds alternating between
the two configurations, medians reported. Both send the same `authorization`
metadata, so the client does the same work; only the server's handling
differs. The guarded gateway's key has limits far above the offered load, so
every call takes both its request and token budgets (key and tenant) and is
settled afterwards, yet none is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
import yaml
from sqlalchemy import func, select

from bench import load, spend_bench
from bench.overhead import OUT, ROOT, SCENARIOS, Server, _medians
from gateway.apps.model import Tenant
from gateway.apps.store import Store
from gateway.apps.tables import usage
from gateway.identity import Role

HUGE = 1_000_000_000  # per minute: always within budget, but every call is metered


def _configs(workdir: Path) -> dict[str, Path]:
    base = yaml.safe_load((ROOT / "bench" / "gateway.yaml").read_text())
    base["rest"] = {"enabled": False}
    settings = {
        "plain": {"auth": {"enabled": False}, "usage": {"enabled": False}},
        "guarded": {"auth": {"enabled": True}, "limits": {"backend": "memory"},
                    "usage": {"enabled": True}},
    }  # fmt: skip
    paths = {}
    for name, apps in settings.items():
        data = workdir / name
        data.mkdir()
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, "data_dir": str(data), "apps": apps}))
        paths[name] = path
    return paths


async def _bench_key(data_dir: Path) -> str:
    """Bootstrap the guarded gateway's store (so it prints no key) and make the
    bench key: a user of a tenant, both with limits."""
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'infergate.db'}")
    try:
        await store.keys.bootstrap_admin("default")
        await store.tenants.create(Tenant("bench", "bench", HUGE, HUGE), "bench")
        _, secret = await store.keys.create("bench", Role.USER, "bench", rpm=HUGE, tpm=HUGE)
    finally:
        await store.aclose()
    return secret


async def measure(server: Server, seconds: float, metadata: Any) -> dict[str, dict[str, Any]]:
    """bench.overhead.measure, with the key on every call."""
    await load.run(server.address, "bench", streaming=False, concurrency=8, calls=500,
                   metadata=metadata)  # fmt: skip
    await load.run(server.address, "bench", streaming=True, concurrency=8, calls=200,
                   metadata=metadata)  # fmt: skip
    figures = {}
    for name, streaming, concurrency, calls in SCENARIOS:
        cpu = server.cpu_seconds()
        result = await load.run(
            server.address, "bench", streaming=streaming, concurrency=concurrency,
            seconds=None if calls else seconds, calls=calls, metadata=metadata,
        )  # fmt: skip
        summary = result.summary()
        summary["server_cpu_us_per_call"] = (server.cpu_seconds() - cpu) * 1e6 / result.calls
        figures[name] = summary
    return figures


def _stop(server: Server) -> None:
    """Server.stop, tolerating a slow exit: on this shared machine the
    interpreter's teardown after a clean stop has taken over 10 s."""
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        assert server.proc.stderr is not None
        server.proc.stderr.close()


async def _usage_rows(data_dir: Path) -> int:
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'infergate.db'}")
    try:
        async with store.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(usage))).scalar() or 0)
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed scenario")
    parser.add_argument("--rounds", type=int, default=3, help="alternating; medians reported")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--spend", action="store_true", help="pricing and budgets, in process")
    parser.add_argument("--calls", type=int, default=20_000, help="--spend: calls per case")
    args = parser.parse_args()
    if args.spend:
        spend_bench.main(args)
        return
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_cores = cores[-1], set(cores[:-1]) or {cores[0]}
    os.sched_setaffinity(0, client_cores)
    workdir = Path(tempfile.mkdtemp(prefix="infergate-bench-apps-"))
    try:
        run(args, workdir, server_core)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, server_core: int) -> None:
    configs = _configs(workdir)
    secret = asyncio.run(_bench_key(workdir / "guarded"))
    metadata = (("authorization", f"Bearer {secret}"),)
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, path in configs.items():
            argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)]
            server = Server.start(name, argv, server_core)
            try:
                rounds[name].append(uvloop.run(measure(server, args.seconds, metadata)))
            finally:
                _stop(server)
    results = {name: _medians(runs) for name, runs in rounds.items()}
    recorded = asyncio.run(_usage_rows(workdir / "guarded"))
    report = render(results, args, recorded)
    print(report)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "apps.json").write_text(json.dumps(results, indent=2))
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + report)


def render(
    results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, recorded: int
) -> str:
    plain, guarded = results["plain"], results["guarded"]
    rows = [
        "| scenario | metric | plain | auth+limits+usage | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    metrics = [
        ("rps", "calls/s"), ("tokens_per_s", "tokens/s"), ("p50_us", "p50 µs"),
        ("p99_us", "p99 µs"), ("server_cpu_us_per_call", "server CPU µs/call"),
    ]  # fmt: skip
    for scenario in plain:
        for key, label in metrics:
            if key in plain[scenario]:
                p, g = plain[scenario][key], guarded[scenario][key]
                rows.append(f"| {scenario} | {label} | {p:.0f} | {g:.0f} | {g / p:.2f} |")
    loss = {s: 1 - guarded[s]["rps"] / plain[s]["rps"] for s in plain}
    errors = sum(s["errors"] for r in results.values() for s in r.values())
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = [
        "### App layer: auth + rate limits + usage recording vs none — 2026-11-25",
        "",
        f"- command: `python -m bench.apps --seconds {args.seconds:g} --rounds {args.rounds}` "
        f"(medians of {args.rounds} alternating rounds)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (server pinned to 1 core, load "
        f"generator to the other), Python {platform.python_version()}; other engineers' work "
        f"shared the machine (`uptime` at the end: {uptime.split('load average:')[-1].strip()})",
        "- plain: `apps.auth.enabled: false`, `apps.usage.enabled: false`; guarded: a user key "
        "with per-key and per-tenant requests/min and tokens/min (memory limiter), usage "
        f"records batched to SQLite ({recorded} rows written over the run)",
        "- throughput loss (1 - guarded/plain calls/s): "
        + ", ".join(f"{s} {v:+.1%}" for s, v in loss.items())
        + f"; errors: {errors}",
        "",
    ]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    main()
