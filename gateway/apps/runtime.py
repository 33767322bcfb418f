"""The App layer as the gateway runs it: store, servicer, access interceptor,
and the spend budgets behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gateway import metrics
from gateway.apps import wire
from gateway.apps.access import AccessInterceptor, Authenticator
from gateway.apps.catalog import AppCatalog
from gateway.apps.chat import ChatEngine
from gateway.apps.config import AppsConfig, BudgetsConfig
from gateway.apps.ledger import Ledger, MemoryLedger, RedisLedger
from gateway.apps.limits import Limiter, MemoryLimiter, RedisLimiter
from gateway.apps.model import BudgetRule
from gateway.apps.prices import SetPrices
from gateway.apps.retrieval import NoRetrieval, Retriever
from gateway.apps.service import AppService
from gateway.apps.spend import Spend
from gateway.apps.store import Store, open_store
from gateway.apps.usage import UsageRecorder
from gateway.apps.workflow_runner import WorkflowRunner, open_runner
from gateway.apps.workflows.nodes.base import TaskRunner
from router.pricing import PriceBook, usd
from router.router import Router


@dataclass
class AppLayer:
    store: Store
    service: AppService
    chat: ChatEngine
    workflows: WorkflowRunner
    limiter: Limiter | None = None
    recorder: UsageRecorder | None = None
    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    # The bootstrap admin key, when this start created it (printed once; kept
    # for the embedding process, e.g. a test, never logged).
    admin_secret: str | None = None
    tasks: TaskRunner | None = None  # workflows' task nodes: set once the task queue is up
    spend: Spend | None = None
    _purge: asyncio.Task[None] | None = None
    _refresh: asyncio.Task[None] | None = None
    _refresh_prices: asyncio.Task[None] | None = None
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    async def open(
        cls,
        config: AppsConfig,
        data_dir: Path,
        router: Callable[[], Router],
        retriever: Retriever | None = None,
    ) -> AppLayer:
        """Open (and migrate) the store and build the App layer. With auth on, a
        store that never had a key gets an admin key, printed to stdout once."""
        store = await open_store(config, data_dir)
        catalog = AppCatalog(store.apps, lambda: router().models.keys(), wire.check_params)
        chat = ChatEngine(store.apps, store.turns, router, retriever or NoRetrieval(), wire.params)
        recorder = None
        if config.usage.enabled:
            recorder = UsageRecorder(
                store.usage,
                batch_size=config.usage.batch_size,
                interval_s=config.usage.flush_interval_s,
            )
            recorder.start()
        flows = config.workflows
        spend = Spend(
            open_ledger(config.budgets), on_alert=lambda r, t: layer._alert(r, t),
            on_refusal=metrics.count_budget_refusal,
        )  # fmt: skip
        runner = open_runner(
            flows, store, router, lambda: chat.retriever, lambda: layer.tasks, recorder, spend,
            metrics.count_cost,
        )  # fmt: skip
        service = AppService(store, catalog, chat, runner, store.secrets)
        layer = cls(store, service, chat, runner, recorder=recorder, spend=spend)
        retention_s = flows.run_retention_days * 86400
        layer._purge = asyncio.create_task(runner.purge_forever(retention_s))
        await spend.refresh(store.budgets)  # before serving: budgets hold from the start
        layer._refresh = asyncio.create_task(
            spend.refresh_forever(store.budgets, config.budgets.refresh_s)
        )

        set_prices = SetPrices(store.prices, router)
        await set_prices.refresh()  # before serving, as the budgets
        layer._refresh_prices = asyncio.create_task(
            set_prices.refresh_forever(config.budgets.refresh_s)
        )

        def prices() -> PriceBook:
            return router().prices

        service.use_spend(spend, prices, set_prices)
        authenticator = None
        if config.auth.enabled:
            authenticator = Authenticator(store.keys, config.auth.cache_ttl_s)
            limits = config.limits
            layer.limiter = (
                RedisLimiter(limits.redis_url, limits.key_prefix)
                if limits.backend == "redis"
                else MemoryLimiter()
            )
            layer.admin_secret = await store.keys.bootstrap_admin(config.auth.bootstrap_tenant)
            if layer.admin_secret:
                print(_banner(config.auth.bootstrap_tenant, layer.admin_secret), flush=True)
        if authenticator is not None or layer.recorder is not None:
            layer.interceptors.append(
                AccessInterceptor(
                    authenticator=authenticator,
                    limiter=layer.limiter,
                    recorder=layer.recorder,
                    output_estimate=config.limits.output_estimate_tokens,
                    prices=prices,
                    spend=layer.spend,
                )
            )
        return layer

    async def aclose(self) -> None:
        """Write the queued usage, then close the limiter and the store."""
        for task in (self._purge, self._refresh, self._refresh_prices):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.workflows.aclose()  # the run records still queued
        await asyncio.gather(*self._background, return_exceptions=True)  # alerts' audit events
        if self.spend is not None:
            await self.spend.ledger.aclose()
        if self.recorder is not None:
            await self.recorder.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()
        await self.store.aclose()

    def _keep(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _alert(self, rule: BudgetRule, threshold: int) -> None:
        """A budget crossed its alert share: a metric, and an audit event."""
        metrics.BUDGET_ALERTS.labels(rule.scope).inc()
        after = {
            "limit_usd": usd(rule.limit_nanos), "alert_share": rule.alert_share,
            "threshold_usd": usd(threshold), "period": rule.period,
        }  # fmt: skip
        self._keep(self.store.audit.append("infergate", "BudgetAlert", rule.name, None, after))


def open_ledger(config: BudgetsConfig) -> Ledger:
    """The configured spend ledger (closed by its owner with `aclose`)."""
    if config.backend == "redis":
        return RedisLedger(config.redis_url, config.key_prefix)
    return MemoryLedger()


def _banner(tenant: str, secret: str) -> str:
    return (
        f"infergate: created the first admin key (tenant {tenant!r}). It is shown once and "
        f"stored only as a hash:\n\n    {secret}\n\n"
        "Send it as `authorization: Bearer <key>`; e.g. export INFERGATE_API_KEY=<key>."
    )
