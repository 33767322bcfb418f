"""The dashboard question: one GraphQL query vs the REST calls it replaces.

    python -m bench.graphql [--seconds 10] [--apps 5] [--collections 2]
                            [--model-dir data/models/all-MiniLM-L6-v2]

"This tenant's apps, each with its collections' document counts, last week's
usage per model, and the health of the models they use": one POST /graphql,
against the REST calls a client makes for the same data, in the same run on
one gateway (uvicorn, auth on, a developer key, usage recorded): GET
/v1/caller, /v1/apps, /v1/models/health and /v1/usage at once, then GET
/v1/collections/{id} for each app's collections at once (the fastest a REST
client can gather it; each round trip it waits on counts). Latency of the
whole answer at concurrency 1 and 16; the gateway's own CPU time per answer
from /proc. Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.rest import CLIENT_CORE, SERVER_CORE, Process

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
server: {{host: 127.0.0.1, port: 0, metrics_port: 0, grace_period_s: 1}}
rest: {{host: 127.0.0.1, port: 0}}
routing: {{probe_interval_s: 0}}
data_dir: {data}
dataset: {{embedder: {{model_dir: "{model}"}}, snapshot_interval_s: 0}}
models:
  chat: {{deployments: [{{name: chat-a, provider: mock, model: echo, options: {{tokens: 8}}}}]}}
  fast: {{deployments: [{{name: fast-a, provider: mock, model: echo, options: {{tokens: 8}}}}]}}
"""
DASHBOARD = """
query Dashboard($since: DateTime!) {
  caller { tenant }
  apps(first: 50) {
    nodes {
      name
      collections { name documentCount chunkCount }
      model { alias health { deployment healthy breakerState ewmaTtftMs errorRate } }
    }
  }
  usage(start: $since, groupBy: [MODEL]) { model requests inputTokens outputTokens }
}
"""


async def _seed(http: aiohttp.ClientSession, base: str, apps: int, collections: int) -> None:
    async def call(method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, base + path, json=body) as reply:
            if reply.status >= 300:
                raise RuntimeError(f"{method} {path}: {reply.status} {await reply.text()}")
            return await reply.json()

    for a in range(apps):
        names = []
        for c in range(collections):
            cid = f"c{a}x{c}"
            await call("POST", f"/v1/collections?collection_id={cid}", {})
            docs = [{"id": f"d{i}", "text": f"document {i} of {cid} about leave"} for i in range(3)]
            await call("POST", f"/v1/collections/{cid}/documents:upsert", {"documents": docs})
            names.append(f"collections/{cid}")
        model = "chat" if a % 2 == 0 else "fast"
        body = {"model": model, "retrieval": {"collections": names}}
        await call("POST", f"/v1/apps?app_id=app{a}", body)
        await call("POST", f"/v1/apps/app{a}:complete", {"query": "leave?"})
    await asyncio.sleep(2)  # usage is written in batches


async def _graphql(http: aiohttp.ClientSession, base: str, since: str) -> Any:
    body = {"query": DASHBOARD, "variables": {"since": since}}
    async with http.post(base + "/graphql", json=body) as reply:
        answer = await reply.json()
    if "errors" in answer:
        raise RuntimeError(answer["errors"])
    return answer["data"]


async def _rest(http: aiohttp.ClientSession, base: str, since: str) -> Any:
    async def get(path: str) -> Any:
        async with http.get(base + path) as reply:
            if reply.status != 200:
                raise RuntimeError(f"GET {path}: {reply.status}")
            return await reply.json()

    caller, apps, health, usage = await asyncio.gather(
        get("/v1/caller"), get("/v1/apps?page_size=50"), get("/v1/models/health"),
        get(f"/v1/usage?start_time={since}&group_by=model"),
    )  # fmt: skip
    retrievals = [app.get("retrieval", {}) for app in apps.get("apps", [])]
    wanted = {name for r in retrievals for name in r.get("collections", [])}
    collections = await asyncio.gather(*(get(f"/v1/{name}") for name in sorted(wanted)))
    return caller, apps, health, usage, collections


async def _load(
    base: str, key: str, since: str, how: Any, concurrency: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for _ in range(20):
            await how(http, base, since)
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await how(http, base, since)
                latencies.append((time.perf_counter() - t0) * 1e3)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    latencies.sort()
    return {
        "answers_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=Path("data/models/all-MiniLM-L6-v2"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "gateway.yaml"
        config.write_text(CONFIG.format(data=data, model=args.model_dir.resolve()))
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        env = {**os.environ, "INFERGATE_LOG_LEVEL": "INFO"}
        gateway = Process.start(argv, ["serving gRPC on", "serving HTTP on"], SERVER_CORE, env)
        try:
            base = "http://" + gateway.find(r"serving HTTP on (\S+)")
            key = gateway.find(r"(igk_\S+)")
            os.sched_setaffinity(0, {CLIENT_CORE})
            week_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)
            since = week_ago.strftime("%Y-%m-%dT%H:%M:%SZ")

            async def seed() -> None:
                headers = {"authorization": f"Bearer {key}"}
                async with aiohttp.ClientSession(headers=headers) as http:
                    await _seed(http, base, args.apps, args.collections)

            asyncio.run(seed())
            rows: dict[str, Any] = {}
            for concurrency in (1, 16):
                for name, how in (("graphql", _graphql), ("rest", _rest)):
                    cpu0 = gateway.cpu_seconds()
                    row = asyncio.run(_load(base, key, since, how, concurrency, args.seconds))
                    answers = row["answers_per_s"] * args.seconds
                    row["server_cpu_ms_per_answer"] = round(
                        (gateway.cpu_seconds() - cpu0) * 1e3 / max(answers, 1), 2
                    )
                    rows[f"{name} c={concurrency}"] = row
                    print(name, concurrency, json.dumps(row), flush=True)
        finally:
            gateway.stop()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
