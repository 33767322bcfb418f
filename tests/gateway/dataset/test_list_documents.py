"""Dataset.ListDocuments over a real gRPC channel and through the REST shim
(GET /v1/collections/{id}/documents), with keys, roles and tenants."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx2 as httpx
import pytest

from gateway.dataset.wire import decode_document_cursor, encode_document_cursor
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from indexer.errors import InvalidInput
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top
from tests.gateway.dataset.test_service import struct, upload
from tests.indexer.test_collection import PAGES
from tests.indexer.test_parse import write_pdf


async def test_documents_are_listed_paged_over_grpc_and_rest(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path
) -> None:
    top = secure_top(tmp_path / "data")
    top["dataset"] = {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}}
    gateway = await start_gateway(top=top)
    async with (
        grpc.aio.insecure_channel(gateway.address) as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http,
    ):
        stub = dataset_pb2_grpc.DatasetStub(channel)
        developer = await new_key(channel, gateway, "alice", "developer")
        reader = await new_key(channel, gateway, "alice", "user")
        stranger = await new_key(channel, gateway, "bob", "developer")
        await stub.CreateCollection(
            pb.CreateCollectionRequest(collection_id="docs"), metadata=bearer(developer)
        )
        pdf = write_pdf(tmp_path / "report.pdf", PAGES)
        ingested = await stub.IngestFile(
            iter(upload(pdf, metadata=struct(team="ops"))), metadata=bearer(developer)
        )
        notes = [pb.Document(id=f"note-{i}", text=f"note {i} about snow") for i in range(3)]
        await stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(collection="collections/docs", documents=notes),
            metadata=bearer(developer),
        )

        # gRPC, as a user-role key of the same tenant: two pages of two.
        first = await stub.ListDocuments(
            pb.ListDocumentsRequest(collection="collections/docs", page_size=2),
            metadata=bearer(reader),
        )
        assert [d.id for d in first.documents] == ["note-0", "note-1"]
        assert first.next_page_token
        second = await stub.ListDocuments(
            pb.ListDocumentsRequest(
                collection="collections/docs", page_size=2, page_token=first.next_page_token
            ),
            metadata=bearer(reader),
        )
        assert [d.id for d in second.documents] == ["note-2", "report.pdf"]
        assert not second.next_page_token
        report = second.documents[1]
        assert (report.source, report.chunks, report.pages) == ("report.pdf", ingested.chunks, 4)
        assert dict(report.metadata) == {"team": "ops"}
        assert report.update_time.seconds > 0
        assert (second.documents[0].source, second.documents[0].chunks) == ("note-2", 1)

        # REST: the same listing, lowerCamelCase, query-string paging.
        headers = {"authorization": f"Bearer {reader}"}
        reply = await http.get(
            "/v1/collections/docs/documents", params={"page_size": 3}, headers=headers
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert [d["id"] for d in body["documents"]] == ["note-0", "note-1", "note-2"]
        rest = await http.get(
            "/v1/collections/docs/documents",
            params={"pageToken": body["nextPageToken"]},
            headers=headers,
        )
        (listed,) = rest.json()["documents"]
        assert {k: listed[k] for k in ("id", "source", "chunks", "pages", "metadata")} == {
            "id": "report.pdf", "source": "report.pdf", "chunks": ingested.chunks, "pages": 4,
            "metadata": {"team": "ops"},
        }  # fmt: skip
        assert listed["updateTime"].endswith("Z") and "nextPageToken" not in rest.json()
        # The documents:upsert route on the same path still answers POST only.
        wrong = await http.get("/v1/collections/docs/documents:upsert", headers=headers)
        assert wrong.status_code in (404, 405)

        # Another tenant's collection of the same id is NOT_FOUND, on both paths.
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.ListDocuments(
                pb.ListDocumentsRequest(collection="collections/docs"), metadata=bearer(stranger)
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        reply = await http.get(
            "/v1/collections/docs/documents", headers={"authorization": f"Bearer {stranger}"}
        )
        assert reply.status_code == 404
        # No key at all is UNAUTHENTICATED.
        assert (await http.get("/v1/collections/docs/documents")).status_code == 401

        # Bad paging is INVALID_ARGUMENT naming the field.
        for request, field in (
            (pb.ListDocumentsRequest(collection="collections/docs", page_size=-1), "page_size"),
            (pb.ListDocumentsRequest(collection="collections/docs", page_token="x!"), "page_token"),
            (pb.ListDocumentsRequest(), "collection"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.ListDocuments(request, metadata=bearer(reader))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in (bad.value.details() or "")

        # After a delete the listing and the page token still agree.
        await stub.DeleteDocuments(
            pb.DeleteDocumentsRequest(collection="collections/docs", document_ids=["note-1"]),
            metadata=bearer(developer),
        )
        resumed = pb.ListDocumentsRequest(
            collection="collections/docs", page_token=first.next_page_token
        )
        after = await stub.ListDocuments(resumed, metadata=bearer(reader))
        assert [d.id for d in after.documents] == ["note-2", "report.pdf"]


async def test_the_disabled_dataset_layer_refuses_it(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(top={"dataset": {"enabled": False}})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = dataset_pb2_grpc.DatasetStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListDocuments(pb.ListDocumentsRequest(collection="collections/docs"))
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_document_page_tokens_round_trip_and_refuse_others() -> None:
    for document_id in ("", "a", "report.pdf", "naïve/ü 🙂#1"):
        assert decode_document_cursor(encode_document_cursor(document_id)) == document_id
    assert decode_document_cursor("") == ""
    # Not base64, not JSON, a ListChunks-style ["a", 1], and {"after": 1}.
    for token in ("x!", "bm90IGpzb24=", "WyJhIiwgMV0=", "eyJhZnRlciI6IDF9"):
        with pytest.raises(InvalidInput):
            decode_document_cursor(token)
