"""`infergate cache warm FILE`: answer the requests of a JSONL file through a
running gateway, so that their answers are cached (gateway/cache_warm.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.cache_warm import WarmSummary, read_requests, warm
from gateway.config import load_config


def register(commands: Any) -> None:
    cache = commands.add_parser("cache", help="the request cache")
    sub = cache.add_subparsers(dest="cache_command", required=True)
    warm_ = sub.add_parser("warm", help="fill the cache from a JSONL file of chat requests")
    warm_.add_argument("file", type=Path, help="one OpenAI chat completion body per line")
    warm_.add_argument("--address", help="the gateway's gRPC address (default: the config's)")
    warm_.add_argument("--key", help="API key (default: the INFERGATE_API_KEY variable)")
    warm_.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    warm_.add_argument("--timeout", type=float, default=120, help="seconds per request")
    warm_.add_argument("--config", help="YAML config (default: the embedded one)")
    cache.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"infergate: {args.file}: no such file", file=sys.stderr)
        return 2
    if args.address is None:
        args.address = load_config(args.config).server.address
    key = args.key or os.environ.get("INFERGATE_API_KEY", "")
    total = sum(1 for _ in read_requests(args.file))
    with tqdm(total=total, desc="warming", unit="req", file=sys.stderr, mininterval=0.5) as bar:

        def progress(summary: WarmSummary) -> None:
            bar.n = summary.done
            bar.set_postfix(
                answered=summary.answered, cached=summary.already, failed=len(summary.failed),
                refresh=False,
            )  # fmt: skip
            bar.refresh()

        summary = asyncio.run(
            warm(args.address, args.file, key, args.concurrency, args.timeout, progress)
        )
    print(summary.line())
    for number, why in summary.failed:
        print(f"  line {number}: {why}", file=sys.stderr)
    return 1 if summary.failed else 0
