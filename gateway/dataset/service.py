"""The Dataset gRPC service: decode -> indexer.Datasets -> encode, nothing else.

Every call runs as `identity.current().tenant`; another tenant's collection
answers NOT_FOUND. A missing embedding model answers FAILED_PRECONDITION with
the command that fetches it. Cancelling a call, or its deadline expiring,
cancels its ingest or search; an ingest whose commit had begun still completes
(see indexer.collection). UpsertDocuments and IngestFile are idempotent by
document id; CreateCollection and DeleteCollection are not (ALREADY_EXISTS,
NOT_FOUND the second time). With an audit log, each creation and deletion is
recorded after it took effect, naming the caller; a failed audit write is
logged and the change stands (the collection already exists or is gone).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gateway.apps.audit import AppendAudit
from gateway.apps.catalog import actor
from gateway.dataset import wire
from gateway.dataset.spool import Spool
from gateway.identity import current
from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc
from gateway.rpc import paged
from gateway.status import abort
from indexer.datasets import Datasets
from indexer.documents import CollectionInfo, DocumentInput
from indexer.errors import DatasetError, InvalidInput
from router.errors import RouterError

_MAX_PAGE = 1000
log = logging.getLogger("infergate.dataset")


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidInput("page_size", f"must be >= 0, got {requested}")
    return min(requested or 100, _MAX_PAGE)


class DatasetService(dataset_pb2_grpc.DatasetServicer):
    def __init__(
        self,
        datasets: Datasets,
        uploads: Path,
        audit: AppendAudit | None = None,
        max_upload_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.datasets = datasets
        self._uploads = uploads
        self._audit = audit
        self._max_upload_bytes = max_upload_bytes

    async def _audited(
        self, action: str, tenant: str, collection: str,
        before: CollectionInfo | None, after: CollectionInfo | None,
    ) -> None:  # fmt: skip
        if self._audit is None:
            return
        resource = f"tenants/{tenant}/collections/{collection}"
        try:
            await self._audit(actor(), action, resource, _summary(before), _summary(after))
        except Exception:  # the change stands; its record is what is missing
            log.exception("could not write the audit event for %s %s", action, resource)

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        spec = request.collection
        try:
            if spec.embedding_model and spec.embedding_model != self.datasets.embedding_model:
                raise InvalidInput(
                    "collection.embedding_model",
                    f"this gateway embeds with {self.datasets.embedding_model!r} "
                    f"(leave it empty), not {spec.embedding_model!r}",
                )
            tenant = current().tenant
            info = await self.datasets.create(
                tenant,
                request.collection_id,
                spec.display_name,
                spec.chunk_tokens,
                spec.chunk_overlap or -1,
                wire.analysis_from_pb(spec.lexical),
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        await self._audited("CreateCollection", tenant, info.id, None, info)
        return wire.collection_to_pb(info)

    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        try:
            name = wire.collection_id(request.name, "name")
            info = await self.datasets.get(current().tenant, name)
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        return wire.collection_to_pb(info)

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        try:
            infos, token = await self.datasets.list_collections(
                current().tenant, _page_size(request.page_size), request.page_token
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        return pb.ListCollectionsResponse(
            collections=[wire.collection_to_pb(i) for i in infos], next_page_token=token
        )

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            name = wire.collection_id(request.name, "name")
            tenant = current().tenant
            before = await self.datasets.get(tenant, name) if self._audit else None
            await self.datasets.delete(tenant, name)
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        await self._audited("DeleteCollection", tenant, name, before, None)
        return empty_pb2.Empty()

    async def UpsertDocuments(
        self, request: pb.UpsertDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertDocumentsResponse:
        try:
            collection = wire.collection_id(request.collection)
            documents = [
                DocumentInput(
                    id=d.id or _missing(f"documents[{i}].id"),
                    text=d.text,
                    source=d.source,
                    metadata=wire.struct_to_dict(d.metadata),
                )
                for i, d in enumerate(request.documents)
            ]
            started, tenant = time.monotonic(), current().tenant
            results = await self.datasets.upsert(tenant, collection, documents)
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        log.info(
            "upserted %d documents into %s/%s: %d chunks, %d unchanged, in %.1fs", len(results),
            tenant, collection, sum(r.chunks for r in results), sum(r.unchanged for r in results),
            time.monotonic() - started,
        )  # fmt: skip
        return pb.UpsertDocumentsResponse(
            documents=len(results), chunks=sum(r.chunks for r in results)
        )

    async def IngestFile(
        self,
        request_iterator: AsyncIterator[pb.IngestFileRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.IngestFileResponse:
        """Spool the stream to a temporary file (on a worker thread), then index
        it. More than `max_upload_bytes` of data answers INVALID_ARGUMENT, as the
        REST path does: retrying cannot help, and RESOURCE_EXHAUSTED would become
        a 429 that clients retry. The spooled file is removed however the call
        ends (cancelled, refused or indexed)."""
        started = time.monotonic()
        spool = await Spool.create(self._uploads, self._max_upload_bytes)
        try:
            collection, header = await _receive(request_iterator, spool, self._check)
            await spool.close()
            document = DocumentInput(
                id=header.document_id or header.filename,
                path=spool.path,
                filename=header.filename,
                mime_type=header.mime_type,
                metadata=wire.struct_to_dict(header.metadata),
            )
            tenant = current().tenant
            result = (await self.datasets.upsert(tenant, collection, [document]))[0]
        except (DatasetError, RouterError) as exc:
            await spool.discard()  # before the caller hears of the refusal
            await abort(context, exc)
        finally:
            await spool.discard()  # what was parsed lives in the store now, or nowhere
        log.info(
            "ingested %s into %s/%s: %d chunks%s in %.1fs", result.document_id, tenant,
            collection, result.chunks, " (unchanged)" if result.unchanged else "",
            time.monotonic() - started,
        )  # fmt: skip
        return pb.IngestFileResponse(
            document_id=result.document_id, chunks=result.chunks, pages=result.pages,
            unchanged=result.unchanged,
        )  # fmt: skip

    async def _check(self, collection: str) -> None:
        """Refuse an upload to a missing collection before its data is spooled."""
        await self.datasets.collection(current().tenant, collection)

    async def DeleteDocuments(
        self, request: pb.DeleteDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDocumentsResponse:
        try:
            collection = wire.collection_id(request.collection)
            deleted = await self.datasets.delete_documents(
                current().tenant, collection, list(request.document_ids)
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        return pb.DeleteDocumentsResponse(deleted=deleted)

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        try:
            collection = wire.collection_id(request.collection)
            hits = await self.datasets.search(
                current().tenant, collection, wire.query_from_pb(request)
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        return pb.SearchResponse(results=[wire.hit_to_pb(h) for h in hits])

    async def ListChunks(
        self, request: pb.ListChunksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChunksResponse:
        try:
            collection = wire.collection_id(request.collection)
            size = _page_size(request.page_size)
            after = wire.decode_cursor(request.page_token)
            chunks = await self.datasets.list_chunks(
                current().tenant, collection, request.document_id, after, size + 1
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        page, token = paged(chunks, size, lambda c: wire.encode_cursor(c.document_id, c.position))
        return pb.ListChunksResponse(
            chunks=[wire.chunk_to_pb(c) for c in page], next_page_token=token
        )

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDocumentsResponse:
        try:
            collection = wire.collection_id(request.collection)
            size = _page_size(request.page_size)
            after = wire.decode_document_cursor(request.page_token)
            documents = await self.datasets.list_documents(
                current().tenant, collection, after, size + 1
            )
        except (DatasetError, RouterError) as exc:
            await abort(context, exc)
        page, token = paged(documents, size, lambda d: wire.encode_document_cursor(d.id))
        return pb.ListDocumentsResponse(
            documents=[wire.document_to_pb(d) for d in page], next_page_token=token
        )


def _missing(field: str) -> str:
    raise InvalidInput(field, "is required")


async def _receive(
    messages: AsyncIterator[pb.IngestFileRequest],
    spool: Spool,
    check: Callable[[str], Awaitable[None]],
) -> tuple[str, pb.IngestFileHeader]:
    """Spool the upload once `check` accepted its collection;
    returns (collection id, header)."""
    header: pb.IngestFileHeader | None = None
    collection = ""
    async for message in messages:
        part = message.WhichOneof("part")
        if header is None:
            if part != "header":
                raise InvalidInput("header", "the first message must carry the header")
            header = message.header
            collection = wire.collection_id(message.collection)
            if not (header.document_id or header.filename):
                raise InvalidInput("header.filename", "a file needs a filename or a document_id")
            await check(collection)
        elif part == "data":
            await spool.write(message.data)
        elif part == "header":
            raise InvalidInput("header", "only the first message may carry the header")
    if header is None:
        raise InvalidInput("header", "the upload was empty")
    return collection, header


def _summary(info: CollectionInfo | None) -> dict[str, Any] | None:
    """What the audit log keeps of a collection: its settings and size."""
    return None if info is None else dataclasses.asdict(info)
