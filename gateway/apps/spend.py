"""Budgets on the hot path: which budgets a call is charged to, taking its
estimated cost before it runs, and settling with the real cost after.

The rules live in process (`use`), refreshed from the store in the background
(`refresh`, every `budgets.refresh_s`, and at once after a change made here),
so a call reads no database. The spend itself lives in a `Ledger` (memory, or
Redis for every replica). A refresh that finds a budget's period not yet in
the ledger seeds it from the usage records, so a restarted gateway knows what
was spent. A call is refused once a budget it is charged to is spent (the
spend reached the limit): a budget is overspent by at most the calls admitted
just before that, each by what it cost beyond nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.apps import periods
from gateway.apps.ledger import Charge, Ledger
from gateway.apps.model import BudgetRule
from gateway.errors import GatewayError, QuotaExceeded
from router.pricing import usd

log = logging.getLogger("infergate.spend")
_DAY_MS = 86_400_000
Alert = Callable[[BudgetRule, int], None]  # the rule, and the alert threshold crossed
Refusal = Callable[[BudgetRule], None]  # the spent rule that refused a call
CostCounter = Callable[[str, str, str, int], None]  # tenant, model, deployment, nano-dollars


class BudgetSpent(QuotaExceeded):
    """RESOURCE_EXHAUSTED (HTTP 429), naming the budget and when it resets;
    `retry_after` is the seconds until then (0: never)."""

    def __init__(self, rule: BudgetRule, end: int | None, now: float) -> None:
        limit = f"${usd(rule.limit_nanos):.2f}"
        when = (
            f"it resets at {periods.iso(end)}" if end is not None
            else "it never resets (period none): raise or delete it"
        )  # fmt: skip
        GatewayError.__init__(self, f"budget {rule.name} ({limit} {rule.period}) is spent; {when}")
        self.retry_after = 0.0 if end is None else max(1.0, end - now)
        self.rule = rule


class BudgetSource(Protocol):
    async def list(self, tenant: str | None = None) -> list[BudgetRule]: ...

    async def spent(self, rule: BudgetRule, since_ms: int) -> int: ...


@dataclass(slots=True)
class Hold:
    """One call's reservation."""

    charges: list[Charge]
    rules: list[BudgetRule]
    amount: int


class Spend:
    def __init__(
        self, ledger: Ledger, *, clock: Callable[[], float] = time.time,
        on_alert: Alert | None = None, on_refusal: Refusal | None = None,
    ) -> None:  # fmt: skip
        self.ledger = ledger
        self.clock = clock  # wall time: periods are calendar windows
        self._on_alert = on_alert
        self._on_refusal = on_refusal
        self._rules: dict[tuple[str, str, str], BudgetRule] = {}
        self._windows: dict[str, tuple[int, int | None]] = {}  # period -> its current window
        self._charges: dict[tuple[str, str, str], Charge] = {}  # per window
        self._seeded: set[str] = set()

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def use(self, rules: Iterable[BudgetRule]) -> None:
        self._rules = {(r.scope, r.tenant, r.subject): r for r in rules}
        self._charges = {}

    def rules_of(self, tenant: str, key_id: str, app: str) -> list[BudgetRule]:
        rules, found = self._rules, []
        for scope, subject in (("key", key_id), ("tenant", tenant), ("app", app)):
            if subject and (rule := rules.get((scope, tenant, subject))) is not None:
                found.append(rule)
        return found

    def charge(self, rule: BudgetRule, now: float) -> tuple[Charge, int | None]:
        """The rule's charge in the period holding `now`, and that period's end."""
        start, end = self._window(rule.period, now)
        ident = (rule.scope, rule.tenant, rule.subject)
        found = self._charges.get(ident)
        if found is None or not found.key.endswith(f":{start}"):
            ttl = 0 if end is None else (end - start) * 1000 + _DAY_MS
            alert = int(rule.limit_nanos * rule.alert_share) if rule.alert_share else 0
            key = f"{rule.scope[0]}:{rule.tenant}:{rule.subject}:{start}"
            found = self._charges[ident] = Charge(key, rule.limit_nanos, alert, ttl)
        return found, end

    def _window(self, period: str, now: float) -> tuple[int, int | None]:
        window = self._windows.get(period)
        if window is None or (window[1] is not None and now >= window[1]) or now < window[0]:
            window = self._windows[period] = periods.window(period, now)
        return window

    async def reserve(self, tenant: str, key_id: str, app: str, amount: int) -> Hold | None:
        """Take `amount` nano-dollars from each budget of the call; None when it
        has none; BudgetSpent when one is spent."""
        rules = self.rules_of(tenant, key_id, app)
        if not rules:
            return None
        now = self.clock()
        charges, ends = [], []
        for rule in rules:
            charge, end = self.charge(rule, now)
            charges.append(charge)
            ends.append(end)
        refused = await self.ledger.reserve(charges, amount)
        if refused >= 0:
            if self._on_refusal is not None:
                self._on_refusal(rules[refused])
            raise BudgetSpent(rules[refused], ends[refused], now)
        return Hold(charges, rules, amount)

    async def admit(self, tenant: str, key_id: str, app: str) -> None:
        """BudgetSpent when a budget of the caller is spent; takes nothing. For
        work whose cost is known only call by call as it runs (a workflow
        run): each call's cost is then `add`ed."""
        await self.reserve(tenant, key_id, app, 0)

    def add(self, tenant: str, key_id: str, app: str, cost: int) -> None:
        """Charge `cost` nano-dollars that no reservation preceded to every
        budget of the caller (a workflow's or a task's model call). Fire and
        forget, as `settle`; alerts fire from here."""
        rules = self.rules_of(tenant, key_id, app)
        if rules and cost:
            now = self.clock()
            self.settle(Hold([self.charge(r, now)[0] for r in rules], rules, 0), cost)

    def settle(self, hold: Hold, cost: int) -> None:
        """Replace the reservation with the real cost; alerts fire from here."""

        def crossed(i: int) -> None:
            if self._on_alert is not None:
                self._on_alert(hold.rules[i], hold.charges[i].alert_at)

        self.ledger.settle(hold.charges, cost - hold.amount, crossed)

    async def spent(self, rules: Sequence[BudgetRule]) -> list[tuple[int, int | None]]:
        """(spent, period end) of each rule's current period."""
        now = self.clock()
        charged = [self.charge(r, now) for r in rules]
        amounts = await self.ledger.spent([c.key for c, _ in charged])
        return [(amount, end) for amount, (_, end) in zip(amounts, charged, strict=True)]

    async def refresh(self, source: BudgetSource) -> None:
        """Load the rules; seed the ledger for periods it has not seen yet. The
        rules apply only once seeded."""
        rules = await source.list()
        now = self.clock()
        for rule in rules:
            charge, _ = self.charge(rule, now)
            if charge.key not in self._seeded:
                start, _ = self._window(rule.period, now)
                spent = await source.spent(rule, start * 1000)
                if await self.ledger.seed(charge.key, spent, charge.ttl_ms):
                    self._seeded.add(charge.key)
        self.use(rules)

    async def refresh_forever(self, source: BudgetSource, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh(source)
            except Exception:  # a store or Redis hiccup: the last rules keep applying
                log.exception("refreshing the budgets failed")
