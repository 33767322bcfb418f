"""The App service's spend RPCs: budgets and prices. Mixed into AppService
(gateway/apps/service.py).

Admins set and delete any tenant's budgets (audited); everyone else reads only
their own tenant's. Admins also set and delete a deployment's price (audited),
over the config file's and the shipped table's. A change applies on this
replica at once and on the others within `apps.budgets.refresh_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import empty_pb2

from gateway import identity
from gateway.apps import wire
from gateway.apps.catalog import actor
from gateway.apps.model import BudgetRule
from gateway.apps.prices import SetPrices
from gateway.apps.spend import Spend
from gateway.apps.store import Administration
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound
from gateway.identity import Role
from gateway.pb import app_pb2 as pb
from gateway.status import translated
from router import price_table
from router.pricing import PriceBook


class SpendMethods:
    _store: Administration
    _spend: Spend | None = None
    _prices: Callable[[], PriceBook] | None = None
    _set_prices: SetPrices | None = None

    def use_spend(
        self, spend: Spend, prices: Callable[[], PriceBook], set_prices: SetPrices | None = None
    ) -> None:
        self._spend, self._prices, self._set_prices = spend, prices, set_prices

    def _ledger(self) -> Spend:
        if self._spend is None:
            raise FailedPrecondition("budgets are not served by this gateway")
        return self._spend

    async def _budgets_pb(self, rules: list[BudgetRule]) -> list[pb.Budget]:
        spent = await self._ledger().spent(rules)
        return [wire.budget_to_pb(r, s, end) for r, (s, end) in zip(rules, spent, strict=True)]

    @translated
    async def SetBudget(self, request: pb.SetBudgetRequest, context: Any) -> pb.Budget:
        rule = wire.budget_from_pb(request.budget)
        spend = self._ledger()
        saved = await self._store.budgets.set(rule, actor())
        await spend.refresh(self._store.budgets)
        return (await self._budgets_pb([saved]))[0]

    @translated
    async def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: Any
    ) -> pb.ListBudgetsResponse:
        principal = identity.current()
        tenant = wire.name_id(request.tenant, "tenants", "tenant") if request.tenant else None
        if principal.role < Role.ADMIN:
            if tenant not in (None, principal.tenant):
                raise NotFound(f"tenant {tenant!r}")
            tenant = principal.tenant
        rules = await self._store.budgets.list(tenant)
        return pb.ListBudgetsResponse(budgets=await self._budgets_pb(rules))

    @translated
    async def DeleteBudget(self, request: pb.DeleteBudgetRequest, context: Any) -> empty_pb2.Empty:
        scope, tenant, subject = wire.budget_subject(request.name)
        spend = self._ledger()
        await self._store.budgets.delete(tenant, scope, subject, actor())
        await spend.refresh(self._store.budgets)
        return empty_pb2.Empty()

    def _book(self) -> PriceBook:
        if self._prices is None:
            raise FailedPrecondition("prices are not served by this gateway")
        return self._prices()

    @translated
    async def ListPrices(
        self, request: pb.ListPricesRequest, context: Any
    ) -> pb.ListPricesResponse:
        entries = self._book().entries
        return pb.ListPricesResponse(
            prices=[wire.price_to_pb(e) for e in entries], table_date=price_table.AS_OF
        )

    @translated
    async def SetPrice(self, request: pb.SetPriceRequest, context: Any) -> pb.Price:
        deployment, price = wire.price_from_pb(request.price)
        if self._set_prices is None:
            raise FailedPrecondition("prices are not set through this gateway")
        if not any(e.deployment == deployment for e in self._book().entries):
            raise NotFound(f"deployment {deployment!r}")
        await self._store.prices.set(deployment, price, actor())
        await self._set_prices.refresh()
        [entry, *_] = [e for e in self._book().entries if e.deployment == deployment]
        return wire.price_to_pb(entry)

    @translated
    async def DeletePrice(self, request: pb.DeletePriceRequest, context: Any) -> empty_pb2.Empty:
        if not request.deployment:
            raise InvalidArgument("deployment", "is required: the deployment's name")
        if self._set_prices is None:
            raise FailedPrecondition("prices are not set through this gateway")
        await self._store.prices.delete(request.deployment, actor())
        await self._set_prices.refresh()
        return empty_pb2.Empty()
