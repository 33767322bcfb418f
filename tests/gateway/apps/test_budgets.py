"""Spend budgets: one contract suite for the memory and Redis ledgers, budget
periods and their reset with an injected clock, restarts, the API end to end,
and one budget shared by two gateway processes over Redis under concurrency
(127.0.0.1:6379; under CI=true a missing Redis fails these tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
import yaml
from prometheus_client import REGISTRY

from gateway.apps.ledger import Charge, Ledger, MemoryLedger, RedisLedger
from gateway.apps.model import BudgetRule, Tenant, UsageRecord
from gateway.apps.periods import window
from gateway.apps.spend import BudgetSpent, Spend
from gateway.apps.store import Store
from gateway.cli import main
from gateway.identity import Role
from gateway.pb import app_pb2, app_pb2_grpc, router_pb2_grpc
from gateway.server import Gateway
from tests.conftest import REDIS_URL, StartGateway, chat
from tests.gateway.apps.test_auth import admin, bearer, secure_top
from tests.gateway.apps.test_quota import _serve, key, outcome

CENT = 10_000_000  # nano-dollars


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def memory_ledger() -> AsyncIterator[Ledger]:
    made = MemoryLedger()
    yield made
    await made.aclose()


@pytest.fixture
async def redis_ledger(redis_prefix: str) -> AsyncIterator[Ledger]:
    made = RedisLedger(REDIS_URL, redis_prefix)
    yield made
    await made.aclose()


@pytest.fixture(params=["memory_ledger", "redis_ledger"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    made: Ledger = request.getfixturevalue(request.param)
    return made


async def settled(ledger: Ledger) -> None:
    if isinstance(ledger, RedisLedger):
        await ledger.flush()


# --- the ledger contract -------------------------------------------------------------------


async def test_reserves_until_a_budget_is_spent(ledger: Ledger) -> None:
    tight, roomy = Charge("tight", 3 * CENT, 0, 60_000), Charge("roomy", 100 * CENT, 0, 0)
    assert await ledger.reserve([roomy, tight], 2 * CENT) == -1
    assert await ledger.reserve([roomy, tight], 2 * CENT) == -1  # 2 < 3: admitted, now 4
    assert await ledger.reserve([roomy, tight], 2 * CENT) == 1  # the tight one is spent
    assert await ledger.spent(["roomy", "tight"]) == [4 * CENT, 4 * CENT]  # none taken


async def test_settling_replaces_the_estimate_and_alerts_once(ledger: Ledger) -> None:
    charge = Charge("b", 10 * CENT, 8 * CENT, 60_000)
    crossed: list[int] = []
    assert await ledger.reserve([charge], 5 * CENT) == -1
    ledger.settle([charge], -4 * CENT, crossed.append)  # it cost 1 cent
    await settled(ledger)
    assert await ledger.spent(["b"]) == [CENT] and crossed == []
    ledger.settle([charge], 7 * CENT, crossed.append)  # 8 cents: the alert share
    ledger.settle([charge], CENT, crossed.append)
    await settled(ledger)
    assert crossed == [0] and await ledger.spent(["b"]) == [9 * CENT]


async def test_a_seed_fills_only_a_key_nobody_uses(ledger: Ledger) -> None:
    assert await ledger.seed("fresh", 7, 60_000)
    assert await ledger.reserve([Charge("used", CENT, 0, 60_000)], 5) == -1
    assert await ledger.seed("used", 1000, 60_000)
    assert await ledger.spent(["fresh", "used", "none"]) == [7, 5, 0]


async def test_a_dead_redis_lets_calls_through() -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0")
    try:
        assert await ledger.reserve([Charge("x", 0, 0, 0)], 1) == -1
        assert not await ledger.seed("x", 1, 0)
    finally:
        await ledger.aclose()


# --- periods and the spend ---------------------------------------------------------------------


def test_periods_are_utc_calendar_windows() -> None:
    now = at("2026-12-06T15:30:00")  # a Sunday

    def days(start: str, end: str) -> tuple[int, int]:
        return int(at(f"{start}T00:00:00")), int(at(f"{end}T00:00:00"))

    assert window("daily", now) == days("2026-12-06", "2026-12-07")
    assert window("weekly", now) == days("2026-11-30", "2026-12-07")
    assert window("monthly", now) == days("2026-12-01", "2027-01-01")
    assert window("none", now) == (0, None)
    with pytest.raises(ValueError, match="yearly"):
        window("yearly", now)


class Source:
    """The store's budget methods, in memory."""

    def __init__(self, rules: list[BudgetRule], spent: int = 0) -> None:
        self.rules, self.spent_before = rules, spent

    async def list(self, tenant: str | None = None) -> list[BudgetRule]:
        return self.rules

    async def spent(self, rule: BudgetRule, since_ms: int) -> int:
        return self.spent_before


async def test_a_spent_budget_refuses_naming_itself_and_resets_with_its_period() -> None:
    clock = Clock(at("2026-12-06T23:00:00"))
    alerts: list[tuple[str, int]] = []
    spend = Spend(MemoryLedger(), clock=clock, on_alert=lambda r, t: alerts.append((r.name, t)))
    rule = BudgetRule("key", "acme", "k1", 5 * CENT, "daily", alert_share=0.5)
    await spend.refresh(Source([rule]))
    for _ in range(3):  # 2 cents each, settled at 2: the third makes 6 (admitted at 4 < 5)
        hold = await spend.reserve("acme", "k1", "", 2 * CENT)
        assert hold is not None
        spend.settle(hold, 2 * CENT)
    assert alerts == [("tenants/acme/keys/k1", 2_500_000 * 10)]
    with pytest.raises(BudgetSpent) as refused:
        await spend.reserve("acme", "k1", "", 2 * CENT)
    assert str(refused.value) == (
        "budget tenants/acme/keys/k1 ($0.05 daily) is spent; it resets at 2026-12-07T00:00:00Z"
    )
    assert refused.value.retry_after == 3600
    assert await spend.reserve("acme", "other-key", "", 2 * CENT) is None  # no budget of its own
    clock.now = at("2026-12-07T00:00:01")  # the next day
    assert await spend.reserve("acme", "k1", "", 2 * CENT) is not None


async def test_tenant_and_app_budgets_apply_to_every_key_and_a_none_period_never_resets() -> None:
    spend = Spend(MemoryLedger(), clock=Clock(at("2026-12-06T12:00:00")))
    spend.use([BudgetRule("tenant", "acme", "acme", 3 * CENT, "none"),
               BudgetRule("app", "acme", "helpdesk", CENT, "monthly")])  # fmt: skip
    assert await spend.reserve("acme", "k1", "helpdesk", CENT) is not None
    with pytest.raises(BudgetSpent, match=r"tenants/acme/apps/helpdesk \(\$0.01 monthly\)"):
        await spend.reserve("acme", "k2", "helpdesk", CENT)
    assert await spend.reserve("acme", "k2", "", 2 * CENT) is not None
    with pytest.raises(BudgetSpent, match="never resets") as refused:
        await spend.reserve("acme", "k3", "", CENT)
    assert refused.value.retry_after == 0


async def test_a_restart_finds_the_spend_in_the_usage_records(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        await store.tenants.create(Tenant("acme"), "test")
        rule = await store.budgets.set(BudgetRule("tenant", "acme", "acme", 5 * CENT), "test")
        now = at("2026-12-06T12:00:00")
        old, recent = int(at("2026-11-30T12:00:00") * 1000), int(now * 1000) - 1000
        await store.usage.add([
            UsageRecord(old, "acme", "k1", "", "chat", "a", "m", 1, 1, 1, "OK", "", 9 * CENT),
            UsageRecord(recent, "acme", "k1", "", "chat", "a", "m", 1, 1, 1, "OK", "", 5 * CENT),
        ])  # fmt: skip
        spend = Spend(MemoryLedger(), clock=Clock(now))  # a new process: an empty ledger
        await spend.refresh(store.budgets)
        assert await spend.spent([rule]) == [(5 * CENT, int(at("2027-01-01T00:00:00")))]
        with pytest.raises(BudgetSpent):
            await spend.reserve("acme", "k1", "", 0)
    finally:
        await store.aclose()


# --- the API, end to end ----------------------------------------------------------------------

# Every call costs one cent, whatever its tokens.
MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=3",
                              "price": {"request": 0.01}}]},
}  # fmt: skip


@pytest.fixture
async def secure(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(MODELS, top=secure_top(tmp_path))


async def test_budgets_through_the_api_refuse_alert_and_are_audited(secure: Gateway) -> None:
    user = await key(secure, "acme")
    async with grpc.aio.insecure_channel(secure.address) as ch:
        apps, router = app_pb2_grpc.AppStub(ch), router_pb2_grpc.RouterStub(ch)
        keys = await apps.ListApiKeys(app_pb2.ListApiKeysRequest(tenant="tenants/acme"),
                                      metadata=admin(secure))  # fmt: skip
        name = keys.keys[0].name
        budget = app_pb2.Budget(name=name, limit_usd=0.03, period="daily", alert_share=0.5)
        request = app_pb2.SetBudgetRequest(budget=budget)
        saved = await apps.SetBudget(request, metadata=admin(secure))
        assert (saved.name, saved.limit_usd, saved.period, saved.spent_usd) == (
            name, 0.03, "daily", 0,
        )  # fmt: skip
        assert saved.HasField("reset_time")
        before = REGISTRY.get_sample_value("infergate_budget_alerts_total", {"scope": "key"}) or 0
        codes = [(await outcome(router.Generate(chat("chat"), metadata=user)))[0] for _ in range(4)]
        assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await router.GenerateStream(chat("chat"), metadata=user).read()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = str(refused.value.details())
        assert f"budget {name} ($0.03 daily) is spent; it resets at " in details
        assert float(dict(refused.value.trailing_metadata())["retry-after"]) > 0
        assert (REGISTRY.get_sample_value("infergate_budget_alerts_total", {"scope": "key"}) or 0) \
            == before + 1  # fmt: skip
        listed = await apps.ListBudgets(app_pb2.ListBudgetsRequest(), metadata=admin(secure))
        [mine] = [b for b in listed.budgets if b.name == name]
        assert mine.spent_usd == pytest.approx(0.03)
        # Raising the limit lets the key call again at once.
        budget.limit_usd = 1
        await apps.SetBudget(app_pb2.SetBudgetRequest(budget=budget), metadata=admin(secure))
        again, _ = await outcome(router.Generate(chat("chat"), metadata=user))
        assert again is grpc.StatusCode.OK
        await apps.DeleteBudget(app_pb2.DeleteBudgetRequest(name=name), metadata=admin(secure))
        assert not (await apps.ListBudgets(app_pb2.ListBudgetsRequest(tenant="tenants/acme"),
                                           metadata=admin(secure))).budgets  # fmt: skip
        events = await apps.ListAuditEvents(app_pb2.ListAuditEventsRequest(resource=name),
                                            metadata=admin(secure))  # fmt: skip
    await asyncio.sleep(0.05)  # the alert's audit event is written in the background
    actions = [e.action for e in events.events if e.action != "CreateApiKey"]
    assert actions == ["SetBudget", "BudgetAlert", "SetBudget", "DeleteBudget"]


async def test_budget_api_errors_are_clear(secure: Gateway) -> None:
    user = await key(secure, "acme", "developer")
    async with grpc.aio.insecure_channel(secure.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)

        async def code(call: Any) -> tuple[grpc.StatusCode, str]:
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                return exc.code(), str(exc.details())
            return grpc.StatusCode.OK, ""

        def set_(metadata: Any, **fields: Any) -> Any:
            budget = app_pb2.Budget(**{"name": "tenants/acme", "limit_usd": 1, **fields})
            return apps.SetBudget(app_pb2.SetBudgetRequest(budget=budget), metadata=metadata)

        bad = grpc.StatusCode.INVALID_ARGUMENT
        assert (await code(set_(admin(secure), name="acme")))[0] is bad
        assert (await code(set_(admin(secure), limit_usd=-1)))[0] is bad
        assert (await code(set_(admin(secure), period="yearly")))[1].startswith("budget.period")
        assert (await code(set_(admin(secure), alert_share=1.5)))[0] is bad
        nobody = await code(set_(admin(secure), name="tenants/nobody"))
        assert nobody[0] is grpc.StatusCode.NOT_FOUND
        missing_key = "tenants/acme/keys/nope"
        assert (await code(set_(admin(secure), name=missing_key)))[0] is grpc.StatusCode.NOT_FOUND
        assert (await code(set_(user)))[0] is grpc.StatusCode.PERMISSION_DENIED
        other = app_pb2.ListBudgetsRequest(tenant="tenants/default")
        assert (await code(apps.ListBudgets(other, metadata=user)))[0] is grpc.StatusCode.NOT_FOUND
        delete = app_pb2.DeleteBudgetRequest(name="tenants/acme/apps/none")
        assert (await code(apps.DeleteBudget(delete, metadata=admin(secure))))[0] is (
            grpc.StatusCode.NOT_FOUND
        )
        prices = await apps.ListPrices(app_pb2.ListPricesRequest(), metadata=user)
    [price] = prices.prices
    assert (price.model, price.deployment, price.request, price.source) == (
        "chat", "chat-a", 0.01, "deployment",
    )  # fmt: skip
    assert prices.table_date


async def test_an_app_budget_caps_chat_and_the_period_resets_by_the_clock(
    secure: Gateway,
) -> None:
    assert secure.apps is not None and secure.apps.spend is not None
    clock = Clock(at("2026-12-06T23:59:00"))
    secure.apps.spend.clock = clock
    user = await key(secure, "acme", "developer")
    async with grpc.aio.insecure_channel(secure.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)
        spec = app_pb2.AppSpec(model="chat")
        await apps.CreateApp(app_pb2.CreateAppRequest(app_id="helpdesk", app=spec), metadata=user)
        budget = app_pb2.Budget(name="tenants/acme/apps/helpdesk", limit_usd=0.02, period="daily")
        await apps.SetBudget(app_pb2.SetBudgetRequest(budget=budget), metadata=admin(secure))
        ask = app_pb2.ChatRequest(app="apps/helpdesk", query="hello")
        replies = [await outcome(apps.Completion(ask, metadata=user)) for _ in range(3)]
        assert [c for c, _ in replies] == [grpc.StatusCode.OK] * 2 + [
            grpc.StatusCode.RESOURCE_EXHAUSTED
        ]
        assert float(replies[2][1]) == pytest.approx(60, abs=1)  # a minute to midnight
        clock.now = at("2026-12-07T00:00:01")
        done = await apps.Completion(ask, metadata=user)
    assert done.usage.cost_usd == pytest.approx(0.01)


# --- two processes, one Redis budget --------------------------------------------------------


@pytest.mark.slow
async def test_two_gateway_processes_never_overspend_one_redis_budget(
    tmp_path: Path, redis_prefix: str, redis_client: redis.Redis
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"port": 0, "metrics_port": 0, "grace_period_s": 0},
        "routing": {"probe_interval_s": 0}, "rest": {"port": 0}, "data_dir": str(data),
        "apps": {"budgets": {"backend": "redis", "redis_url": REDIS_URL,
                             "key_prefix": redis_prefix}},
        "models": {"chat": {"deployments": [{
            "name": "chat-a", "provider": "mock", "model": "echo?tokens=3&latency_ms=20",
            "price": {"request": 0.01}}]}},
    }))  # fmt: skip
    limit = 0.095  # 9.5 calls' worth: the 10th is admitted at 9 cents, the 11th refused
    store = await Store.open(f"sqlite+aiosqlite:///{data / 'infergate.db'}")
    try:
        await store.tenants.create(Tenant("acme"), "test")
        _, secret = await store.keys.create("acme", Role.USER, "test")
        rule = BudgetRule("tenant", "acme", "acme", round(limit * 1e9), "monthly")
        await store.budgets.set(rule, "test")
    finally:
        await store.aclose()
    procs = [await asyncio.to_thread(_serve, config) for _ in range(2)]
    try:
        channels = [grpc.aio.insecure_channel(address) for _, address in procs]
        stubs = [router_pb2_grpc.RouterStub(ch) for ch in channels]
        calls = [stubs[i % 2].Generate(chat("chat"), metadata=bearer(secret)) for i in range(40)]
        codes = [code for code, _ in await asyncio.gather(*(outcome(c) for c in calls))]
        spent = [int(v) for v in await redis_client.mget(
            [k async for k in redis_client.scan_iter(match=redis_prefix + "t:acme:*")]
        )]  # fmt: skip
        # A restarted pair still finds the budget spent.
        first = procs[0][0]
        first.terminate()
        first.wait(10)
        assert first.stderr is not None
        first.stderr.close()
        procs[0] = await asyncio.to_thread(_serve, config)
        async with grpc.aio.insecure_channel(procs[0][1]) as ch:
            again = router_pb2_grpc.RouterStub(ch).Generate(chat("chat"), metadata=bearer(secret))
            after_restart, _ = await outcome(again)
        for ch in channels:
            await ch.close()
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(10)
            assert proc.stderr is not None
            proc.stderr.close()
    ok = codes.count(grpc.StatusCode.OK)
    assert ok == 10 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 30
    [total] = spent
    assert total == ok * 10_000_000  # every reservation settled at the real cost
    assert total <= round(limit * 1e9) + 10_000_000  # over by less than one call's estimate
    assert after_restart is grpc.StatusCode.RESOURCE_EXHAUSTED


# --- the CLI ------------------------------------------------------------------------------------


def test_the_cli_sets_lists_and_deletes_budgets_and_shows_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "models": {"chat": {"deployments": [
            {"name": "a", "provider": "mock", "model": "echo", "price": {"output": 2}},
            {"name": "b", "provider": "openai", "model": "gpt-4o-mini",
             "options": {"api_key": "x"}},
        ]}},
    }))  # fmt: skip
    cfg = ["--config", str(config)]
    assert main(["keys", "create", "--tenant", "acme", "--role", "user", *cfg]) == 0
    capsys.readouterr()
    assert main(["budgets", "set", "tenants/acme", "--limit-usd", "50", "--period", "weekly",
                 "--alert-share", "0.8", *cfg]) == 0  # fmt: skip
    assert "set tenants/acme: $50.00 weekly" in capsys.readouterr().out
    assert main(["budgets", "list", *cfg]) == 0
    [line] = capsys.readouterr().out.splitlines()[1:]
    assert line.split("\t")[:4] == ["tenants/acme", "50.00", "weekly", "0.000000"]
    assert main(["budgets", "set", "tenants/acme", "--limit-usd", "-5", *cfg]) == 2
    assert "budget.limit_usd" in capsys.readouterr().err
    assert main(["budgets", "delete", "tenants/acme", *cfg]) == 0
    assert main(["budgets", "delete", "tenants/acme", *cfg]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["budgets", "prices", *cfg]) == 0
    rows = {r.split("\t")[1]: r.split("\t") for r in capsys.readouterr().out.splitlines()[2:]}
    assert rows["a"][3:] == ["0", "0", "2", "0", "0", "deployment"]
    assert rows["b"][3:6] == ["0.15", "0.075", "0.6"] and rows["b"][-1] == "table"
    assert main(["audit", "verify", *cfg]) == 0  # the CLI's changes are in the chain
