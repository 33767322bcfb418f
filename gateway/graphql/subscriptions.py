"""Streams over graphql-transport-ws: a model's tokens, an app's chat, a
workflow run's events, a task's state changes. Each is one server-streaming
RPC; ending the subscription (or closing the socket) cancels it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import json_of, struct
from gateway.graphql.errors import bad
from gateway.graphql.rpcs import APP, ROUTER, TASKS
from gateway.graphql.tasks import Task
from gateway.graphql.usage import TokenUsage
from gateway.graphql.workflows import NodeRun
from gateway.pb import app_pb2, router_pb2, tasks_pb2


@strawberry.input
class MessageInput:
    role: str = strawberry.field(description='"system", "user", "assistant" or "tool"')
    content: str


@strawberry.type
class GenerateChunk:
    delta: str
    deployment: str = strawberry.field(description="Set on the first chunk")
    finish_reason: str = strawberry.field(description="Set on the last chunk")
    usage: TokenUsage | None = strawberry.field(description="Set on the last chunk")
    cached: bool


@strawberry.type
class Citation:
    collection: str
    document_id: str
    chunk_id: str
    score: float
    text: str


@strawberry.type
class ChatDone:
    finish_reason: str
    usage: TokenUsage
    deployment: str


@strawberry.type(description="Exactly one of citation, delta and done is set; done is last")
class ChatEvent:
    conversation_id: str
    citation: Citation | None = None
    delta: str | None = None
    done: ChatDone | None = None


@strawberry.type(description="`kind` says which fields are set")
class WorkflowEvent:
    run_id: str
    kind: str = strawberry.field(
        description='"run_started", "node_started", "node_finished", "text_delta", "run_finished"'
    )
    node: str | None = None
    text: str | None = None
    node_run: NodeRun | None = None
    status: str | None = None
    outputs: JSON | None = None
    error: str | None = None
    usage: TokenUsage | None = None


def _chunk(c: router_pb2.GenerateChunk) -> GenerateChunk:
    usage = TokenUsage.from_pb(c.usage) if c.HasField("usage") else None
    return GenerateChunk(
        delta=c.delta, deployment=c.deployment, finish_reason=c.finish_reason, usage=usage,
        cached=c.cached,
    )  # fmt: skip


def _chat_event(e: app_pb2.ChatEvent) -> ChatEvent:
    event = ChatEvent(conversation_id=e.conversation_id)
    kind = e.WhichOneof("event")
    if kind == "citation":
        c = e.citation
        event.citation = Citation(collection=c.collection, document_id=c.document_id,
                                  chunk_id=c.chunk_id, score=c.score, text=c.text)  # fmt: skip
    elif kind == "delta":
        event.delta = e.delta
    elif kind == "done":
        d = e.done
        event.done = ChatDone(finish_reason=d.finish_reason, usage=TokenUsage.from_pb(d.usage),
                              deployment=d.deployment)  # fmt: skip
    return event


def _workflow_event(e: app_pb2.WorkflowEvent) -> WorkflowEvent:
    kind = e.WhichOneof("event") or ""
    event = WorkflowEvent(run_id=e.run_id, kind=kind)
    if kind == "node_started":
        event.node = e.node_started.node
    elif kind == "node_finished":
        event.node, event.node_run = e.node_finished.node, NodeRun.from_pb(e.node_finished)
    elif kind == "text_delta":
        event.node, event.text = e.text_delta.node, e.text_delta.text
    elif kind == "run_finished":
        f = e.run_finished
        event.status, event.outputs, event.error = f.status, json_of(f, "outputs"), f.error
        event.node, event.usage = f.error_node or None, TokenUsage.from_pb(f.usage)
    return event


@strawberry.type
class Subscription:
    @strawberry.subscription(description="A model's tokens as it generates them")
    async def generate(
        self,
        info: Info[GraphContext, None],
        model: str,
        messages: list[MessageInput],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncGenerator[GenerateChunk, None]:
        if not messages:
            raise bad("messages: give at least one")
        params = router_pb2.GenerationParams(max_tokens=max_tokens, temperature=temperature)
        request = router_pb2.GenerateRequest(
            model=model, params=params,
            messages=[router_pb2.Message(role=m.role, content=m.content) for m in messages],
        )  # fmt: skip
        async for chunk in info.context.stream(ROUTER["GenerateStream"], request):
            yield _chunk(chunk)

    @strawberry.subscription(description="An app's answer: citations, then deltas, then done")
    async def chat(
        self,
        info: Info[GraphContext, None],
        app: str,
        query: str,
        conversation_id: str = "",
        inputs: JSON | None = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        request = app_pb2.ChatRequest(
            app=app, query=query, conversation_id=conversation_id,
            inputs=struct(inputs, "inputs"),
        )  # fmt: skip
        async for event in info.context.stream(APP["Chat"], request):
            yield _chat_event(event)

    @strawberry.subscription(description="Runs a workflow, streaming its events")
    async def workflow_run(
        self,
        info: Info[GraphContext, None],
        name: str,
        version: int = 0,
        inputs: JSON | None = None,
    ) -> AsyncGenerator[WorkflowEvent, None]:
        request = app_pb2.RunWorkflowRequest(
            name=name, version=version, inputs=struct(inputs, "inputs")
        )
        async for event in info.context.stream(APP["RunWorkflow"], request):
            yield _workflow_event(event)

    @strawberry.subscription(description="The task now, then at each state change until it ends")
    async def task(self, info: Info[GraphContext, None], id: str) -> AsyncGenerator[Task, None]:
        async for task in info.context.stream(TASKS["Watch"], tasks_pb2.WatchTaskRequest(id=id)):
            yield Task.from_pb(task)
