"""`infergate dataset ingest PATH… --collection C`: upload files through the
public API (gRPC `IngestFile`, with the caller's key) with a progress bar.

Files, folders (recursively: the types the Dataset layer parses) and glob
patterns. Each file's document id is its path as found (`docs/a/b.md`), so a
re-run is idempotent: the gateway re-embeds only what changed and says which
were unchanged. A file that fails is reported and the rest go on; the exit
status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from tqdm import tqdm

from gateway.config import load_config
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from indexer.parse import supported

_CHUNK = 256 * 1024
_GLOB = set("*?[")


def register(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="upload files and folders into a collection")
    ingest.add_argument("paths", nargs="+", help="files, folders (recursive) or glob patterns")
    ingest.add_argument("--collection", required=True, help="its id (collections/ID or ID)")
    ingest.add_argument("--create", action="store_true", help="create the collection if missing")
    ingest.add_argument("--address", help="the gateway's gRPC address (default: the config's)")
    ingest.add_argument(
        "--key", default=None, help="API key (default: the INFERGATE_API_KEY environment variable)"
    )
    ingest.add_argument("--timeout", type=float, default=600, help="seconds per file")


def run(args: argparse.Namespace) -> int:
    if args.address is None:
        args.address = load_config(args.config).server.address
    files = list(found(args.paths))
    if not files:
        print("infergate: no files to ingest in " + " ".join(args.paths), file=sys.stderr)
        return 2
    tally, sizes = Tally(), {}  # the files there are, in order, and their sizes
    for path in files:
        try:
            if path.is_file():
                sizes[path] = path.stat().st_size
            else:
                tally.failed.append((path, "no such file"))
        except OSError as exc:
            tally.failed.append((path, str(exc)))
    return asyncio.run(_ingest(args, list(sizes), sum(sizes.values()), tally))


def found(paths: list[str]) -> Iterator[Path]:
    """Each file once, in order: files as given, folders' parseable files
    (sorted, recursively), and the matches of glob patterns."""
    seen: set[Path] = set()
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file() and supported(p.name))
        elif path.exists() or not _GLOB & set(arg):
            candidates = [path]  # a missing file is reported as a failure
        else:
            candidates = sorted(Path(p) for p in glob.glob(arg, recursive=True))
            candidates = [p for p in candidates if p.is_file()]
        for candidate in candidates:
            if candidate not in seen:
                seen.add(candidate)
                yield candidate


@dataclass
class Tally:
    documents: int = 0
    chunks: int = 0
    unchanged: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


async def _ingest(args: argparse.Namespace, files: list[Path], total: int, tally: Tally) -> int:
    key = args.key or os.environ.get("INFERGATE_API_KEY", "")
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    collection = args.collection.removeprefix("collections/")
    async with grpc.aio.insecure_channel(args.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)  # type: ignore[no-untyped-call]
        try:
            await _ensure(stub, collection, args.create, metadata)
        except grpc.aio.AioRpcError as exc:
            print(f"infergate: collections/{collection}: {exc.details()}", file=sys.stderr)
            return 2
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc="ingesting", file=sys.stderr, mininterval=0.5) as bar:  # fmt: skip
            for path in files:
                await _one(stub, collection, path, metadata, args.timeout, bar, tally)
                bar.set_postfix(
                    documents=tally.documents, chunks=tally.chunks,
                    unchanged=tally.unchanged, failed=len(tally.failed),
                )  # fmt: skip
    print(
        f"{tally.documents} documents ingested into collections/{collection} "
        f"({tally.chunks} chunks; {tally.unchanged} unchanged, skipped), "
        f"{len(tally.failed)} failed"
    )
    for path, why in tally.failed:
        print(f"  failed: {path}: {why}", file=sys.stderr)
    return 1 if tally.failed else 0


async def _ensure(
    stub: dataset_pb2_grpc.DatasetStub, collection: str, create: bool, metadata: Any
) -> None:
    try:
        await stub.GetCollection(pb.GetCollectionRequest(name=f"collections/{collection}"),
                                 metadata=metadata, timeout=30)  # fmt: skip
    except grpc.aio.AioRpcError as exc:
        if exc.code() is not grpc.StatusCode.NOT_FOUND or not create:
            raise
        await stub.CreateCollection(
            pb.CreateCollectionRequest(collection_id=collection), metadata=metadata, timeout=30
        )
        print(f"created collections/{collection}", file=sys.stderr)


async def _one(
    stub: dataset_pb2_grpc.DatasetStub, collection: str, path: Path, metadata: Any,
    per_file_s: float, bar: tqdm[Any], tally: Tally,
) -> None:  # fmt: skip
    # Opened here, not in the request stream: grpc.aio turns an error raised
    # there into a cancellation of the call, which would end the whole run.
    try:
        file = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        tally.failed.append((path, str(exc)))
        return
    try:
        reply = await stub.IngestFile(
            _requests(collection, path, file, bar), metadata=metadata, timeout=per_file_s
        )
    except grpc.aio.AioRpcError as exc:
        tally.failed.append((path, f"{exc.code().name}: {exc.details()}"))
        return
    finally:
        file.close()
    tally.documents += 1
    tally.chunks += reply.chunks
    tally.unchanged += reply.unchanged


async def _requests(
    collection: str, path: Path, file: BinaryIO, bar: tqdm[Any]
) -> AsyncIterator[Any]:
    header = pb.IngestFileHeader(document_id=path.as_posix(), filename=path.name)
    yield pb.IngestFileRequest(collection=f"collections/{collection}", header=header)
    while data := await asyncio.to_thread(file.read, _CHUNK):
        yield pb.IngestFileRequest(data=data)
        bar.update(len(data))
