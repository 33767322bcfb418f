"""The `dataset.ingest` task type: ingest text documents as a background task.

Register it where the task types are built, with the gateway's Datasets:
`types.add(ingest_task_type(datasets))`. Payload:
`{"collection": "collections/{id}", "documents": [{"id", "text", "source"?,
"metadata"?, "mime_type"?}]}` (at most 1,000 documents). It runs as the
submitting task's tenant. Idempotent by document id, so a redelivered task
(delivery is at least once) re-embeds nothing; each document is all or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.tasks.errors import InvalidTask, TaskFailed
from gateway.tasks.handlers import TaskContext, TaskType
from indexer.datasets import Datasets, ingest_document
from indexer.documents import DocumentInput
from indexer.errors import DatasetError, NotReady

MAX_DOCUMENTS = 1000


def validate_ingest(payload: Mapping[str, Any]) -> None:
    collection = payload.get("collection")
    if not isinstance(collection, str) or not collection:
        raise InvalidTask("payload.collection", "is required (collections/{id})")
    documents = payload.get("documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidTask("payload.documents", "must be a non-empty list")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidTask("payload.documents", f"at most {MAX_DOCUMENTS}, got {len(documents)}")
    for i, document in enumerate(documents):
        field = f"payload.documents.{i}"
        if not isinstance(document, dict):
            raise InvalidTask(field, "must be an object")
        for name in ("id", "text"):
            if not isinstance(document.get(name), str) or not document[name]:
                raise InvalidTask(f"{field}.{name}", "is required (a string)")
        if not isinstance(document.get("metadata", {}), dict):
            raise InvalidTask(f"{field}.metadata", "must be an object")


def ingest_task_type(datasets: Datasets) -> TaskType:
    async def run(context: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        collection = str(payload["collection"]).removeprefix("collections/")
        chunks = 0
        for document in payload["documents"]:
            item = DocumentInput(
                id=document["id"],
                text=document["text"],
                source=document.get("source", ""),
                mime_type=document.get("mime_type", ""),
                metadata=document.get("metadata", {}),
            )
            try:
                result = await ingest_document(datasets, context.task.tenant, collection, item)
            except NotReady as exc:  # the model may be fetched meanwhile: try again
                raise TaskFailed(str(exc)) from exc
            except DatasetError as exc:  # a bad document or collection stays bad
                raise TaskFailed(str(exc), retryable=False) from exc
            chunks += result.chunks
        return {"documents": len(payload["documents"]), "chunks": chunks}

    return TaskType("dataset.ingest", run, validate_ingest)
