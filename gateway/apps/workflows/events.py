"""What a run reports, in order: RunStarted, then per node NodeStarted ...
NodeFinished (TextDelta from `answer` nodes in between), then RunFinished."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.types import Usage

SUCCEEDED, FAILED, SKIPPED, CANCELLED = "succeeded", "failed", "skipped", "cancelled"


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str


@dataclass(frozen=True, slots=True)
class NodeStarted:
    node: str
    type: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    node: str
    text: str


@dataclass(frozen=True, slots=True)
class NodeFinished:
    node: str
    type: str
    status: str  # succeeded, failed, skipped, or cancelled (the run failed elsewhere)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)  # "node.field" -> the value read
    error: str = ""
    latency_ms: int = 0
    usage: Usage = field(default_factory=Usage)
    branch: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RunFinished:
    status: str  # succeeded or failed
    outputs: Mapping[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    error: str = ""
    error_node: str = ""


Event = RunStarted | NodeStarted | TextDelta | NodeFinished | RunFinished
