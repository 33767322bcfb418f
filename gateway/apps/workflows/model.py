"""A tenant's saved workflows, their versions and the record of each run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Workflow:
    tenant: str
    id: str
    display_name: str = ""
    description: str = ""
    latest_version: int = 0
    published_version: int = 0  # 0: never published
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class Version:
    tenant: str
    workflow: str
    version: int
    definition: Mapping[str, Any]  # the document as saved (JSON)
    actor: str = ""
    created_ms: int = 0


RUNNING = "running"


@dataclass(frozen=True, slots=True)
class RunRecord:
    tenant: str
    id: str
    workflow: str
    version: int
    status: str  # running, succeeded, failed, cancelled
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    nodes: Sequence[Mapping[str, Any]] = ()  # per node: id, type, status, inputs, outputs, ...
    error: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    started_ms: int = 0
    finished_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as the API shows it: never its value."""

    name: str
    created_ms: int
    updated_ms: int
