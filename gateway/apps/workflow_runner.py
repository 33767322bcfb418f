"""Workflows as the App layer serves them: saved (validated, versioned),
resolved to a version, run through the engine with the run recorded and each
model call's usage recorded. Wire-free: the App service and the task worker
both call this.

Spend: a run is refused (BudgetSpent) before it starts when a budget of its
caller is spent: the tenant's, the key's, or the app's, the app being
`workflows/<id>`. Each model call is priced when it ends from the run's
router snapshot's PriceBook (as the access interceptor prices RPCs), and the
cost goes on its usage record, into `infergate_cost_usd` and into those
budgets. A run is not stopped midway when its budget runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from cachetools import LRUCache

from gateway.apps.config import WorkflowsConfig
from gateway.apps.model import UsageRecord
from gateway.apps.retrieval import Retriever
from gateway.apps.spend import CostCounter, Spend
from gateway.apps.store import Store
from gateway.apps.store.workflows import Runs, Workflows
from gateway.apps.usage import UsageRecorder
from gateway.apps.workflows import document, validate
from gateway.apps.workflows.engine import DeadlineExceeded, Run, bounded, check_inputs
from gateway.apps.workflows.events import (
    CANCELLED,
    FAILED,
    Event,
    NodeFinished,
    RunFinished,
)
from gateway.apps.workflows.http import GuardedHttp
from gateway.apps.workflows.model import RUNNING, RunRecord, Version, Workflow
from gateway.apps.workflows.nodes.base import ModelUse, Services, TaskRunner
from gateway.errors import InvalidArgument
from router.router import Router

log = logging.getLogger("infergate.workflows")


class InvalidWorkflow(InvalidArgument):
    """A definition with problems; the message names the first, `problems` has all."""

    def __init__(self, problems: list[document.Problem]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__("workflow.definition", f"{problems[0]}{more}")
        self.problems = problems


def checked(raw: Any) -> document.Definition:
    """The definition in `raw`; InvalidWorkflow listing every problem."""
    try:
        return validate.load(raw)
    except document.DefinitionError as exc:
        raise InvalidWorkflow(exc.problems) from None


def problems(raw: Any) -> list[document.Problem]:
    try:
        validate.load(raw)
    except document.DefinitionError as exc:
        return exc.problems
    return []


def new_run_id() -> str:
    """Sorts by start time (ms, hex) and is unguessable."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class WorkflowRunner:
    def __init__(
        self,
        workflows: Workflows,
        runs: Runs,
        services: Callable[[], Services],
        recorder: UsageRecorder | None = None,
        record_max_chars: int = 4096,
        http: GuardedHttp | None = None,
        spend: Spend | None = None,
        count_cost: CostCounter | None = None,
    ) -> None:
        self.workflows = workflows
        self.spend = spend  # None: no budgets (a run's calls are still priced)
        self._count_cost = count_cost  # the cost metric
        self.runs = runs
        self._services = services
        self._http = http  # closed with the runner
        self._recorder = recorder
        self._max_chars = record_max_chars
        self._checked: LRUCache[tuple[str, str, int, int], tuple[Version, document.Definition]] = (
            LRUCache(maxsize=1024)
        )

    # --- saving -------------------------------------------------------------------------

    async def create(
        self, tenant: str, workflow_id: str, display_name: str, description: str,
        raw: Mapping[str, Any], actor: str,
    ) -> tuple[Workflow, Version]:  # fmt: skip
        """Version 1 of a new workflow: the workflow and the version saved."""
        doc = document.to_json(checked(raw))
        saved = await self.workflows.create(
            tenant, workflow_id, display_name, description, doc, actor
        )
        return saved, Version(tenant, workflow_id, 1, doc, actor, saved.updated_ms)

    async def save(
        self, tenant: str, workflow_id: str, raw: Mapping[str, Any], actor: str,
        display_name: str | None, description: str | None,
    ) -> tuple[Workflow, Version]:  # fmt: skip
        """A new version: the workflow and the version saved."""
        doc = document.to_json(checked(raw))
        saved = await self.workflows.save(
            tenant, workflow_id, doc, actor, display_name, description
        )
        version = Version(tenant, workflow_id, saved.latest_version, doc, actor, saved.updated_ms)
        return saved, version

    async def delete(self, tenant: str, workflow_id: str, actor: str) -> None:
        """The workflow, its versions and its runs' records (those of runs still
        in flight are written when they end)."""
        await self.runs.flush()
        await self.workflows.delete(tenant, workflow_id, actor)
        for key in [k for k in self._checked if k[:2] == (tenant, workflow_id)]:
            self._checked.pop(key, None)

    # --- running ------------------------------------------------------------------------

    async def prepare(
        self, tenant: str, workflow_id: str, version: int, inputs: Mapping[str, Any]
    ) -> tuple[Version, document.Definition, dict[str, Any]]:
        """Everything a run needs, checked before anything streams. A saved
        version never changes, so its checked definition is kept (LRU)."""
        workflow = await self.workflows.get(tenant, workflow_id)
        if version < 0:
            raise InvalidArgument("version", f"must be >= 0, got {version}")
        number = version or workflow.published_version or workflow.latest_version
        # created_ms: a workflow deleted and made again restarts at version 1.
        key = (tenant, workflow_id, workflow.created_ms, number)
        found = self._checked.get(key)
        if found is None:
            saved = await self.workflows.version(tenant, workflow_id, number)
            found = self._checked[key] = (saved, checked(saved.definition))
        saved, definition = found
        return saved, definition, check_inputs(definition, inputs)

    async def run(
        self, tenant: str, key_id: str, saved: Version, definition: document.Definition,
        inputs: dict[str, Any], deadline: float | None, run_id: str = "",
        on_record: Callable[[RunRecord], None] | None = None,
    ) -> AsyncGenerator[Event, None]:  # fmt: skip
        """The run's events; its record is written when it starts and when it
        ends (also when it fails, passes its deadline or is cancelled), and
        handed to `on_record` once written. BudgetSpent, before anything is
        written, when a budget of the caller is spent."""
        app = f"workflows/{saved.workflow}"
        await self.admit(tenant, key_id, saved.workflow)
        run_id = run_id or new_run_id()
        record = RunRecord(
            tenant, run_id, saved.workflow, saved.version, RUNNING, self._cut(inputs),
            started_ms=int(time.time() * 1000),
        )  # fmt: skip
        await self.runs.start(record)
        services = self._services()
        services = dataclasses.replace(
            services, on_model_call=self._usage(tenant, key_id, app, run_id, services.router)
        )
        engine = Run(definition, inputs, services, tenant=tenant, run_id=run_id, deadline=deadline)
        nodes: list[dict[str, Any]] = []
        final: RunFinished | None = None
        error = ""
        try:
            async with contextlib.aclosing(engine.events()) as events:
                async for event in events:
                    if isinstance(event, NodeFinished):
                        nodes.append(self._node(event))
                    elif isinstance(event, RunFinished):
                        final = event
                    yield event
        except DeadlineExceeded as exc:
            error = str(exc)
            raise
        finally:
            if final is not None:
                status, outputs, error = final.status, self._cut(dict(final.outputs)), final.error
            else:
                status, outputs = (FAILED if error else CANCELLED), {}
            done = dataclasses.replace(
                record, status=status, outputs=outputs, nodes=nodes, error=error,
                input_tokens=engine.usage.input_tokens, output_tokens=engine.usage.output_tokens,
                finished_ms=int(time.time() * 1000),
            )  # fmt: skip
            # Shielded: a cancelled caller still leaves its run's record.
            await _shielded(self.runs.finish(done))
            if on_record is not None:
                on_record(done)

    async def admit(self, tenant: str, key_id: str, workflow: str) -> None:
        """BudgetSpent when a budget a run of `workflow` is charged to is spent."""
        if self.spend is not None:
            await self.spend.admit(tenant, key_id, f"workflows/{workflow}")

    def _usage(
        self, tenant: str, key_id: str, app: str, run_id: str, router: Callable[[], Router]
    ) -> Callable[[ModelUse], None]:
        recorder, spend, count = self._recorder, self.spend, self._count_cost

        def record(use: ModelUse) -> None:
            price = router().prices.price(use.model, use.deployment)
            cost = price.cost(use.input_tokens, use.output_tokens, use.cached_input_tokens)
            if cost:
                if count is not None:
                    count(tenant, use.model, use.deployment, cost)
                if spend is not None:
                    spend.add(tenant, key_id, app, cost)
            if recorder is not None:
                recorder.record(UsageRecord(
                    int(time.time() * 1000), tenant, key_id, app, use.model, use.deployment,
                    f"workflow:{use.node}", use.input_tokens, use.output_tokens, use.latency_ms,
                    use.status, run_id, cost,
                ))  # fmt: skip

        return record

    def _node(self, e: NodeFinished) -> dict[str, Any]:
        return {
            "node": e.node, "type": e.type, "status": e.status,
            "inputs": self._cut(dict(e.inputs)), "outputs": self._cut(dict(e.outputs)),
            "error": e.error[: self._max_chars], "latency_ms": e.latency_ms,
            "input_tokens": e.usage.input_tokens, "output_tokens": e.usage.output_tokens,
            "branch": e.branch, "attempts": e.attempts,
        }  # fmt: skip

    def _cut(self, value: Any) -> Any:
        """`value` with every string cut to the record's size cap (and lists,
        nesting and integers bounded as events are)."""
        return bounded(value, self._max_chars)

    async def aclose(self) -> None:
        """Write the run records still queued; close the HTTP client it owns."""
        await self.runs.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def purge_forever(self, retention_s: float, every_s: float = 3600.0) -> None:
        """Drop run records older than the retention, now and every `every_s`."""
        while True:
            try:
                dropped = await self.runs.purge(int((time.time() - retention_s) * 1000))
                if dropped:
                    log.info(
                        "dropped %d workflow run records older than %.0f s", dropped, retention_s
                    )
            except Exception:
                log.exception("could not purge old workflow runs")
            await asyncio.sleep(every_s)


async def _shielded(work: Any) -> None:
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
    except Exception:
        log.exception("could not write a workflow run's record")


def open_runner(
    config: WorkflowsConfig, store: Store, router: Callable[[], Router],
    retriever: Callable[[], Retriever], tasks: Callable[[], TaskRunner | None],
    recorder: UsageRecorder | None, spend: Spend | None = None,
    count_cost: CostCounter | None = None,
) -> WorkflowRunner:  # fmt: skip
    """The runner over `store`'s workflows, its run records written in the
    background and its nodes' services built per run (the retriever and task
    queue as they are then), with an SSRF-guarded HTTP client of its own.
    Close it with `aclose`, before the store."""
    http = GuardedHttp(
        config.http_allow_private, config.http_allowed_networks,
        max_timeout_s=config.http_timeout_s, max_response_bytes=config.http_max_response_bytes,
    )  # fmt: skip

    def services() -> Services:
        return Services(
            router, retriever(), http, store.secrets, tasks(),
            map_concurrency=config.map_concurrency,
        )  # fmt: skip

    runner = WorkflowRunner(
        store.workflows,
        store.runs,
        services,
        recorder,
        config.record_max_chars,
        http=http,
        spend=spend,
        count_cost=count_cost,
    )
    store.runs.start_writer()
    return runner
