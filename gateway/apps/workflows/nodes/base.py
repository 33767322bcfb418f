"""What every node type is: a config JSON Schema, typed outputs, and `run`.

A node type is a small module in this package with one `NodeType` subclass
(listed in `nodes/__init__.py`). The engine gives `run` a `NodeContext`: the
node, the outputs of the nodes upstream (`scope`), the services it may call,
and `emit` for streamed text. `run` returns an `Outcome`: the outputs, the
branch taken (branching types only) and the tokens its model calls used. It
raises NodeFailed (or any GatewayError/RouterError) to fail the node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from gateway.apps.retrieval import Retriever
from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Definition, Node, Problem
from router.router import Router
from router.types import Usage


class NodeFailed(Exception):
    """A node's own failure, worded for the workflow's author."""


@dataclass(frozen=True, slots=True)
class Outcome:
    outputs: Mapping[str, Any]
    branch: str | None = None  # branching types: the label of the edges to follow
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class ModelUse:
    """One model call a node made, for the usage records."""

    node: str
    model: str
    deployment: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    status: str  # "OK" or the error's kind
    cached_input_tokens: int = 0  # of input_tokens: read from the upstream's prompt cache


class Secrets(Protocol):
    async def reveal(self, tenant: str, names: Sequence[str]) -> dict[str, str]:
        """The values of `names` (NotFound for a missing one)."""
        ...


class HttpClient(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_s: float,
        max_bytes: int,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); refuses addresses the gateway may not reach."""
        ...


class TaskRunner(Protocol):
    async def submit(self, tenant: str, type: str, payload: Mapping[str, Any]) -> str: ...

    async def wait(self, tenant: str, task_id: str) -> tuple[str, Mapping[str, Any], str]:
        """(state, result, error) once the task has ended."""
        ...


@dataclass
class Services:
    """What nodes may call; a missing one fails the nodes that need it."""

    router: Callable[[], Router]
    retriever: Retriever
    http: HttpClient | None = None
    secrets: Secrets | None = None
    tasks: TaskRunner | None = None
    on_model_call: Callable[[ModelUse], None] | None = None
    map_concurrency: int = 8


class Stream(Protocol):
    def follow(self, node: str) -> AsyncIterator[str]:
        """The text `node` emits, from its first piece, until it settles."""
        ...

    async def settled(self, node: str) -> None:
        """Wait until `node` has finished, failed or been skipped."""
        ...


SubRun = Callable[[Definition, Mapping[str, Any]], Awaitable[tuple[dict[str, Any], Usage]]]


@dataclass(slots=True)
class NodeContext:
    node: Node
    inputs: Mapping[str, Any]  # the run's inputs, checked against the definition's
    scope: dict[str, Any]  # node id -> outputs of every settled node (live view)
    services: Services
    tenant: str
    run_id: str
    deadline: float | None
    emit: Callable[[str], None]
    streams: Stream
    streaming: frozenset[str]  # ids of the nodes that stream text (their `text` output)
    subrun: SubRun
    usage: list[ModelUse] = field(default_factory=list)

    def resolve(self, key: str, default: Any = None) -> Any:
        """The config value `key`, its templates resolved over the scope."""
        value = self.node.config.get(key, default)
        return refs.resolve(value, self.scope, f"config.{key}")

    def used(self, use: ModelUse) -> None:
        self.usage.append(use)
        if self.services.on_model_call is not None:
            self.services.on_model_call(use)


@dataclass(frozen=True, slots=True)
class Shape:
    """What validation knows about the nodes upstream of one node."""

    outputs: Mapping[str, Mapping[str, str]]  # node id -> field -> type ("any": unknown)
    types: Mapping[str, str]  # node id -> node type


class NodeType:
    """Subclass per node type; override what differs."""

    name: ClassVar[str]
    description: ClassVar[str]
    schema: ClassVar[dict[str, Any]]  # JSON Schema of the config
    outputs: ClassVar[dict[str, str]] = {}  # field -> JSON type
    streams: ClassVar[bool] = False  # emits text as it runs
    eager: ClassVar[bool] = False  # starts once its predecessors have started
    literal_fields: ClassVar[frozenset[str]] = frozenset()  # config keys that are not templates
    secret_fields: ClassVar[tuple[str, ...]] = ()  # field prefixes that may read {{ secrets.X }}

    def output_types(self, node: Node, definition: Definition) -> Mapping[str, str]:
        return self.outputs

    def branches(self, node: Node) -> tuple[str, ...] | None:
        """The labels this node may take; None: it does not branch."""
        return None

    def templates(self, node: Node) -> list[tuple[str, str]]:
        """(field, template) for every string of the config that is a template."""
        return [
            (f, text)
            for key, value in node.config.items()
            if key not in self.literal_fields
            for f, text in refs.strings(value, f"config.{key}")
        ]

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        """Checks beyond the schema and the references (called when saved)."""
        return []

    def inner_scope(self, node: Node) -> Mapping[str, str] | None:
        """For nodes that hold a sub-graph: what `{{ <this id>.x }}` means inside it."""
        return None

    async def run(self, ctx: NodeContext) -> Outcome:
        raise NotImplementedError


def usage_of(uses: Sequence[ModelUse]) -> Usage:
    return Usage(sum(u.input_tokens for u in uses), sum(u.output_tokens for u in uses))
