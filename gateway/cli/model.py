"""`infergate model fetch [--int8]`: obtain, convert and verify the embedded embedding model
(and its int8 copy)."""

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
    fetch_cmd.add_argument(
        "--int8",
        action="store_true",
        help=f"also write its int8 copy, {MODEL_NAME}-int8 (about 2x faster on CPU), "
        "and print that path: point dataset.embedder.model_dir at it",
    )
    fetch_cmd.set_defaults(run=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    try:
        target = fetch(args.data_dir or _configured_data_dir(args.config), force=args.force)
        if args.int8:
            from indexer import int8  # onnxruntime's quantizer: only when asked for

            source, target = target, int8.int8_dir(target)
            if args.force or not int8.is_current(target, source):
                int8.quantize(source, target)
        print(target)
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
