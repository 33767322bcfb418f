"""The App layer's domain objects: plain dataclasses, no protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from gateway.identity import Role

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    display_name: str = ""
    requests_per_minute: int = 0  # 0: unlimited
    tokens_per_minute: int = 0
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public record; its secret exists only in the caller's hands."""

    id: str
    tenant: str
    role: Role
    prefix: str  # the first characters of the secret, to recognise it
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    created_ms: int = 0
    revoked_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """What a key hash resolves to on the hot path: the key and its tenant's limits."""

    key: ApiKey
    tenant: Tenant


@dataclass(frozen=True, slots=True)
class Retrieval:
    collections: tuple[str, ...] = ()
    k: int = 4
    score_threshold: float = 0.0
    rerank: bool = False  # re-score the candidates with the gateway's cross-encoder
    rerank_top_n: int = 0  # candidates per collection to rerank; 0: the Dataset's default (50)


@dataclass(frozen=True, slots=True)
class App:
    tenant: str
    id: str
    model: str
    display_name: str = ""
    prompt_template: str = ""
    retrieval: Retrieval = Retrieval()
    # GenerationParams in its protobuf JSON form: the edge converts it.
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation's history."""

    role: str
    content: str


class UsageRecord(NamedTuple):  # a tuple: one is made per call on the hot path
    ts_ms: int
    tenant: str
    key_id: str
    app: str
    model: str
    deployment: str
    method: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    status: str
    run_id: str = ""  # the workflow run a model call was made for
    cost_nanos: int = 0  # USD 1e-9: what the call cost at its deployment's price


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start_ms: int
    end_ms: int
    group_by: tuple[str, ...] = ()  # of USAGE_GROUPS
    bucket_s: int = 0  # 0: one bucket
    tenant: str | None = None  # None: every tenant (admins only)


USAGE_GROUPS = ("tenant", "app", "key", "model", "deployment")


@dataclass(frozen=True, slots=True)
class UsageRow:
    bucket_start_ms: int
    group: Mapping[str, str]
    requests: int
    input_tokens: int
    output_tokens: int
    errors: int
    cost_nanos: int = 0


BUDGET_SCOPES = ("tenant", "key", "app")
BUDGET_PERIODS = ("daily", "weekly", "monthly", "none")


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A cap on what a tenant, one of its keys or one of its apps may spend per period."""

    scope: str  # of BUDGET_SCOPES
    tenant: str
    subject: str  # the tenant's, key's or app's id
    limit_nanos: int  # USD 1e-9
    period: str = "monthly"  # of BUDGET_PERIODS
    alert_share: float = 0.0  # 0: no alert
    updated_ms: int = 0

    @property
    def name(self) -> str:
        if self.scope == "tenant":
            return f"tenants/{self.tenant}"
        return f"tenants/{self.tenant}/{self.scope}s/{self.subject}"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    ts_ms: int
    actor: str
    action: str
    resource: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    prev_hash: str
    hash: str
