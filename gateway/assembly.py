"""The core parts, built once: the live Router snapshot, the datasets, the task
types and the usage sink. `infergate serve` (gateway/server.py) and
`infergate worker` (gateway/cli/tasks.py) both build them here.

Every `open_*` pushes its part's closing onto the caller's AsyncExitStack as
soon as the part is open, so a start that fails half way (or is cancelled)
closes what it had opened, in reverse order, and a clean stop closes the same
way. Parts that use another are pushed after it and so closed before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from adapters import build_provider
from gateway import cache_metrics, deployment_metrics, gpu, metrics
from gateway.apps.model import UsageRecord
from gateway.apps.prices import SetPrices
from gateway.apps.runtime import open_ledger
from gateway.apps.spend import Spend
from gateway.apps.store import Store, open_store
from gateway.apps.usage import UsageRecorder
from gateway.apps.workflow_runner import WorkflowRunner, open_runner
from gateway.apps.workflow_task import task_type as workflow_task_type
from gateway.apps.workflows.tasks import QueueTasks
from gateway.cache import METRICS, open_cache
from gateway.config import GatewayConfig
from gateway.dataset.disabled import DisabledRetrieval
from gateway.dataset.embedder import build_datasets
from gateway.dataset.retriever import DatasetRetriever
from gateway.dataset.snapshots import claim
from gateway.dataset.tasks import ingest_task_type
from gateway.live import LiveRouter
from gateway.status import status_name
from gateway.tasks.handlers import ModelCall, TaskTypes, UsageSink, load
from gateway.tasks.model import Task
from gateway.tasks.runtime import build_queue, build_worker
from gateway.tasks.worker import Worker
from indexer.datasets import Datasets
from router.pricing import PriceBook
from router.router import ProviderFactory, Router


async def open_router(
    config: GatewayConfig,
    stack: contextlib.AsyncExitStack,
    factory: ProviderFactory = build_provider,
    clock: Callable[[], float] = time.monotonic,
    *,
    cached: bool = True,
) -> LiveRouter:
    """The first snapshot and, when `cached` and the config enables it, the
    response cache (closed after the snapshot that is live then: a reload may
    have replaced both)."""
    cache = open_cache(config.cache) if cached else None
    try:
        router = Router(config, factory, cache=cache, clock=clock)
    except BaseException as exc:
        for provider in getattr(exc, "unused", ()):  # ConfigError: built before the fault
            await provider.aclose()
        if cache is not None:
            await cache.aclose()
        raise
    live = LiveRouter(router, cache)
    stack.push_async_callback(_close_cache, live)
    stack.push_async_callback(lambda: live.router.aclose())
    await stack.enter_async_context(deployment_metrics.published(live))
    await stack.enter_async_context(cache_metrics.published(live, METRICS))
    return live


async def _close_cache(live: LiveRouter) -> None:
    if live.cache is not None:
        await live.cache.aclose()


async def open_datasets(
    config: GatewayConfig, live: LiveRouter, stack: contextlib.AsyncExitStack
) -> Datasets | None:
    """The datasets of `config.data_dir`, marked in use by this process (an
    empty directory first loads the latest snapshot); None when disabled."""
    if not config.dataset.enabled:
        return None
    root = config.data_dir / "datasets"
    stack.enter_context(await asyncio.to_thread(claim, config.dataset.snapshots, root))
    datasets = build_datasets(config.dataset, config.data_dir, live)
    stack.push_async_callback(datasets.aclose)  # snapshots the indexes it changed
    stack.enter_context(gpu.exported(datasets.embedder))  # with a CUDA device only
    return datasets


def task_types(datasets: Datasets | None, workflows: WorkflowRunner | None = None) -> TaskTypes:
    """Every task type this config accepts: the built-in ones, `dataset.ingest`
    when datasets are on, `workflow.run` where the App store is open."""
    types = load()
    if datasets is not None:
        types.add(ingest_task_type(datasets))
    if workflows is not None:
        types.add(workflow_task_type(workflows))
    return types


async def open_app_store(config: GatewayConfig, stack: contextlib.AsyncExitStack) -> Store:
    """The App layer's store, for a process without the App layer (a worker)."""
    store = await open_store(config.apps, config.data_dir)
    stack.push_async_callback(store.aclose)
    return store


def open_usage(
    config: GatewayConfig, store: Store, stack: contextlib.AsyncExitStack
) -> UsageRecorder | None:
    """A usage recorder on `store`; closed before the store, so its queued
    records are written."""
    usage = config.apps.usage
    if not usage.enabled:
        return None
    recorder = UsageRecorder(
        store.usage, batch_size=usage.batch_size, interval_s=usage.flush_interval_s
    )
    recorder.start()
    stack.push_async_callback(recorder.aclose)
    return recorder


async def open_spend(
    config: GatewayConfig, store: Store, live: LiveRouter, stack: contextlib.AsyncExitStack
) -> Spend:
    """A worker's budgets and the prices set through the API (the gateway's are
    the App layer's): loaded now and every `apps.budgets.refresh_s`, drawing on
    the configured ledger. With the memory ledger a separate worker's spend
    reaches the gateway's budgets only through the usage records (after a
    restart): share Redis instead."""
    budgets = config.apps.budgets
    spend = Spend(open_ledger(budgets), on_refusal=metrics.count_budget_refusal)
    stack.push_async_callback(spend.ledger.aclose)
    set_prices = SetPrices(store.prices, live)
    await spend.refresh(store.budgets)
    await set_prices.refresh()
    refreshes = [
        asyncio.create_task(spend.refresh_forever(store.budgets, budgets.refresh_s)),
        asyncio.create_task(set_prices.refresh_forever(budgets.refresh_s)),
    ]

    async def stop() -> None:
        for task in refreshes:
            task.cancel()
        await asyncio.gather(*refreshes, return_exceptions=True)

    stack.push_async_callback(stop)
    return spend


def open_workflows(
    config: GatewayConfig, store: Store, live: LiveRouter, datasets: Datasets | None,
    tasks: QueueTasks, recorder: UsageRecorder | None, stack: contextlib.AsyncExitStack,
    spend: Spend | None = None,
) -> WorkflowRunner:  # fmt: skip
    """A worker's workflow runner (the gateway's is the App layer's)."""
    retriever = DatasetRetriever(datasets) if datasets is not None else DisabledRetrieval()
    runner = open_runner(
        config.apps.workflows, store, live, lambda: retriever, lambda: tasks, recorder, spend,
        metrics.count_cost,
    )  # fmt: skip
    stack.push_async_callback(runner.aclose)
    return runner


_EMBEDDING_TASKS = frozenset({"embed.batch"})  # priced per embedding token


class RecordedUsage:
    """Task handlers' model calls as usage records: one per call, with the
    task's tenant, no app and no key, and `task:<type>` as the method, so that
    QueryUsage totals include batch work. Each call is priced from the live
    router snapshot's PriceBook, as the access interceptor prices RPCs: the
    cost goes on the record, into `infergate_cost_usd` and into the tenant's
    budget when `spend` is set."""

    def __init__(
        self, recorder: UsageRecorder | None, prices: Callable[[], PriceBook] | None = None,
        spend: Spend | None = None,
    ) -> None:  # fmt: skip
        self._recorder = recorder
        self._prices = prices
        self._spend = spend

    def record(self, task: Task, call: ModelCall) -> None:
        cost = 0
        if self._prices is not None and call.deployment:
            price = self._prices().price(call.model, call.deployment)
            embedding = task.type in _EMBEDDING_TASKS
            cost = price.cost(call.input_tokens, call.output_tokens, embedding=embedding)
        if cost:
            metrics.count_cost(task.tenant, call.model, call.deployment, cost)
            if self._spend is not None:
                self._spend.add(task.tenant, "", "", cost)
        if self._recorder is not None:
            self._recorder.record(
                UsageRecord(
                    int(time.time() * 1000), task.tenant, "", "", call.model, call.deployment,
                    f"task:{task.type}", call.input_tokens, call.output_tokens, call.latency_ms,
                    status_name(call.error), "", cost,
                )
            )  # fmt: skip

    async def flush(self) -> None:
        if self._recorder is not None:
            await self._recorder.flush()


def usage_sink(
    recorder: UsageRecorder | None,
    prices: Callable[[], PriceBook] | None = None,
    spend: Spend | None = None,
) -> UsageSink | None:
    """Where task workers record usage and cost (None: nothing records)."""
    if recorder is None and prices is None:
        return None
    return RecordedUsage(recorder, prices, spend)


async def open_worker(
    config: GatewayConfig,
    stack: contextlib.AsyncExitStack,
    concurrency: int,
    factory: ProviderFactory = build_provider,
) -> Worker:
    """`infergate worker`: the gateway's core parts, a queue on the configured
    backend and a worker for it (not yet running), for every task type the
    gateway accepts, recording usage when `apps.usage.enabled`. Its router
    has no response cache: batch work neither reads nor fills it."""
    live = await open_router(config, stack, factory, cached=False)
    datasets = await open_datasets(config, live, stack)
    store = await open_app_store(config, stack)
    recorder = open_usage(config, store, stack)
    queue = build_queue(config.tasks, config.data_dir)
    stack.push_async_callback(queue.aclose)
    tasks = QueueTasks(queue, max_payload_bytes=config.tasks.max_payload_bytes)
    spend = await open_spend(config, store, live, stack)
    runner = open_workflows(config, store, live, datasets, tasks, recorder, stack, spend)
    types = tasks.types = task_types(datasets, runner)  # what task nodes may submit
    usage = usage_sink(recorder, lambda: live().prices, spend)
    return build_worker(config.tasks, queue, types, live, concurrency, usage)
