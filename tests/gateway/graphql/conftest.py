"""A gateway with auth, the App, Dataset and task layers on, and two tenants:
acme owns a collection (the handbook), an app over it and a workflow; beta owns
an app of its own. Its Dataset layer has the tiny embedding model and the tiny
hand-set cross-encoder, so searches can rerank."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from gateway.pb import app_pb2, app_pb2_grpc, dataset_pb2, dataset_pb2_grpc
from gateway.server import Gateway
from indexer.testmodel import build_tiny_cross_encoder
from tests.conftest import MODELS, StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top

HANDBOOK = [
    ("leave", "Every employee receives thirty days of paid vacation leave each year."),
    ("office", "The office building opens at eight in the morning and closes at six."),
    ("parking", "Visitors park for free on the lower level of the garage."),
]
ANSWER: dict[str, Any] = {
    "inputs": {"question": {"type": "string", "required": True}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "reply", "type": "llm", "config": {"model": "chat", "messages": [
            {"role": "user", "content": "{{ start.question }}"}]}},
        {"id": "say", "type": "answer", "config": {"text": "{{ reply.text }}"}},
    ],
    "edges": [{"from": "start", "to": "reply"}, {"from": "reply", "to": "say"}],
}  # fmt: skip


# "broken" fails every call: a task over it waits out its backoff, cancellable.
GRAPH_MODELS = {
    **MODELS,
    "broken": {"deployments": [{"name": "broken-a", "provider": "mock", "model": "error"}]},
}


@dataclass(frozen=True)
class Keys:
    admin: str
    acme_dev: str
    acme_user: str
    beta_dev: str


@pytest.fixture(scope="session")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path, cross_encoder: Path
) -> Gateway:
    top = secure_top(tmp_path)
    top["dataset"] = {
        "snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)},
        "reranker": {"kind": "onnx", "model_dir": str(cross_encoder), "threads": 1},
    }  # fmt: skip
    top["tasks"] = {"backoff_base_s": 30}
    return await start_gateway(GRAPH_MODELS, top=top)


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        yield ch


@pytest.fixture
async def keys(channel: grpc.aio.Channel, gateway: Gateway) -> Keys:
    assert gateway.apps is not None and gateway.apps.admin_secret is not None
    made = Keys(
        admin=gateway.apps.admin_secret,
        acme_dev=await new_key(channel, gateway, "acme", "developer"),
        acme_user=await new_key(channel, gateway, "acme", "user"),
        beta_dev=await new_key(channel, gateway, "beta", "developer"),
    )
    acme, beta = bearer(made.acme_dev), bearer(made.beta_dev)
    datasets = dataset_pb2_grpc.DatasetStub(channel)
    await datasets.CreateCollection(
        dataset_pb2.CreateCollectionRequest(collection_id="handbook"), metadata=acme
    )
    documents = [dataset_pb2.Document(id=i, text=t) for i, t in HANDBOOK]
    await datasets.UpsertDocuments(
        dataset_pb2.UpsertDocumentsRequest(collection="collections/handbook", documents=documents),
        metadata=acme,
    )
    apps = app_pb2_grpc.AppStub(channel)
    retrieval = app_pb2.Retrieval(collections=["collections/handbook"], k=1)
    spec = app_pb2.AppSpec(model="chat", retrieval=retrieval)
    await apps.CreateApp(app_pb2.CreateAppRequest(app_id="helpdesk", app=spec), metadata=acme)
    other = app_pb2.AppSpec(model="chat")
    await apps.CreateApp(app_pb2.CreateAppRequest(app_id="beta-bot", app=other), metadata=beta)
    definition = struct_pb2.Struct()
    definition.update(ANSWER)
    workflow = app_pb2.Workflow(definition=definition)
    await apps.CreateWorkflow(
        app_pb2.CreateWorkflowRequest(workflow_id="answer", workflow=workflow), metadata=acme
    )
    return made
