"""`infergate` command line: one module per command group, each with
`register(commands)`, which adds its parsers with a `run(args) -> int` default."""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway.cli.serve import setup_logging
from router.config import ConfigError

COMMAND_GROUPS: tuple[str, ...] = (
    "gateway.cli.serve", "gateway.cli.model", "gateway.cli.tasks", "gateway.cli.apps",
    "gateway.cli.dataset", "gateway.cli.workflow", "gateway.cli.budgets", "gateway.cli.cache",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infergate", description="A gRPC-first inference gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(commands)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2
