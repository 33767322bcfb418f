"""Dataset snapshots in S3-compatible object storage, so that replicas start
from the same data (DESIGN.md, scale-out: "each replica loads a snapshot").

A snapshot holds every collection's store (a consistent SQLite copy, the
truth: chunks, metadata, vectors) and its HNSW graph, under one name, with a
manifest of sizes and SHA-256s. BM25 is not shipped: it is derived from the
store and rebuilt on first use. Layout under `dataset.snapshots.prefix`:

    {name}/manifest.json
    {name}/{tenant as hex}/{collection}/chunks.sqlite | hnsw.bin
    LATEST                      # the newest name, written last

`infergate dataset push` uploads one (safe while a gateway runs: SQLite's
backup API copies a consistent store, the graph file is replaced only whole,
and a graph that lags its store is repaired from the store when opened).
`infergate dataset pull` loads the latest (or a named) snapshot into an empty
data dir, as a gateway or worker does at start when its datasets directory is
empty and `load_at_start` is on. A download lands in a staging directory,
is checked against the manifest, then renamed into place: a failed pull
leaves the data dir as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.dataset_config import SnapshotConfig

log = logging.getLogger("infergate.dataset")
_LATEST = "LATEST"
_MANIFEST = "manifest.json"
# The files of a collection (indexer/collection.py's STORE_FILE and GRAPH_FILE;
# not imported, which would load numpy and hnswlib into every CLI command).
STORE_FILE, GRAPH_FILE = "chunks.sqlite", "hnsw.bin"
# What a manifest may name: nothing that could leave the datasets directory.
_PATH = re.compile(rf"[0-9a-f]+/[a-z0-9][a-z0-9_-]{{0,62}}/({STORE_FILE}|{GRAPH_FILE})")
_NAME = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{6}")  # sorts by time


class SnapshotError(Exception):
    """A snapshot is missing, damaged, or cannot go where it was asked to."""


def _client(config: SnapshotConfig) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def push(root: Path, config: SnapshotConfig) -> tuple[str, int]:
    """Upload every collection under `root`; (the snapshot's name, collections)."""
    client = _client(config)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    name = f"{stamp}-{secrets.token_hex(3)}"
    stores = sorted(root.glob(f"*/*/{STORE_FILE}")) if root.is_dir() else []
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in stores:
            directory = store.parent.relative_to(root).as_posix()
            copies = [(f"{directory}/{STORE_FILE}", _store_copy(store, Path(tmp)))]
            graph = store.parent / GRAPH_FILE
            if graph.exists():  # replaced whole by rename: one open reads one version
                copies.append((f"{directory}/{GRAPH_FILE}", Path(tmp) / GRAPH_FILE))
                shutil.copyfile(graph, copies[-1][1])
            for path, copy in copies:
                client.upload_file(str(copy), config.bucket, f"{config.prefix}{name}/{path}")
                files.append({"path": path, "size": copy.stat().st_size, "sha256": _digest(copy)})
                copy.unlink()
    manifest = {"name": name, "created": time.time(), "files": files}
    client.put_object(
        Bucket=config.bucket, Key=f"{config.prefix}{name}/{_MANIFEST}", Body=json.dumps(manifest)
    )
    client.put_object(Bucket=config.bucket, Key=f"{config.prefix}{_LATEST}", Body=name.encode())
    return name, len(stores)


def _store_copy(store: Path, tmp: Path) -> Path:
    """A consistent copy of a store another process may be writing."""
    copy = tmp / STORE_FILE
    source = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return copy


def names(config: SnapshotConfig) -> list[str]:
    """Every snapshot's name, oldest first (names sort by time)."""
    client = _client(config)
    found: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=config.bucket, Prefix=config.prefix, Delimiter="/"
    )
    for page in pages:
        for entry in page.get("CommonPrefixes", ()):
            name = entry["Prefix"][len(config.prefix) :].rstrip("/")
            if _NAME.fullmatch(name):
                found.append(name)
    return sorted(found)


def pull(root: Path, config: SnapshotConfig, name: str = "", force: bool = False) -> str:
    """Load snapshot `name` (default: the latest) into `root`, which must be
    empty or missing unless `force` (then its contents are replaced)."""
    if _has_data(root) and not force:
        raise SnapshotError(f"{root} is not empty: pass --force to replace it")
    client = _client(config)
    name = name or _latest(client, config) or ""
    if not name:
        raise SnapshotError(f"no snapshot under s3://{config.bucket}/{config.prefix}")
    if not _NAME.fullmatch(name):
        raise SnapshotError(f"{name!r} is not a snapshot name")
    try:
        files = json.loads(_read(client, config, f"{name}/{_MANIFEST}"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot {name}: unreadable manifest: {exc}") from exc
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.pull-", dir=root.parent))
    try:
        for entry in files:
            path = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            if not _PATH.fullmatch(path):
                raise SnapshotError(f"snapshot {name}: the manifest names {path!r}")
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(config.bucket, f"{config.prefix}{name}/{path}", str(target))
            if (target.stat().st_size, _digest(target)) != (entry.get("size"), entry.get("sha256")):
                raise SnapshotError(f"snapshot {name}: {path} does not match its manifest")
        _swap(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return name


def _read(client: Any, config: SnapshotConfig, key: str) -> bytes:
    try:
        answer = client.get_object(Bucket=config.bucket, Key=config.prefix + key)
    except client.exceptions.NoSuchKey:
        raise SnapshotError(f"no s3://{config.bucket}/{config.prefix}{key}") from None
    body: bytes = answer["Body"].read()
    return body


def _latest(client: Any, config: SnapshotConfig) -> str | None:
    try:
        return _read(client, config, _LATEST).decode().strip()
    except SnapshotError:
        return None


def _has_data(root: Path) -> bool:
    return root.is_dir() and any(root.iterdir())


def _swap(staging: Path, root: Path) -> None:
    """Put `staging` where `root` is, the old contents removed only after."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{secrets.token_hex(4)}")
        os.rename(root, old)
    os.rename(staging, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_at_start(config: SnapshotConfig | None, root: Path) -> None:
    """At a gateway's or worker's start: an empty `root` loads the latest
    snapshot when there is one. Object storage that cannot be read stops the
    start (a replica must not serve an empty dataset by accident)."""
    if config is None or not config.load_at_start or _has_data(root):
        return
    name = _latest(_client(config), config)
    if name is None:
        log.info("no dataset snapshot yet under s3://%s/%s", config.bucket, config.prefix)
        return
    pull(root, config, name)
    log.info("loaded dataset snapshot %s into %s", name, root)


# --- `infergate dataset push | pull | snapshots` ---------------------------------------------


def register(commands: Any) -> None:
    dataset = commands.add_parser("dataset", help="dataset snapshots in object storage")
    sub = dataset.add_subparsers(dest="dataset_command", required=True)
    sub.add_parser("push", help="upload every collection as a new snapshot")
    pull_ = sub.add_parser("pull", help="load a snapshot into an empty data dir")
    pull_.add_argument("--snapshot", default="", help="its name (default: the latest)")
    pull_.add_argument(
        "--force", action="store_true", help="replace the datasets there (gateway stopped)"
    )
    sub.add_parser("snapshots", help="list the snapshots, oldest first")
    for parser in sub.choices.values():
        parser.add_argument("--config", help="YAML config (default: the embedded one)")
    dataset.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from gateway.cli import DEFAULTS
    from gateway.config import load_config

    config = load_config(Path(args.config) if args.config else DEFAULTS)
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
    except (SnapshotError, BotoCoreError, ClientError) as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2
    return 0
