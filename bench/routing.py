"""Routing decision cost: µs per plan (the ordered candidates with skip reasons)
for each strategy at 10 and 100 deployments, in process, no I/O.

    python -m bench.routing [--record]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import timeit
from pathlib import Path

from adapters import build_provider
from router.config import STRATEGIES, RouterConfig
from router.router import Router
from router.types import Message, Request

ROOT = Path(__file__).resolve().parent.parent


def router_for(strategy: str, size: int) -> Router:
    deployments = [
        {"name": f"d{i}", "provider": "mock", "model": "echo", "weight": 1 + i % 5}
        for i in range(size)
    ]
    models = {"m": {"strategy": strategy, "deployments": deployments}}
    router = Router(RouterConfig.model_validate({"models": models}), build_provider)
    for i, d in enumerate(router.model("m").deployments):  # realistic state for the scores
        d.state.ewma_ttft_s = d.state.ewma_token_s = 0.001 * (1 + i % 7)
        d.state.in_flight = i % 3
    return router


def per_pick_us(strategy: str, size: int, stream: bool, number: int) -> float:
    router = router_for(strategy, size)
    request = Request("m", (Message("user", "hi"),))
    best = min(timeit.repeat(lambda: router.plan(request, stream), number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    rows = ["| strategy | 10 deployments µs/pick | 100 deployments µs/pick |", "|---|---:|---:|"]
    for strategy in STRATEGIES:
        small = per_pick_us(strategy, 10, True, 20_000)
        large = per_pick_us(strategy, 100, True, 2_000)
        rows.append(f"| {strategy} | {small:.2f} | {large:.2f} |")
    report = "\n".join(
        [
            f"### Routing decision cost — {datetime.date.today()}",
            "",
            "- command: `python -m bench.routing`",
            f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; best of 5 timeit runs, streaming requests",
            "- a pick is `Router.plan`: every deployment's skip check (breaker, rate "
            "limit, probe) plus the strategy's order",
            "",
            *rows,
        ]
    )
    print(report)
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + report + "\n")


if __name__ == "__main__":
    main()
