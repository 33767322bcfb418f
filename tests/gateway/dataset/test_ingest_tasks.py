"""The `dataset.ingest` task type, run as a worker would run it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters import build_provider
from gateway.dataset.tasks import ingest_task_type
from gateway.tasks.errors import InvalidTask, TaskFailed
from gateway.tasks.handlers import TaskContext
from gateway.tasks.model import Task, TaskState, Transition
from indexer.datasets import Datasets
from indexer.documents import Query
from indexer.hashed_embedder import HashedEmbedder
from router.router import Router
from tests.conftest import make_config

PAYLOAD = {
    "collection": "collections/docs",
    "documents": [
        {"id": "a", "text": "cats chase mice", "metadata": {"year": 2024}},
        {"id": "b", "text": "# Pets\n\nDogs bark.", "mime_type": "text/markdown"},
    ],
}


def context(tenant: str) -> TaskContext:
    task = Task(
        "task-1", tenant, "dataset.ingest", PAYLOAD, TaskState.PROCESSING,
        (Transition(TaskState.PROCESSING, time.time()),),
    )  # fmt: skip
    return TaskContext(task, Router(make_config(), build_provider))


async def test_ingests_as_the_tasks_tenant_and_is_safe_to_repeat(tmp_path: Path) -> None:
    datasets = Datasets(tmp_path, HashedEmbedder(), "hashed")
    task_type = ingest_task_type(datasets)
    try:
        await datasets.create("acme", "docs")
        result = await task_type.run(context("acme"), PAYLOAD)
        assert result == {"documents": 2, "chunks": 2}
        assert await task_type.run(context("acme"), PAYLOAD) == result  # redelivered
        hits = await datasets.search("acme", "docs", Query("dogs bark", k=1))
        assert (hits[0].chunk.document_id, hits[0].chunk.heading) == ("b", "Pets")
        with pytest.raises(TaskFailed, match="not found") as failed:
            await task_type.run(context("other"), PAYLOAD)  # not its collection
        assert not failed.value.retryable
    finally:
        await datasets.aclose()


async def test_a_missing_model_is_worth_retrying(tmp_path: Path) -> None:
    task_type = ingest_task_type(Datasets(tmp_path, None, "", unavailable="fetch it"))
    with pytest.raises(TaskFailed, match="fetch it") as failed:
        await task_type.run(context("acme"), PAYLOAD)
    assert failed.value.retryable


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"documents": [{"id": "a", "text": "x"}]}, "payload.collection"),
        ({"collection": "collections/docs", "documents": []}, "payload.documents"),
        ({"collection": "c", "documents": [{"id": "a"}]}, "payload.documents.0.text"),
        ({"collection": "c", "documents": [{"id": "a", "text": "x", "metadata": 3}]},
         "payload.documents.0.metadata"),
    ],
)  # fmt: skip
def test_bad_payloads_are_refused_at_submit(payload: dict[str, object], field: str) -> None:
    task_type = ingest_task_type(Datasets(Path("unused"), None, ""))
    with pytest.raises(InvalidTask, match=field.replace(".", r"\.")):
        task_type.validate(payload)
