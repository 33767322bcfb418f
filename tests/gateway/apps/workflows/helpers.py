"""Shared pieces of the workflow tests: a router on mock models, a retriever
over a few fixed passages, and a run that collects its events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters import build_provider
from gateway.apps.retrieval import Passage
from gateway.apps.workflows.engine import Run, check_inputs
from gateway.apps.workflows.events import Event
from gateway.apps.workflows.nodes.base import ModelUse, Services
from gateway.apps.workflows.validate import load
from gateway.errors import NotFound
from router.router import Router
from tests.conftest import make_config

MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8"}]},
    "paced": {"deployments": [{"name": "paced-a", "provider": "mock",
                               "model": "echo?tokens=10&tokens_per_second=200"}]},
    "slow": {"deployments": [{"name": "slow-a", "provider": "mock", "model": "slow"}]},
    "broken": {"deployments": [{"name": "broken-a", "provider": "mock", "model": "error"}]},
    # ~100 ms each (11 tokens at 100/s); ~1 s (40 tokens at 40/s); a stream cut after 3 tokens
    "paced100": {"deployments": [{"name": "paced100-a", "provider": "mock",
                                  "model": "echo?tokens=11&tokens_per_second=100"}]},
    "long": {"deployments": [{"name": "long-a", "provider": "mock",
                              "model": "echo?tokens=40&tokens_per_second=40"}]},
    "cut": {"deployments": [{"name": "cut-a", "provider": "mock",
                             "model": "echo?tokens=10&fail_after_tokens=3"}]},
}  # fmt: skip

PASSAGES = {
    "acme": [
        Passage("collections/handbook", "leave.md", "leave.md#0", 0.82, "30 days of paid leave."),
        Passage("collections/handbook", "office.md", "office.md#0", 0.31, "Opens at 8."),
    ]
}


class FixedRetriever:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def search(
        self, tenant: str, collections: Sequence[str], query: str, k: int, score_threshold: float,
        *, mode: str = "", filter: Mapping[str, Any] | None = None,
        rerank: bool = False, rerank_top_n: int = 0,
    ) -> list[Passage]:  # fmt: skip
        self.calls.append(
            {
                "tenant": tenant, "query": query, "k": k, "mode": mode, "filter": filter,
                "rerank": rerank, "rerank_top_n": rerank_top_n,
            }
        )  # fmt: skip
        if tenant not in PASSAGES:
            raise NotFound(f"collection {collections[0]!r}")
        return [p for p in PASSAGES[tenant] if p.score >= score_threshold][:k]


def services(router: Router | None = None, **kw: Any) -> Services:
    r = router or Router(make_config(MODELS), build_provider)
    uses: list[ModelUse] = []
    kw.setdefault("on_model_call", uses.append)
    s = Services(lambda: r, kw.pop("retriever", FixedRetriever()), **kw)
    s.uses = uses  # type: ignore[attr-defined]
    return s


async def run(
    raw: Mapping[str, Any], inputs: Mapping[str, Any] | None = None, svc: Services | None = None,
    *, tenant: str = "acme", deadline: float | None = None,
) -> list[Event]:  # fmt: skip
    definition = load(raw)
    checked = check_inputs(definition, inputs or {})
    r = Run(definition, checked, svc or services(), tenant=tenant, run_id="r1", deadline=deadline)
    return [e async for e in r.events()]
