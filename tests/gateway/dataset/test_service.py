"""The Dataset service through the real gateway over a real gRPC channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2

from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc, router_pb2, router_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from indexer.hashed_embedder import wordpiece_tokenizer
from tests.conftest import StartGateway, chat, make_config
from tests.gateway.apps.test_auth import bearer, new_key, secure_top
from tests.indexer.test_collection import PAGES
from tests.indexer.test_parse import write_pdf


def dataset_top(data_dir: Path, **dataset: Any) -> dict[str, Any]:
    return {"data_dir": str(data_dir), "dataset": {"snapshot_interval_s": 0, **dataset}}


@pytest.fixture
def onnx_top(tmp_path: Path, tiny_model: Path) -> dict[str, Any]:
    return dataset_top(tmp_path / "data", embedder={"model_dir": str(tiny_model)})


async def open_stub(
    start_gateway: StartGateway, top: dict[str, Any]
) -> tuple[grpc.aio.Channel, dataset_pb2_grpc.DatasetStub]:
    gateway = await start_gateway(top=top)
    channel = grpc.aio.insecure_channel(gateway.address)
    return channel, dataset_pb2_grpc.DatasetStub(channel)


@pytest.fixture
async def stub(
    start_gateway: StartGateway, onnx_top: dict[str, Any]
) -> AsyncIterator[dataset_pb2_grpc.DatasetStub]:
    channel, stub = await open_stub(start_gateway, onnx_top)
    async with channel:
        yield stub


def upload(
    path: Path, collection: str = "collections/docs", piece: int = 700, **header: Any
) -> list[pb.IngestFileRequest]:
    data = path.read_bytes()
    first = pb.IngestFileRequest(
        collection=collection, header=pb.IngestFileHeader(filename=path.name, **header)
    )
    parts = [pb.IngestFileRequest(data=data[i : i + piece]) for i in range(0, len(data), piece)]
    return [first, *parts]


def struct(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def test_collection_lifecycle(stub: dataset_pb2_grpc.DatasetStub) -> None:
    made = await stub.CreateCollection(
        pb.CreateCollectionRequest(
            collection_id="docs", collection=pb.Collection(display_name="Docs", chunk_tokens=32)
        )
    )
    assert (made.name, made.display_name, made.dimensions, made.chunk_tokens) == (
        "collections/docs", "Docs", 64, 32,
    )  # fmt: skip
    assert made.embedding_model and made.create_time.seconds > 0
    got = await stub.GetCollection(pb.GetCollectionRequest(name="collections/docs"))
    assert got == made
    await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="more"))
    page = await stub.ListCollections(pb.ListCollectionsRequest(page_size=1))
    assert [c.name for c in page.collections] == ["collections/docs"]
    rest = await stub.ListCollections(pb.ListCollectionsRequest(page_token=page.next_page_token))
    assert [c.name for c in rest.collections] == ["collections/more"] and not rest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await stub.DeleteCollection(pb.DeleteCollectionRequest(name="collections/docs"))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetCollection(pb.GetCollectionRequest(name="collections/docs"))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_ingest_a_streamed_pdf_then_search_filter_and_list(
    stub: dataset_pb2_grpc.DatasetStub, tmp_path: Path
) -> None:
    await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
    pdf = write_pdf(tmp_path / "report.pdf", PAGES)
    reply = await stub.IngestFile(iter(upload(pdf, metadata=struct(team="ops", year=2024))))
    assert (reply.document_id, reply.chunks, reply.pages) == ("report.pdf", 4, 4)
    await stub.UpsertDocuments(
        pb.UpsertDocumentsRequest(
            collection="collections/docs",
            documents=[pb.Document(id="note", text="snow and rain", metadata=struct(year=2019))],
        )
    )
    found = await stub.Search(
        pb.SearchRequest(collection="collections/docs", text="winter snow storm")
    )
    best = found.results[0]
    assert (best.chunk.document_id, best.chunk.page, best.chunk.source) == (
        "report.pdf",
        3,
        "report.pdf",
    )
    assert best.chunk.metadata["team"] == "ops" and best.score > 0
    recent = pb.Filter(conditions=[pb.Condition(field="year", range=pb.Range(gte=2020))])
    filtered = await stub.Search(
        pb.SearchRequest(
            collection="collections/docs", text="snow and rain", k=2, filter=recent,
            mode=pb.SEARCH_MODE_LEXICAL,
        )
    )  # fmt: skip
    assert [r.chunk.document_id for r in filtered.results] == ["report.pdf"]
    vector = router_pb2.Embedding(values=[0.1] * 64)
    dense = await stub.Search(pb.SearchRequest(collection="collections/docs", vector=vector, k=3))
    assert len(dense.results) == 3
    first = await stub.ListChunks(pb.ListChunksRequest(collection="collections/docs", page_size=3))
    second = await stub.ListChunks(
        pb.ListChunksRequest(collection="collections/docs", page_token=first.next_page_token)
    )
    listed = [(c.document_id, c.position) for c in [*first.chunks, *second.chunks]]
    assert listed == [("note", 0), *[("report.pdf", i) for i in range(4)]]
    assert not second.next_page_token
    deleted = await stub.DeleteDocuments(
        pb.DeleteDocumentsRequest(collection="collections/docs", document_ids=["report.pdf"])
    )
    assert deleted.deleted == 1
    after = await stub.Search(pb.SearchRequest(collection="collections/docs", text="winter snow"))
    assert {r.chunk.document_id for r in after.results} == {"note"}


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code(), error.value.details() or ""


async def test_malformed_input_is_invalid_argument_naming_it(
    stub: dataset_pb2_grpc.DatasetStub, tmp_path: Path
) -> None:
    await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
    broken = tmp_path / "scan.pdf"
    broken.write_bytes(b"%PDF-1.5\n" + bytes(range(256)) * 4)
    code, details = await code_of(stub.IngestFile(iter(upload(broken))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "scan.pdf" in details
    data_first = [pb.IngestFileRequest(collection="collections/docs", data=b"x")]
    code, details = await code_of(stub.IngestFile(iter(data_first)))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT, "header: the first message must carry the header",
    )  # fmt: skip
    no_op = pb.Filter(conditions=[pb.Condition(field="year")])
    code, details = await code_of(
        stub.Search(pb.SearchRequest(collection="collections/docs", text="x", filter=no_op))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "filter.conditions[0]" in details
    code, _ = await code_of(stub.Search(pb.SearchRequest(collection="collections/nope", text="x")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.IngestFile(iter(upload(broken, "collections/nope"))))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await code_of(
        stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(
                collection="collections/docs", documents=[pb.Document(text="x")]
            )
        )
    )
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "documents[0].id: is required")
    listed = await stub.ListChunks(pb.ListChunksRequest(collection="collections/docs"))
    assert list(listed.chunks) == []  # nothing half-written


async def test_collections_survive_a_gateway_restart(
    start_gateway: StartGateway, onnx_top: dict[str, Any]
) -> None:
    channel, stub = await open_stub(start_gateway, onnx_top)
    async with channel:
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
        await stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(
                collection="collections/docs",
                documents=[
                    pb.Document(id="a", text="cats chase mice"),
                    pb.Document(id="b", text="pizza and cheese"),
                ],
            )
        )
    channel, stub = await open_stub(start_gateway, onnx_top)  # a second process, same data dir
    async with channel:
        found = await stub.Search(
            pb.SearchRequest(collection="collections/docs", text="pizza", k=1)
        )
        assert [r.chunk.document_id for r in found.results] == ["b"]


async def test_a_missing_model_answers_failed_precondition(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    top = dataset_top(tmp_path, embedder={"model_dir": str(tmp_path / "no-model")})
    gateway = await start_gateway(top=top)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        code, details = await code_of(stub.ListCollections(pb.ListCollectionsRequest()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "infergate model fetch" in details and "no-model" in details
        reply = await router_pb2_grpc.RouterStub(channel).Generate(chat("chat"))
        assert reply.text  # the rest of the gateway serves on


async def test_a_router_alias_can_embed(start_gateway: StartGateway, tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    wordpiece_tokenizer(["cats", "pizza"]).save(str(tokenizer))
    embedder = {"kind": "router", "model": "embed", "tokenizer": str(tokenizer), "dimensions": 8}
    channel, stub = await open_stub(start_gateway, dataset_top(tmp_path, embedder=embedder))
    async with channel:
        made = await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
        assert (made.embedding_model, made.dimensions) == ("router:embed", 8)
        await stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(
                collection="collections/docs",
                documents=[pb.Document(id="a", text="cats"), pb.Document(id="b", text="pizza")],
            )
        )
        found = await stub.Search(
            pb.SearchRequest(collection="collections/docs", text="pizza", mode=pb.SEARCH_MODE_DENSE)
        )
        assert found.results[0].chunk.document_id == "b"  # the mock embeds text deterministically


async def test_another_tenants_collection_is_not_found(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path
) -> None:
    top = secure_top(tmp_path)
    top["dataset"] = {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}}
    gateway = await start_gateway(top=top)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        alice = bearer(await new_key(channel, gateway, "alice", "developer"))
        bob = bearer(await new_key(channel, gateway, "bob", "developer"))
        create = pb.CreateCollectionRequest(collection_id="docs")
        await stub.CreateCollection(create, metadata=alice)
        document = pb.Document(id="a", text="cats chase mice")
        upsert = pb.UpsertDocumentsRequest(collection="collections/docs", documents=[document])
        await stub.UpsertDocuments(upsert, metadata=alice)
        search = pb.SearchRequest(collection="collections/docs", text="cats")
        for call in (
            stub.GetCollection(pb.GetCollectionRequest(name="collections/docs"), metadata=bob),
            stub.Search(search, metadata=bob),
            stub.UpsertDocuments(upsert, metadata=bob),
            stub.ListChunks(pb.ListChunksRequest(collection="collections/docs"), metadata=bob),
        ):
            code, _ = await code_of(call)
            assert code == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListCollections(pb.ListCollectionsRequest(), metadata=bob)
        assert list(listed.collections) == []
        await stub.CreateCollection(create, metadata=bob)  # its own "docs"
        assert not (await stub.Search(search, metadata=bob)).results
        assert (await stub.Search(search, metadata=alice)).results


def test_the_readme_dataset_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("## Datasets", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = make_config(top=yaml.safe_load(block))
    assert config.dataset.index.exact_threshold == 5000
    assert config.dataset.embedder.kind == "onnx"


async def test_a_dataset_ingest_task_through_the_tasks_service(
    start_gateway: StartGateway, onnx_top: dict[str, Any]
) -> None:
    channel, stub = await open_stub(start_gateway, onnx_top)
    async with channel:
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
        payload = {
            "collection": "collections/docs",
            "documents": [{"id": "a", "text": "pizza with cheese", "metadata": {"n": 1}}],
        }
        tasks = tasks_pb2_grpc.TasksStub(channel)
        submitted = await tasks.Submit(
            tasks_pb2.SubmitTaskRequest(type="dataset.ingest", payload=struct(**payload))
        )
        watch = tasks.Watch(tasks_pb2.WatchTaskRequest(id=submitted.id), timeout=30)
        states = [task async for task in watch]
        task = states[-1]
        assert task.state == tasks_pb2.SUCCESS, task.error
        assert dict(task.result) == {"documents": 1.0, "chunks": 1.0}
        found = await stub.Search(pb.SearchRequest(collection="collections/docs", text="pizza"))
        assert [r.chunk.document_id for r in found.results] == ["a"]


async def test_a_collection_has_its_own_lexical_analysis(
    stub: dataset_pb2_grpc.DatasetStub,
) -> None:
    made = await stub.CreateCollection(
        pb.CreateCollectionRequest(
            collection_id="fr",
            collection=pb.Collection(lexical=pb.LexicalAnalysis(language="french", k1=1.2)),
        )
    )
    assert (made.lexical.language, made.lexical.k1, made.lexical.b) == ("french", 1.2, 0.75)
    plain = await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="en"))
    assert (plain.lexical.language, plain.lexical.k1, plain.lexical.b) == ("english", 1.5, 0.75)
    for bad, field in (
        (pb.LexicalAnalysis(language="klingon"), "language"),
        (pb.LexicalAnalysis(b=2), "b"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateCollection(
                pb.CreateCollectionRequest(collection_id="x", collection=pb.Collection(lexical=bad))
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"collection.lexical.{field}" in (refused.value.details() or "")
