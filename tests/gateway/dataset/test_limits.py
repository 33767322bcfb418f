"""IngestFile's size limit (dataset.max_upload_bytes) over a real gRPC channel,
and the upload spool it writes through."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.dataset import spool as dataset_spool
from gateway.dataset.spool import Spool
from gateway.dataset.wire import condition_from_pb
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from indexer.errors import InvalidInput
from tests.conftest import StartGateway
from tests.gateway.dataset.test_service import dataset_top

LIMIT = 4096


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def stub(
    start_gateway: StartGateway, data_dir: Path, tiny_model: Path
) -> AsyncIterator[dataset_pb2_grpc.DatasetStub]:
    top = dataset_top(data_dir, embedder={"model_dir": str(tiny_model)}, max_upload_bytes=LIMIT)
    gateway = await start_gateway(top=top)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
        yield stub


def text_upload(size: int, piece: int = 1000, **header: Any) -> list[pb.IngestFileRequest]:
    body = ("snow falls on the quiet harbour town. " * (size // 38 + 1)).encode()[:size]
    first = pb.IngestFileRequest(
        collection="collections/docs",
        header=pb.IngestFileHeader(filename="notes.txt", mime_type="text/plain", **header),
    )
    parts = [pb.IngestFileRequest(data=body[i : i + piece]) for i in range(0, size, piece)]
    return [first, *parts]


async def test_an_upload_over_the_limit_is_refused_removed_and_not_indexed(
    stub: dataset_pb2_grpc.DatasetStub, data_dir: Path
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IngestFile(iter(text_upload(LIMIT + 1)))
    # INVALID_ARGUMENT, as the REST path answers: a retry of the same file cannot pass.
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert "upload" in details and f"larger than {LIMIT} bytes" in details
    assert "dataset.max_upload_bytes" in details
    assert list((data_dir / "uploads").iterdir()) == []
    chunks = await stub.ListChunks(pb.ListChunksRequest(collection="collections/docs"))
    assert list(chunks.chunks) == []


async def test_an_upload_of_exactly_the_limit_is_indexed(
    stub: dataset_pb2_grpc.DatasetStub, data_dir: Path
) -> None:
    reply = await stub.IngestFile(iter(text_upload(LIMIT)))
    assert reply.document_id == "notes.txt" and reply.chunks >= 1
    assert list((data_dir / "uploads").iterdir()) == []
    found = await stub.Search(pb.SearchRequest(collection="collections/docs", text="harbour"))
    assert {r.chunk.document_id for r in found.results} == {"notes.txt"}


def test_the_default_limit_matches_the_rest_upload_limit() -> None:
    from gateway.dataset.config import DatasetConfig
    from gateway.rest.config import RestConfig

    assert DatasetConfig().max_upload_bytes == RestConfig().max_upload_bytes == 256 * 1024 * 1024


async def test_the_spool_writes_on_worker_threads_and_gathers_small_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []

    def create(directory: Path) -> Any:
        threads.append(threading.current_thread().name)
        return real_create(directory)

    real_create = dataset_spool._create
    monkeypatch.setattr(dataset_spool, "_create", create)
    spool = await Spool.create(tmp_path / "uploads", limit=3 * 1024 * 1024)
    pieces = [bytes([i % 251]) * 65536 for i in range(40)]  # 2.5 MiB in 64 KiB messages
    for piece in pieces:
        await spool.write(piece)
    await spool.close()
    assert spool.path.read_bytes() == b"".join(pieces)
    assert threads and threading.main_thread().name not in threads
    await spool.discard()
    await spool.discard()  # idempotent
    assert not spool.path.exists()


async def test_the_spool_refuses_past_its_limit_without_writing_more(tmp_path: Path) -> None:
    spool = await Spool.create(tmp_path, limit=2048)
    await spool.write(b"a" * 2048)
    with pytest.raises(InvalidInput, match="upload: larger than 2048 bytes"):
        await spool.write(b"b")
    await spool.close()
    assert spool.path.read_bytes() == b"a" * 2048
    await spool.discard()
    assert not spool.path.exists() and spool.path.parent == tmp_path


@pytest.mark.parametrize("bound", ["gte", "gt", "lte", "lt"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_range_bound_must_be_finite(bound: str, value: float) -> None:
    condition = pb.Condition(field="year", range=pb.Range(**{bound: value}))
    with pytest.raises(InvalidInput, match=rf"filter\.conditions\[2\]\.range\.{bound}: .*finite"):
        condition_from_pb(condition, 2)
