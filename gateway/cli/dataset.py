"""`infergate dataset push | pull | snapshots`: dataset snapshots in object
storage; `infergate dataset ingest`: files into a collection (gateway/cli/ingest.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli import ingest
from gateway.config import load_config
from gateway.dataset.snapshots import SnapshotError, names, pull, push


def register(commands: Any) -> None:
    dataset = commands.add_parser("dataset", help="ingest files; snapshots in object storage")
    sub = dataset.add_subparsers(dest="dataset_command", required=True)
    sub.add_parser("push", help="upload every collection as a new snapshot")
    pull_ = sub.add_parser("pull", help="load a snapshot into an empty data dir")
    pull_.add_argument("--snapshot", default="", help="its name (default: the latest)")
    pull_.add_argument(
        "--force", action="store_true", help="replace the datasets there (gateway stopped)"
    )
    sub.add_parser("snapshots", help="list the snapshots, oldest first")
    ingest.register(sub)
    for parser in sub.choices.values():
        parser.add_argument("--config", help="YAML config (default: the embedded one)")
    dataset.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.dataset_command == "ingest":
        return ingest.run(args)
    from botocore.exceptions import BotoCoreError, ClientError

    config = load_config(args.config)
    snapshots = config.dataset.snapshots
    if snapshots is None:
        print("infergate: set dataset.snapshots (bucket, ...) in the config", file=sys.stderr)
        return 2
    root = config.data_dir / "datasets"
    try:
        if args.dataset_command == "push":
            name, count = push(root, snapshots)
            print(f"pushed snapshot {name}: {count} collections")
        elif args.dataset_command == "pull":
            name = pull(root, snapshots, args.snapshot, args.force)
            print(f"loaded snapshot {name} into {root}")
        else:
            print("\n".join(names(snapshots)))
    except (SnapshotError, BotoCoreError, ClientError, OSError) as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2
    return 0
