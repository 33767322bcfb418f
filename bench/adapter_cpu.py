"""An HTTP adapter's own cost: the client CPU per call of `generate` and of a
20-token `stream`, the adapter called in this process, sequentially, against
the vendor's fake (tests/fakes) in its own process on the other core.

    python -m bench.adapter_cpu [--vendor openai anthropic] [--calls 2000] [--rounds 2]

CPU is this process's user + system time per call (the adapter: request
body, HTTP, parsing the answer or each event), wall the time per call; rounds
alternate the vendors. Run it from two checkouts in turn to compare them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import uvloop

from bench.rest import CLIENT_CORE, PROMPT, SERVER_CORE, Process
from router.provider import Provider
from router.types import Message, Request

KEY_ENV = "INFERGATE_BENCH_VENDOR_KEY"


def provider(vendor: str, base_url: str) -> Provider:
    options = {"base_url": base_url, "api_key_env": KEY_ENV}
    if vendor == "anthropic":
        from adapters.anthropic import AnthropicProvider

        return AnthropicProvider("claude-fake", options)
    from adapters.openai import OpenAIProvider

    return OpenAIProvider("gpt-fake", options)


async def measure(adapter: Provider, calls: int) -> dict[str, float]:
    request = Request(model="m", messages=(Message("user", PROMPT),))
    figures: dict[str, float] = {}

    async def generate() -> None:
        await adapter.generate(request, None)

    async def stream() -> None:
        async for _ in adapter.stream(request, None):
            pass

    try:
        for name, one in (("generate", generate), ("stream", stream)):
            for _ in range(100):
                await one()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                await one()
            figures[f"{name} cpu_us"] = (time.process_time() - cpu) * 1e6 / calls
            figures[f"{name} wall_us"] = (time.perf_counter() - wall) * 1e6 / calls
    finally:
        await adapter.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", nargs="+", default=["openai", "anthropic"])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-fake"
    os.sched_setaffinity(0, {CLIENT_CORE})
    fakes: dict[str, Process] = {}
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        for vendor in args.vendor:
            argv = [sys.executable, "-m", f"tests.fakes.{vendor}_server", "--uvloop"]
            fakes[vendor] = Process.start([*argv, "--tokens", "20"], ["listening on"], SERVER_CORE)
        for _ in range(args.rounds):
            for vendor, fake in fakes.items():
                url = fake.find(r"listening on (\S+)")
                rows.append((vendor, uvloop.run(measure(provider(vendor, url), args.calls))))
    finally:
        for fake in fakes.values():
            fake.stop()
    print(f"{args.calls} sequential calls each; µs per call")
    print("| adapter | generate CPU | generate wall | stream CPU | stream wall |")
    print("|---|---:|---:|---:|---:|")
    for vendor, f in rows:
        print(f"| {vendor} | {f['generate cpu_us']:.0f} | {f['generate wall_us']:.0f} "
              f"| {f['stream cpu_us']:.0f} | {f['stream wall_us']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
