"""`python -m bench.apps --spend`: what pricing and spend budgets add to one
metered call, in process, each case in the same run (see bench/apps.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

from bench.overhead import ROOT
from gateway.apps.ledger import Ledger, MemoryLedger, RedisLedger
from gateway.apps.model import BudgetRule
from gateway.apps.spend import Spend
from gateway.config import parse_config
from router.pricing import PriceBook

REDIS_URL = os.environ.get("INFERGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HUGE = 10**15  # nano-dollars: never spent, so every call is reserved and settled
RULES = [BudgetRule("key", "bench", "k1", HUGE, "monthly"),
         BudgetRule("tenant", "bench", "bench", HUGE, "monthly")]  # fmt: skip
Step = Callable[[], Awaitable[None]]


def _book() -> PriceBook:
    deployments = [{"name": f"d{i}", "provider": "openai", "model": "gpt-4o-mini",
                    "options": {"api_key": "x"}} for i in range(3)]  # fmt: skip
    return PriceBook(parse_config({"models": {"chat": {"deployments": deployments}}}))


def _steps(book: PriceBook | None, spend: Spend | None) -> Step:
    """The interceptor's spend work for one call: estimate and reserve before,
    price and settle after (gateway/apps/access.py)."""

    async def step() -> None:
        hold = None
        if spend is not None and spend.active:
            amount = book.estimate("chat", 12, 256) if book is not None else 0
            hold = await spend.reserve("bench", "k1", "", amount)
        cost = book.price("chat", "d1").cost(12, 64, 0) if book is not None else 0
        if hold is not None and spend is not None:
            spend.settle(hold, cost)

    return step


async def _time(step: Step, calls: int, concurrency: int) -> float:
    """µs per call: wall time over `calls`, `concurrency` at a time."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await step()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.perf_counter() - started) * 1e6 / (per_worker * concurrency)


async def _spend(ledger: Ledger) -> Spend:
    spend = Spend(ledger)
    spend.use(RULES)
    return spend


async def measure(calls: int, rounds: int) -> dict[str, dict[int, float]]:
    book = _book()
    memory, redis_ledger = await _spend(MemoryLedger()), await _spend(RedisLedger(REDIS_URL))
    cases = {
        "off (no prices, no budgets)": _steps(None, None),
        "prices only": _steps(book, None),
        "prices + budgets, memory ledger": _steps(book, memory),
        "prices + budgets, Redis ledger": _steps(book, redis_ledger),
    }
    results: dict[str, dict[int, list[float]]] = {n: {1: [], 32: []} for n in cases}
    for _ in range(rounds):  # alternating, medians reported
        for name, step in cases.items():
            for concurrency in (1, 32):
                await _time(step, calls // 10, concurrency)  # warm up
                results[name][concurrency].append(await _time(step, calls, concurrency))
                if isinstance(redis_ledger.ledger, RedisLedger):
                    await redis_ledger.ledger.flush()
    await redis_ledger.ledger.aclose()
    return {n: {c: statistics.median(v) for c, v in by.items()} for n, by in results.items()}


def render(results: dict[str, dict[int, float]], args: argparse.Namespace) -> str:
    base = results["off (no prices, no budgets)"]
    rows = ["| case | µs/call, 1 at a time | added | µs/call, 32 at a time | added |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, by in results.items():
        rows.append(f"| {name} | {by[1]:.2f} | {by[1] - base[1]:+.2f} | {by[32]:.2f} | "
                    f"{by[32] - base[32]:+.2f} |")  # fmt: skip
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = [
        "### Spend: pricing and budget checks on the hot path — 2026-12-06",
        "",
        f"- command: `python -m bench.apps --spend --calls {args.calls} --rounds {args.rounds}` "
        f"(medians of {args.rounds} alternating rounds, {args.calls} calls per case)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Redis on 127.0.0.1; shared with other engineers' test "
        f"runs (`uptime`: {uptime.split('load average:')[-1].strip()})",
        "- what runs per call: the access interceptor's spend steps (gateway/apps/access.py): "
        "estimate the cost with the alias's dearest deployment, reserve it on a key and a "
        "tenant budget (one Lua script on Redis), price the real usage, settle (a second "
        "script, sent in the background). `off` is the baseline of the same run.",
        "",
    ]
    return "\n".join(head + rows) + "\n"


def main(args: argparse.Namespace) -> None:
    results = asyncio.run(measure(args.calls, args.rounds))
    report = render(results, args)
    print(report)
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + report)
