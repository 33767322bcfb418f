"""Dataset snapshots in object storage (a local moto S3 server): push, pull,
damage detection, and a replica that loads the latest snapshot at start."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import grpc
import pytest

from gateway import cli
from gateway.dataset.config import SnapshotConfig
from gateway.dataset.snapshots import (
    GRAPH_FILE,
    STORE_FILE,
    SnapshotError,
    claim,
    names,
    pull,
    push,
)
from gateway.identity import DEFAULT_TENANT
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from indexer import collection
from indexer.datasets import Datasets
from indexer.documents import DocumentInput, Query
from indexer.onnx_embedder import OnnxEmbedder
from tests.conftest import StartGateway
from tests.gateway.tasks.fixtures import _s3_credentials, s3_endpoint  # noqa: F401 (fixtures)

DOCS = [
    DocumentInput("cats", text="Cats chase mice in the garden and sleep on the chair."),
    DocumentInput("rain", text="Rain and snow in winter; the storm brings cold wind."),
]


@pytest.fixture
def config(s3_endpoint: str) -> SnapshotConfig:  # noqa: F811
    # moto's buckets outlive each server in the process: a prefix of this test's own.
    prefix = f"datasets-{secrets.token_hex(4)}/"
    return SnapshotConfig(bucket="results", prefix=prefix, endpoint_url=s3_endpoint)


@pytest.fixture
async def filled(tmp_path: Path, tiny_model: Path) -> AsyncIterator[Path]:
    """A datasets directory with one collection of two documents, saved."""
    datasets = Datasets(tmp_path / "datasets", OnnxEmbedder(tiny_model), tiny_model.name)
    await datasets.create(DEFAULT_TENANT, "docs")
    await datasets.upsert(DEFAULT_TENANT, "docs", DOCS)
    await datasets.flush()
    yield datasets.root
    await datasets.aclose()


async def top_document(root: Path, tiny_model: Path, text: str) -> str:
    datasets = Datasets(root, OnnxEmbedder(tiny_model), tiny_model.name)
    try:
        hits = await datasets.search(DEFAULT_TENANT, "docs", Query(text, k=1))
        return hits[0].chunk.document_id
    finally:
        await datasets.aclose()


def test_file_names_are_the_collections_own() -> None:
    assert (STORE_FILE, GRAPH_FILE) == (collection.STORE_FILE, collection.GRAPH_FILE)


async def test_push_then_pull_gives_a_replica_the_same_collections(
    filled: Path, config: SnapshotConfig, tmp_path: Path, tiny_model: Path
) -> None:
    name, count = push(filled, config)
    assert count == 1 and names(config) == [name]
    replica = tmp_path / "replica" / "datasets"
    assert pull(replica, config) == name
    mask = os.umask(0)
    os.umask(mask)
    assert replica.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
    pulled = sorted(p.relative_to(replica).as_posix() for p in replica.rglob("*") if p.is_file())
    tenant = DEFAULT_TENANT.encode().hex()
    assert pulled == [f"{tenant}/docs/{STORE_FILE}", f"{tenant}/docs/{GRAPH_FILE}"]
    assert await top_document(replica, tiny_model, "snow and storm in winter") == "rain"
    assert await top_document(replica, tiny_model, "cats and mice") == "cats"
    second, _ = push(filled, config)  # the newest is the one pulled by default
    assert names(config) == [name, second]
    with pytest.raises(SnapshotError, match="not empty"):
        pull(replica, config)
    assert pull(replica, config, force=True) == second
    assert await top_document(replica, tiny_model, "cats and mice") == "cats"


def test_a_damaged_snapshot_is_refused_and_the_data_dir_kept(
    filled: Path, config: SnapshotConfig, tmp_path: Path
) -> None:
    name, _ = push(filled, config)
    s3 = boto3.client("s3", endpoint_url=config.endpoint_url, region_name="us-east-1")
    key = f"{config.prefix}{name}/{DEFAULT_TENANT.encode().hex()}/docs/{STORE_FILE}"
    s3.put_object(Bucket="results", Key=key, Body=b"not the store")
    replica = tmp_path / "replica"
    (replica / "kept").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="does not match its manifest"):
        pull(replica, config, force=True)
    assert [p.name for p in tmp_path.iterdir() if ".pull-" in p.name] == []  # no staging
    assert [p.name for p in replica.iterdir()] == ["kept"]
    # A manifest naming a path outside the datasets directory.
    evil = {"name": name, "files": [{"path": "../../etc/x", "size": 1, "sha256": "0"}]}
    s3.put_object(
        Bucket="results", Key=f"{config.prefix}{name}/manifest.json", Body=json.dumps(evil)
    )
    with pytest.raises(SnapshotError, match="the manifest names"):
        pull(tmp_path / "other", config)
    assert not (tmp_path / "other").exists()
    with pytest.raises(SnapshotError, match="not a snapshot name"):
        pull(tmp_path / "other", config, "../x")


def test_claim_fills_only_an_empty_directory_and_once(
    filled: Path, config: SnapshotConfig, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    claim(config, empty).close()  # nothing pushed yet: starts empty, no error
    assert not empty.exists()
    push(filled, config)
    claim(config.model_copy(update={"load_at_start": False}), empty).close()
    assert not empty.exists()
    # Processes starting together on one data dir (serve --workers, a worker):
    # one loads the snapshot, the others find it there.
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: claim(config, empty), range(4)))
    assert len(list(empty.rglob(STORE_FILE))) == 1
    assert [p.name for p in tmp_path.iterdir() if ".pull-" in p.name] == []
    # In use: a forced pull would pull the files from under them.
    with pytest.raises(SnapshotError, match="in use by a gateway or worker"):
        pull(empty, config, force=True)
    for claimed in claims:
        claimed.close()
    assert pull(empty, config, force=True)
    mine = tmp_path / "mine"
    (mine / "x").mkdir(parents=True)
    claim(config, mine).close()
    assert [p.name for p in mine.iterdir()] == ["x"]


async def test_push_copies_only_whole_collections_and_a_lagging_graph_is_repaired(
    tmp_path: Path, tiny_model: Path, config: SnapshotConfig
) -> None:
    root = tmp_path / "datasets"
    with pytest.raises(SnapshotError, match="nothing to push"):
        push(root, config)
    datasets = Datasets(root, OnnxEmbedder(tiny_model), tiny_model.name)
    try:
        await datasets.create(DEFAULT_TENANT, "docs")
        await datasets.upsert(DEFAULT_TENANT, "docs", DOCS)
        await datasets.flush()  # the graph on disk holds both documents
        await datasets.delete_documents(DEFAULT_TENANT, "docs", ["cats"])
        pizza = DocumentInput("pizza", text="Pizza with cheese and bread is good food.")
        await datasets.upsert(DEFAULT_TENANT, "docs", [pizza])  # the store is ahead of it
        hidden = root / DEFAULT_TENANT.encode().hex() / ".gone.deleting-1234"
        hidden.mkdir()
        (hidden / STORE_FILE).write_bytes(b"a delete in progress")
        _, count = push(root, config)
    finally:
        await datasets.aclose()
    assert count == 1
    replica = tmp_path / "replica"
    pull(replica, config)
    assert await top_document(replica, tiny_model, "cheese and bread") == "pizza"
    assert await top_document(replica, tiny_model, "cats and mice") != "cats"


async def test_a_gateway_replica_starts_from_the_latest_snapshot(
    filled: Path, config: SnapshotConfig, tmp_path: Path, tiny_model: Path,
    start_gateway: StartGateway,
) -> None:  # fmt: skip
    push(filled, config)
    dataset = {
        "snapshot_interval_s": 0,
        "embedder": {"model_dir": str(tiny_model)},
        "snapshots": config.model_dump(),
    }
    gateway = await start_gateway(top={"data_dir": str(tmp_path / "node"), "dataset": dataset})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        reply = await stub.Search(pb.SearchRequest(collection="collections/docs", text="snow", k=1))
    assert [hit.chunk.document_id for hit in reply.results] == ["rain"]


def test_the_cli_pushes_lists_and_refuses_a_pull_over_data(
    filled: Path, config: SnapshotConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yaml"
    data = filled.parent  # the config's data_dir holds datasets/
    snapshots = json.dumps(config.model_dump())
    path.write_text(
        f"data_dir: {data}\ndataset: {{snapshots: {snapshots}}}\n"
        "models: {m: {deployments: [{name: m, provider: mock, model: echo}]}}\n"
    )
    assert cli.main(["dataset", "push", "--config", str(path)]) == 0
    assert "pushed snapshot" in capsys.readouterr().out
    assert cli.main(["dataset", "snapshots", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == names(config)[0]
    assert cli.main(["dataset", "pull", "--config", str(path)]) == 2
    assert "is not empty: pass --force" in capsys.readouterr().err
