"""`infergate model fetch`: obtain, convert and verify the embedded embedding model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config import DEFAULTS, GatewayConfig
from indexer.minilm import MODEL_NAME, ConversionError, fetch


def register(commands: Any) -> None:
    model = commands.add_parser("model", help="the embedded embedding model")
    actions = model.add_subparsers(dest="action", required=True)
    fetch_cmd = actions.add_parser(
        "fetch", help=f"convert {MODEL_NAME} to ONNX under the data dir (idempotent)"
    )
    fetch_cmd.add_argument("--config", help="the gateway's YAML config, for its data_dir")
    fetch_cmd.add_argument("--data-dir", type=Path, help="overrides the config's data_dir")
    fetch_cmd.add_argument("--force", action="store_true", help="convert again even if verified")
    fetch_cmd.set_defaults(run=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    try:
        print(fetch(args.data_dir or _configured_data_dir(args.config), force=args.force))
    except ConversionError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 1
    return 0


def _configured_data_dir(config: str | None) -> Path:
    """The config file's `data_dir` alone: `make run` fetches the model before
    `serve` validates the whole file, and names its faults better."""
    try:
        raw = yaml.safe_load(Path(config or DEFAULTS).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConversionError(f"{config or DEFAULTS}: {exc}") from exc
    default = GatewayConfig.model_fields["data_dir"].default
    return Path(raw.get("data_dir", default)) if isinstance(raw, dict) else default
