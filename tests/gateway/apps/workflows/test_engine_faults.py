"""The engine under faults a node type can cause: a TimeoutError of its own
making, siblings that report just as another node fails, values no event
could carry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from gateway.apps.workflows import engine
from gateway.apps.workflows.events import NodeFinished, RunFinished
from gateway.apps.workflows.nodes import TYPES
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome
from router.types import Usage
from tests.gateway.apps.workflows.helpers import run


class Scripted(NodeType):
    """What the test says: raise `raises`, or answer `outputs` with `usage`."""

    schema: ClassVar[dict[str, Any]] = {"type": "object"}
    outputs: ClassVar[dict[str, str]] = {"*": "any"}

    def __init__(self, name: str, outputs: Any = None, raises: BaseException | None = None,
                 usage: Usage | None = None) -> None:  # fmt: skip
        self.name = name
        self.result, self.raises, self.usage = outputs or {}, raises, usage or Usage()

    async def run(self, ctx: NodeContext) -> Outcome:
        if self.raises is not None:
            raise self.raises
        return Outcome(self.result, usage=self.usage)


@pytest.fixture
def scripted() -> Iterator[dict[str, NodeType]]:
    added = {
        "times_out": Scripted("times_out", raises=TimeoutError()),
        "fails": Scripted("fails", raises=NodeFailed("no")),
        "spends": Scripted("spends", {"text": "ok"}, usage=Usage(7, 11)),
        "huge": Scripted("huge", {"big": 2**70, "deep": _nested(40), "long": "x" * 10_000,
                                  "many": list(range(5000))}),
    }  # fmt: skip
    TYPES.update(added)
    yield added
    for name in added:
        TYPES.pop(name)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"down": value}
    return value


def graph(*nodes: tuple[str, str], outputs: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "nodes": [{"id": "start", "type": "start"}, *({"id": i, "type": t} for i, t in nodes)],
        "edges": [{"from": "start", "to": i} for i, _ in nodes],
    }
    if outputs:
        doc["outputs"] = outputs
    return doc


async def test_a_timeout_error_from_inside_a_node_fails_it_instead_of_hanging(
    scripted: dict[str, NodeType],
) -> None:
    events = await run(graph(("wait", "times_out")), deadline=None)
    finished = [e for e in events if isinstance(e, NodeFinished) and e.node == "wait"]
    assert finished[0].status == "failed" and finished[0].error == "a call timed out"
    assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"


async def test_siblings_that_reported_before_a_failure_are_not_dropped(
    scripted: dict[str, NodeType],
) -> None:
    events = await run(graph(("bad", "fails"), ("good", "spends")))
    good = [e for e in events if isinstance(e, NodeFinished) and e.node == "good"]
    assert [e.status for e in good] == ["succeeded"]  # reported once, not "cancelled"
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == "failed"
    assert done.usage == Usage(7, 11)  # its tokens count


async def test_values_an_event_cannot_carry_are_bounded(scripted: dict[str, NodeType]) -> None:
    events = await run(graph(("h", "huge"), outputs={"big": "{{ h.big }}", "long": "{{ h.long }}"}))
    (finished,) = [e for e in events if isinstance(e, NodeFinished) and e.node == "h"]
    out = finished.outputs
    assert out["big"] == str(2**70)
    assert len(out["long"]) == engine.MAX_VALUE_CHARS + 1 and out["long"].endswith("…")
    assert len(out["many"]) == engine.MAX_ITEMS
    level, depth = out["deep"], 1  # "deep" itself is at depth 1 of the outputs
    while isinstance(level, dict):
        level, depth = level["down"], depth + 1
    assert depth == engine.MAX_DEPTH and level.startswith("… (nested deeper")
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == "succeeded"
    assert done.outputs == {"big": str(2**70), "long": "x" * 10_000}  # outputs: not cut
