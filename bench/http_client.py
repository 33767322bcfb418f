"""The upstream's HTTP client alone: the same POST to the same local fake,
sequentially, through an aiohttp session and through adapters/http1.Pool.

    python -m bench.http_client [--calls 4000]

Client CPU (this process's user + system time) and wall time per call, two
alternating rounds each; the fake OpenAI server runs on the other core.
Results: bench/RESULTS.md (issue 24).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop

from adapters import http1
from bench.rest import CLIENT_CORE, PROMPT, SERVER_CORE, Process

BODY = json.dumps({"model": "gpt-fake", "messages": [{"role": "user", "content": PROMPT}]})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-fake"}


async def main(url: str, calls: int) -> None:
    pool = http1.Pool(url)
    async with aiohttp.ClientSession() as session:

        async def with_aiohttp() -> None:
            async with session.post(url + "/chat/completions", data=BODY, headers=HEADERS) as r:
                json.loads(await r.read())

        async def with_http1() -> None:
            async with await pool.request("POST", "/chat/completions", BODY.encode(), HEADERS) as r:
                json.loads(await r.read())

        clients: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("aiohttp", with_aiohttp), ("http1", with_http1),
        ] * 2  # fmt: skip
        for name, call in clients:
            for _ in range(200):
                await call()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                await call()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{name}: {1e6 * cpu / calls:.0f} µs client CPU per call, "
                  f"{1e6 * wall / calls:.0f} µs wall per call")  # fmt: skip
    await pool.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    fake = Process.start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--uvloop"],
        ["listening on"], SERVER_CORE,
    )  # fmt: skip
    os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        uvloop.run(main(fake.find(r"listening on (\S+)").rstrip("/"), args.calls))
    finally:
        fake.stop()
