"""The workflow engine: runs a checked definition, streaming events. No grpc,
no protobuf: the App service and the task worker drive it alike.

Scheduling: a node starts once every predecessor has settled (succeeded,
failed or been skipped) and at least one of its incoming edges is active; it
is skipped when none is. An edge is active when its source succeeded and took
the edge's branch (unlabelled edges: sources that do not branch), or when its
source failed with `on_error: branch` and the edge is labelled `error`. An
`answer` node is eager: it starts once its predecessors have started, and
forwards the text of a streaming source as it is produced. Independent
branches run concurrently on the event loop.

Per node: `timeout_s` bounds each attempt, `retry` runs failed attempts again
with exponential backoff (not once the node has streamed text). A failure
fails the run (every running node is cancelled) unless the node has
`on_error: branch`; then its `error` edges are followed and `{{ node.error }}`
holds the message.

The caller's deadline bounds the whole run (DeadlineExceeded); closing the
event stream, or cancelling its consumer, cancels every running node, and so
every model call in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import ERROR_BRANCH, Definition, Edge, Node, conforms
from gateway.apps.workflows.events import (
    CANCELLED,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
    TextDelta,
)
from gateway.apps.workflows.nodes import TYPES
from gateway.apps.workflows.nodes.base import (
    ModelUse,
    NodeContext,
    NodeFailed,
    NodeType,
    Outcome,
    Services,
    usage_of,
)
from gateway.errors import DeadlineExceeded as DeadlineExceeded  # engine.DeadlineExceeded
from gateway.errors import GatewayError, InvalidArgument
from router import spans
from router.errors import RouterError
from router.types import Usage

log = logging.getLogger("infergate.workflows")
PENDING, RUNNING = "pending", "running"
_SETTLED = (SUCCEEDED, FAILED, SKIPPED)
MAX_VALUE_CHARS = 4096  # per string in a NodeFinished's inputs and outputs
MAX_ITEMS = 1000  # per list or object there
MAX_DEPTH = 32  # nesting there


def check_inputs(definition: Definition, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The run's inputs, defaults filled in; InvalidArgument naming the input."""
    declared = {i.name: i for i in definition.inputs}
    for name in inputs:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidArgument(
                f"inputs.{name}", f"not an input of this workflow (it takes: {known})"
            )
    out: dict[str, Any] = {}
    for spec in definition.inputs:
        if spec.name in inputs and inputs[spec.name] is not None:
            value = inputs[spec.name]
            if not conforms(value, spec.type):
                raise InvalidArgument(
                    f"inputs.{spec.name}", f"must be {spec.type}, got {type(value).__name__}"
                )
        elif spec.required:
            raise InvalidArgument(f"inputs.{spec.name}", "is required")
        else:
            value = spec.default
        if spec.type == "integer" and isinstance(value, float):
            value = int(value)  # 2.0 given or declared as the default: 2
        out[spec.name] = value
    return out


@dataclass(slots=True)
class _State:
    status: str = PENDING
    outcome: Outcome | None = None
    pieces: list[str] = field(default_factory=list)  # streamed text, for followers
    news: asyncio.Future[None] | None = None  # resolved on each piece and when settled
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        if self.news is not None and not self.news.done():
            self.news.set_result(None)
        self.news = None


class Run:
    """One run of a definition; `events()` drives it (once)."""

    def __init__(
        self,
        definition: Definition,
        inputs: Mapping[str, Any],
        services: Services,
        *,
        tenant: str,
        run_id: str,
        deadline: float | None = None,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.definition = definition
        self.inputs = inputs
        self.services = services
        self.tenant = tenant
        self.run_id = run_id
        self.deadline = deadline
        self.scope: dict[str, Any] = dict(scope or {})
        self._types: dict[str, NodeType] = {n.id: TYPES[n.type] for n in definition.nodes}
        self._nodes = {n.id: n for n in definition.nodes}  # in definition order
        self._incoming: dict[str, list[Edge]] = {n.id: [] for n in definition.nodes}
        self._successors: dict[str, list[str]] = {n.id: [] for n in definition.nodes}
        for e in definition.edges:
            self._incoming[e.target].append(e)
            if e.target not in self._successors[e.source]:
                self._successors[e.source].append(e.target)
        self._state = {n.id: _State() for n in definition.nodes}
        self._streaming = frozenset(n for n, t in self._types.items() if t.streams)
        # Sources an eager node may follow while they run: streaming, and sure to
        # take their plain edges once they succeed (a failure fails the run). A
        # source with on_error: branch may yet take its error edges instead.
        self._followable = frozenset(
            n.id for n in definition.nodes if n.id in self._streaming and n.on_error == "fail"
        )
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self.usage = Usage()

    # --- what node types see ----------------------------------------------------------

    async def follow(self, node: str) -> AsyncIterator[str]:
        state, i = self._state[node], 0
        while True:
            while i < len(state.pieces):
                yield state.pieces[i]
                i += 1
            if state.settled.is_set():
                return
            if state.news is None:
                state.news = asyncio.get_running_loop().create_future()
            await asyncio.shield(state.news)

    async def settled(self, node: str) -> None:
        await self._state[node].settled.wait()

    async def subrun(
        self, definition: Definition, scope: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Usage]:
        """Run a sub-graph to its end over `scope`; NodeFailed-like GatewayError
        naming the inner node when it fails."""
        inner = Run(
            definition, {}, self.services, tenant=self.tenant, run_id=self.run_id,
            deadline=self.deadline, scope=scope,
        )  # fmt: skip
        async for event in inner.events():
            if isinstance(event, RunFinished) and event.status == FAILED:
                raise _SubgraphFailed(event.error)
        return inner.scope, inner.usage

    # --- the run ----------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[Event, None]:
        yield RunStarted(self.run_id)
        try:
            for event in self._schedule():
                yield event
            while self._active:
                event = await self._next()
                yield event
                if not isinstance(event, NodeFinished):
                    continue
                self._active -= 1
                self.usage = _add(self.usage, event.usage)
                node = self._nodes[event.node]
                if event.status == FAILED and node.on_error == "fail":
                    # What other nodes reported already still goes out (their
                    # tokens count); what is still running is cancelled.
                    for queued in self._drain():
                        yield queued
                    running = [
                        n for n in self.definition.nodes if self._state[n.id].status == RUNNING
                    ]
                    await self._cancel()
                    for queued in self._drain():  # reported while being cancelled
                        if isinstance(queued, NodeFinished):
                            yield queued
                            running = [n for n in running if n.id != queued.node]
                    for other in running:  # every node started ends with node_finished
                        yield NodeFinished(other.id, other.type, CANCELLED, error="the run failed")
                    yield RunFinished(
                        FAILED, {}, self.usage, f"node {node.id!r}: {event.error}", node.id
                    )
                    return
                for skipped in self._schedule(after=event.node):
                    yield skipped
            try:
                outputs = bounded(self._outputs(), max_chars=None)
            except refs.TemplateError as exc:
                yield RunFinished(FAILED, {}, self.usage, f"outputs: {exc}")
                return
            yield RunFinished(SUCCEEDED, outputs, self.usage)
        finally:
            await self._cancel()

    def _drain(self) -> list[Event]:
        """The events queued now, their usage counted."""
        found: list[Event] = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, NodeFinished):
                self._active -= 1
                self.usage = _add(self.usage, event.usage)
            found.append(event)
        return found

    async def _next(self) -> Event:
        if self.deadline is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout_at(self.deadline):
                return await self._queue.get()
        except TimeoutError:
            raise DeadlineExceeded("the deadline passed before the workflow finished") from None

    async def _cancel(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _schedule(self, after: str | None = None) -> list[Event]:
        """Start what is ready and skip what cannot run, among the successors of
        `after` (every node when None) and onwards; the skips' events."""
        events: list[Event] = []
        todo = collections.deque(self._nodes if after is None else self._successors[after])
        while todo:
            node_id = todo.popleft()
            state = self._state[node_id]
            if state.status != PENDING:
                continue
            edges = self._incoming[node_id]
            eager = self._types[node_id].eager
            ready = all(
                self._state[e.source].status in _SETTLED
                or (
                    eager
                    and self._state[e.source].status == RUNNING
                    and e.source in self._followable
                )
                for e in edges
            )
            if not ready:
                continue
            node = self._nodes[node_id]
            if not edges or any(self._active_edge(e) for e in edges):
                self._start(node)
                if node_id in self._followable:  # an eager successor may follow it now
                    todo.extend(self._successors[node_id])
            else:
                state.status = SKIPPED
                self._settle(state)
                events.append(NodeFinished(node.id, node.type, SKIPPED))
                todo.extend(self._successors[node_id])
        return events

    def _active_edge(self, edge: Edge) -> bool:
        state = self._state[edge.source]
        if state.status == RUNNING:
            return True  # a streaming source an eager target follows: it may yet succeed
        if state.status == SUCCEEDED:
            assert state.outcome is not None
            return edge.branch == (state.outcome.branch or "")
        return state.status == FAILED and edge.branch == ERROR_BRANCH

    def _start(self, node: Node) -> None:
        self._state[node.id].status = RUNNING
        self._active += 1
        task = asyncio.create_task(self._run_node(node), name=f"workflow:{node.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle(self, state: _State) -> None:
        state.settled.set()
        state.wake()

    def _emit(self, node: Node) -> Any:
        state = self._state[node.id]
        answer = node.type == "answer"

        def emit(text: str) -> None:
            state.pieces.append(text)
            state.wake()
            if answer:
                self._queue.put_nowait(TextDelta(node.id, text))

        return emit

    async def _run_node(self, node: Node) -> None:
        kind, state = self._types[node.id], self._state[node.id]
        self._queue.put_nowait(NodeStarted(node.id, node.type))
        started = time.monotonic()
        uses: list[ModelUse] = []
        outcome: Outcome | None = None
        error, attempt = "", 0
        try:
            for attempt in range(1, node.retry.max_attempts + 1):
                ctx = NodeContext(
                    node, self.inputs, self.scope, self.services, self.tenant, self.run_id,
                    self.deadline, self._emit(node), self, self._streaming, self.subrun,
                )  # fmt: skip
                limit = asyncio.timeout(node.timeout_s)
                try:
                    with spans.span("infergate.workflow.node", _node_attributes(node, attempt)):
                        async with limit:
                            outcome = await kind.run(ctx)
                    error = ""
                    break
                except TimeoutError as exc:  # its own limit, or a call inside that timed out
                    expired = node.timeout_s is not None and limit.expired()
                    error = f"timed out after {node.timeout_s:g} s" if expired else (
                        f"a call timed out: {exc}" if str(exc) else "a call timed out"
                    )  # fmt: skip
                except (NodeFailed, GatewayError, RouterError, ValueError) as exc:
                    error = str(exc)
                except Exception as exc:  # a node type's bug: the run reports it, the gateway lives
                    log.exception("workflow node %s (%s) raised", node.id, node.type)
                    error = f"{type(exc).__name__}: {exc}"
                finally:
                    uses += ctx.usage
                if state.pieces or attempt == node.retry.max_attempts:
                    break  # text already streamed is not taken back
                await asyncio.sleep(node.retry.backoff_s * 2 ** (attempt - 1))
        finally:
            latency = int((time.monotonic() - started) * 1000)
            if outcome is not None and not error:
                state.status, state.outcome = SUCCEEDED, outcome
                self.scope[node.id] = dict(outcome.outputs)
            else:
                state.status = FAILED
                self.scope[node.id] = {"error": error}
            self._settle(state)
        usage = (
            outcome.usage if outcome is not None and outcome.usage != Usage() else usage_of(uses)
        )
        try:
            outputs = bounded(dict(outcome.outputs)) if outcome is not None and not error else {}
            read = bounded(self._read(node, kind))
        except Exception:  # the event must go out, or the run would wait for it forever
            log.exception("workflow node %s: could not report its values", node.id)
            outputs, read = {}, {}
        self._queue.put_nowait(NodeFinished(
            node.id, node.type, state.status, outputs=outputs, inputs=read, error=error,
            latency_ms=latency, usage=usage,
            branch=(outcome.branch or "") if outcome is not None else "", attempts=attempt,
        ))  # fmt: skip

    def _read(self, node: Node, kind: NodeType) -> dict[str, Any]:
        """What `node`'s templates read, for the run record."""
        read: dict[str, Any] = {}
        for _, source in kind.templates(node):
            try:
                found = refs.references(source)
            except refs.TemplateError:
                continue
            for name, attr in found:
                if name == "secrets":
                    continue  # never recorded
                value = self.scope.get(name)
                if attr is not None and isinstance(value, Mapping):
                    value = value.get(attr)
                read[f"{name}.{attr}" if attr else name] = _plain(value)
        return read

    def _outputs(self) -> dict[str, Any]:
        d = self.definition
        if d.outputs:
            return {name: _plain(refs.render(src, self.scope)) for name, src in d.outputs.items()}
        out: dict[str, Any] = {}
        answers = []
        for node in d.nodes:
            state = self._state[node.id]
            if state.status != SUCCEEDED or state.outcome is None:
                continue
            if node.type == "end":
                out.update(state.outcome.outputs)
            elif node.type == "answer":
                answers.append(str(state.outcome.outputs.get("text", "")))
        if answers and "answer" not in out:
            out["answer"] = "".join(answers)
        return out


class _SubgraphFailed(GatewayError):
    pass


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens)


def _plain(value: Any) -> Any:
    return None if isinstance(value, jinja2.Undefined) else value


def bounded(value: Any, max_chars: int | None = MAX_VALUE_CHARS, depth: int = 0) -> Any:
    """`value` as an event or a run record carries it: strings cut to
    `max_chars` (None: not cut; nor are lists and objects), lists and objects
    to MAX_ITEMS, nesting to MAX_DEPTH, integers beyond 64 bits as text (a
    protobuf Struct holds doubles, and deeper JSON no client parses)."""
    value = _plain(value)
    if isinstance(value, str):
        if max_chars is None or len(value) <= max_chars:
            return value
        return value[:max_chars] + "…"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)
    if depth >= MAX_DEPTH:
        return f"… (nested deeper than {MAX_DEPTH})"
    items = None if max_chars is None else MAX_ITEMS
    if isinstance(value, Mapping):
        pairs = list(value.items())[:items]
        return {str(k): bounded(v, max_chars, depth + 1) for k, v in pairs}
    if isinstance(value, list | tuple):
        return [bounded(v, max_chars, depth + 1) for v in value[:items]]
    return bounded(str(value), max_chars, depth)


def _node_attributes(node: Node, attempt: int) -> dict[str, str | int]:
    return {
        "infergate.node.id": node.id,
        "infergate.node.type": node.type,
        "infergate.attempt": attempt,
    }
