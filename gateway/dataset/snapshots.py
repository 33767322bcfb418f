"""Dataset snapshots in S3-compatible object storage, so that replicas start
from the same data (docs/architecture.md, scale-out: "each replica loads a snapshot").

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

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway import s3
from gateway.dataset.config import SnapshotConfig

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
    return s3.client(config.endpoint_url, config.region)


def _digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def push(root: Path, config: SnapshotConfig) -> tuple[str, int]:
    """Upload every collection under `root`; (the snapshot's name, collections).
    It holds `root` in use meanwhile, so no forced pull swaps it mid-way."""
    with _locked(root, _IN_USE, shared=True):
        return _push(root, config)


def _push(root: Path, config: SnapshotConfig) -> tuple[str, int]:
    found = sorted(root.glob(f"*/*/{STORE_FILE}")) if root.is_dir() else []
    # Not the hidden directories of a create or delete in progress.
    stores = [store for store in found if _PATH.fullmatch(store.relative_to(root).as_posix())]
    if not stores:
        raise SnapshotError(f"no collections under {root}: nothing to push")
    client = _client(config)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    name = f"{stamp}-{secrets.token_hex(3)}"
    files = []
    pushed = 0
    with tempfile.TemporaryDirectory(prefix=f".{root.name}.push-", dir=root.parent) as tmp:
        for store in stores:
            copies = _copies(store, Path(tmp))
            if not copies:
                log.info("%s was deleted during the push: not in %s", store.parent, name)
                continue
            directory = store.parent.relative_to(root).as_posix()
            for copy in copies:
                path = f"{directory}/{copy.name}"
                client.upload_file(str(copy), config.bucket, f"{config.prefix}{name}/{path}")
                files.append({"path": path, "size": copy.stat().st_size, "sha256": _digest(copy)})
                copy.unlink()
            pushed += 1
    if not pushed:
        raise SnapshotError(f"every collection under {root} was deleted during the push")
    manifest = {"name": name, "created": now, "files": files}
    client.put_object(
        Bucket=config.bucket, Key=f"{config.prefix}{name}/{_MANIFEST}", Body=json.dumps(manifest)
    )
    client.put_object(Bucket=config.bucket, Key=f"{config.prefix}{_LATEST}", Body=name.encode())
    return name, pushed


def _copies(store: Path, tmp: Path) -> list[Path]:
    """Copies of a collection's graph and store that another process may be
    writing; none if it was deleted meanwhile. The graph is copied first: a
    graph behind its store is repaired from the store when opened (labels are
    never reused), one ahead of it could name chunks the store still holds as
    deleted."""
    copies = []
    graph = store.with_name(GRAPH_FILE)
    try:
        shutil.copyfile(graph, tmp / GRAPH_FILE)  # replaced whole by rename: one version
        copies.append(tmp / GRAPH_FILE)
    except FileNotFoundError:
        pass  # not saved yet: built from the store when opened
    try:
        source = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        if store.exists():
            raise
        return []
    target = sqlite3.connect(tmp / STORE_FILE)
    try:
        source.backup(target)  # one read transaction: a consistent store
    except sqlite3.OperationalError:
        if store.exists():
            raise
        return []
    finally:
        target.close()
        source.close()
    return [tmp / STORE_FILE, *copies]


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
    empty or missing unless `force`; then its contents are replaced, and no
    gateway or worker may be using it."""
    with _locked(root, _PULLING), _locked(root, _IN_USE, shared=False, wait=False) as free:
        if force and not free:
            raise SnapshotError(f"{root} is in use by a gateway or worker: stop it first")
        if _has_data(root) and not force:
            raise SnapshotError(f"{root} is not empty: pass --force to replace it")
        return _pull(root, config, name, force)


def _pull(root: Path, config: SnapshotConfig, name: str, force: bool = False) -> str:
    """Download into a staging directory, check it, then put it in place (the
    caller holds the pull lock)."""
    for kind in ("pull", "old"):  # what a killed pull left behind
        for leftover in root.parent.glob(f".{root.name}.{kind}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    client = _client(config)
    name = name or _latest(client, config) or ""
    if not name:
        raise SnapshotError(f"no snapshot under s3://{config.bucket}/{config.prefix}")
    if not _NAME.fullmatch(name):
        raise SnapshotError(f"{name!r} is not a snapshot name")
    try:
        files = json.loads(_read(client, config, f"{name}/{_MANIFEST}"))["files"]
        if not isinstance(files, list):
            raise TypeError("files: not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot {name}: unreadable manifest: {exc}") from exc
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.pull-", dir=root.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would become the data dir's
        for entry in files:
            path = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            if not _PATH.fullmatch(path):
                raise SnapshotError(f"snapshot {name}: the manifest names {path!r}")
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(config.bucket, f"{config.prefix}{name}/{path}", str(target))
            if (target.stat().st_size, _digest(target)) != (entry.get("size"), entry.get("sha256")):
                raise SnapshotError(f"snapshot {name}: {path} does not match its manifest")
        _swap(staging, root, replace=force)
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _has_data(root: Path) -> bool:
    return root.is_dir() and any(root.iterdir())


def _swap(staging: Path, root: Path, replace: bool) -> None:
    """Put `staging` where `root` is: over an empty or missing `root` only,
    unless `replace` (the old contents removed after). A collection created
    in `root` meanwhile makes this fail rather than be lost."""
    if not replace:
        try:
            if root.exists():
                os.rmdir(root)
            os.rename(staging, root)
        except OSError as exc:
            raise SnapshotError(f"{root} is not empty any more: {exc.strerror}") from exc
        return
    old = root.with_name(f".{root.name}.old-{secrets.token_hex(4)}")
    if root.exists():
        os.rename(root, old)
    os.rename(staging, root)
    shutil.rmtree(old, ignore_errors=True)


# Lock files beside the datasets directory: one pull at a time, and a shared
# claim held by every gateway and worker using it, which `pull --force` needs free.
_PULLING, _IN_USE = "pull.lock", "use.lock"


@contextlib.contextmanager
def _locked(root: Path, kind: str, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Holds `kind`'s lock for `root` (flock); yields whether it was taken
    (always, when `wait`)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.{kind}", "a") as file:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(file, mode)
        except BlockingIOError:
            yield False
            return
        yield True


def claim(config: SnapshotConfig | None, root: Path) -> contextlib.ExitStack:
    """At a gateway's or worker's start: an empty `root` loads the latest
    snapshot when snapshots are configured, and `root` is marked in use until
    the returned stack is closed. Object storage that cannot be read stops
    the start (a replica must not serve an empty dataset by accident)."""
    with _locked(root, _PULLING):  # one process loads; the others then find it there
        if config is not None and config.load_at_start and not _has_data(root):
            name = _latest(_client(config), config)
            if name is None:
                log.info("no dataset snapshot yet under s3://%s/%s", config.bucket, config.prefix)
            else:
                _pull(root, config, name)
                log.info("loaded dataset snapshot %s into %s", name, root)
        stack = contextlib.ExitStack()
        stack.enter_context(_locked(root, _IN_USE, shared=True))
        return stack
