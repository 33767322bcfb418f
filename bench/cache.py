"""The request cache's cost: hit latency and miss overhead, exact and
semantic, memory and Redis backends, at concurrency 1 and 64, in one run.

    python -m bench.cache [--seconds 3] [--model-dir data/models/all-MiniLM-L6-v2]

In-process, through `Router.generate` (what every edge calls) on a mock
deployment that answers at once, so that the figures are the cache's own:
- `none`: the cache disabled — the baseline a miss's overhead is measured from;
- `exact hit` / `exact miss`: temperature 0, prompts seen before / never seen;
- `semantic hit` / `semantic miss`: an alias with semantic matching on (and
  `with_sampling`, requests at temperature 0.7, so no exact lookup comes
  first and a hit is not copied under the asker's key: every call embeds),
  prompts embedded by the real all-MiniLM-L6-v2 (the dataset embedder,
  micro-batched); hits ask the paraphrases (bench/data/semantic_pairs.jsonl)
  of warmed prompts, misses ask prompts never seen.
Each row: calls/s, p50 and p99 latency (µs), and process CPU per call (µs);
"overhead" is a miss's p50 (c=1) or CPU per call (c=64) minus `none`'s.
Redis runs against 127.0.0.1:6379 under a key prefix of its own, deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from adapters import build_provider
from adapters.redis_cache import RedisSharedPrompts, build_cache
from indexer.onnx_embedder import OnnxEmbedder
from router.config import CacheConfig, parse_config
from router.request_cache import RequestCache
from router.router import Router
from router.types import Message, Params, Request

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
REDIS_URL = "redis://127.0.0.1:6379/0"
COLD = Params(temperature=0)
SAMPLED = Params(temperature=0.7)


def router_for(cache: RequestCache | None) -> Router:
    deployment = {"name": "a", "provider": "mock", "model": "echo?tokens=4"}
    config = parse_config(
        {
            "models": {
                "exact": {"deployments": [deployment]},
                # Sampled requests: a hit is not copied under the asker's exact key
                # (as a temperature-0 one is), so every call of a row embeds.
                "semantic": {
                    "deployments": [deployment],
                    "cache": {"semantic": True, "with_sampling": True},
                },
            },
            "cache": {"enabled": cache is not None},
            "routing": {"probe_interval_s": 0},
        }
    )
    return Router(config, build_provider, cache=cache)


def ask(alias: str, text: str) -> Request:
    params = SAMPLED if alias == "semantic" else COLD
    return Request(alias, (Message("system", "be brief"), Message("user", text)), params)


async def measure(
    router: Router, requests: Callable[[], Request], concurrency: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop:
            request = requests()
            started = time.perf_counter()
            await router.generate(request)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await router.flush()
    latencies.sort()
    n = len(latencies)
    return {
        "calls": n,
        "calls_s": n / wall,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[min(n - 1, int(n * 0.99))] * 1e6,
        "cpu_us": cpu / n * 1e6,
    }


def paraphrases(threshold_hits: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [a for a, _ in threshold_hits], [b for _, b in threshold_hits]


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    same = [(p["a"], p["b"]) for p in pairs if p["same"]]
    embedder = OnnxEmbedder(args.model_dir)
    rows: list[dict[str, Any]] = []
    unique = itertools.count()

    def novel(alias: str) -> Callable[[], Request]:
        return lambda: ask(alias, f"Question {uuid.uuid4().hex} number {next(unique)}: explain it")

    none = router_for(None)
    for concurrency in (1, 64):
        result = await measure(none, novel("exact"), concurrency, args.seconds)
        rows.append({"backend": "-", "case": "none", "c": concurrency, **result})
    for backend in ("memory", "redis"):
        prefix = f"infergate:bench:{uuid.uuid4().hex}:"
        config = CacheConfig(enabled=True, backend=backend, redis_url=REDIS_URL, key_prefix=prefix)
        shared = RedisSharedPrompts(config, 100_000) if backend == "redis" else None
        cache = RequestCache(build_cache(config), config, shared=shared)
        cache.embedder = embedder
        cache.start()
        router = router_for(cache)
        try:
            warmed = [f"Cached question {i}: what is a gateway?" for i in range(256)]
            for text in warmed:
                await router.generate(ask("exact", text))
            originals, asked = paraphrases(same)
            for text in originals:
                await router.generate(ask("semantic", text))
            await router.flush()
            hits = [b for b in asked if (await router.generate(ask("semantic", b))).cache == "hit"]
            print(f"{backend}: {len(hits)} of {len(asked)} paraphrases hit (default threshold)")
            cases: dict[str, tuple[str, list[str] | None]] = {
                "exact hit": ("exact", warmed),
                "exact miss": ("exact", None),
                "semantic hit": ("semantic", hits),
                "semantic miss": ("semantic", None),
            }
            for case, (alias, texts) in cases.items():
                for concurrency in (1, 64):
                    requests = novel(alias) if texts is None else _cycle(alias, texts)
                    result = await measure(router, requests, concurrency, args.seconds)
                    print(f"  {backend} {case} c={concurrency}: {result['calls_s']:,.0f}/s",
                          flush=True)  # fmt: skip
                    rows.append({"backend": backend, "case": case, "c": concurrency, **result})
        finally:
            await router.aclose()
            await cache.aclose()
            if backend == "redis":
                client = redis.Redis.from_url(REDIS_URL)
                keys = [k async for k in client.scan_iter(match=prefix + "*")]
                if keys:
                    await client.delete(*keys)
                await client.aclose()
    await embedder.aclose()
    return rows


def _cycle(alias: str, texts: list[str]) -> Callable[[], Request]:
    requests = itertools.cycle([ask(alias, t) for t in texts])
    return lambda: next(requests)


def report(rows: list[dict[str, Any]]) -> str:
    base = {r["c"]: r for r in rows if r["case"] == "none"}
    lines = [
        "| backend | case | c | calls/s | p50 µs | p99 µs | CPU µs/call | overhead µs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base[r["c"]]
        extra = r["p50_us"] - b["p50_us"] if r["c"] == 1 else r["cpu_us"] - b["cpu_us"]
        shown = "" if r["case"] == "none" else f"{extra:+.0f}"
        lines.append(
            f"| {r['backend']} | {r['case']} | {r['c']} | {r['calls_s']:,.0f} | {r['p50_us']:,.0f} "
            f"| {r['p99_us']:,.0f} | {r['cpu_us']:,.0f} | {shown} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case and concurrency")
    parser.add_argument("--model-dir", type=Path, default=Path("data/models/all-MiniLM-L6-v2"))
    args = parser.parse_args()
    if not (args.model_dir / "model.onnx").exists():
        raise SystemExit(f"no model at {args.model_dir}: run `infergate model fetch`")
    started = datetime.datetime.now(datetime.UTC)
    rows = asyncio.run(run(args))
    print(f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(report(rows))


if __name__ == "__main__":
    main()
