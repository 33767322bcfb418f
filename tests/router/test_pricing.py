"""Prices (router/pricing.py) and cost-aware routing: the lowest_cost strategy
and the cost ceiling, on mock providers with a test price table."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import build_provider
from router import price_table
from router.config import ConfigError, DeploymentConfig, PriceConfig
from router.errors import InvalidRequest
from router.pricing import Price, PriceBook, estimate_tokens, price_of
from router.router import Router
from router.types import Message, Params, Request
from tests.conftest import make_config


def deployment(name: str, provider: str, model: str, **extra: Any) -> DeploymentConfig:
    return DeploymentConfig.model_validate(
        {"name": name, "provider": provider, "model": model, **extra}
    )


def test_cost_is_exact_in_nano_dollars() -> None:
    price = Price(input=2.5, cached_input=1.25, output=10.0, request=0.001)
    # 1000 input (400 of them cached), 200 output, plus the per-call price.
    assert price.cost(1000, 200, 400) == 600 * 2500 + 400 * 1250 + 200 * 10_000 + 1_000_000
    assert Price(embedding=0.02).cost(5000, 0, embedding=True) == 100_000
    assert price.cost(10, 0, cached_input_tokens=99) == 10 * 1250 + 1_000_000  # capped


def test_a_deployment_price_beats_the_config_table_which_beats_the_shipped_one() -> None:
    prices = {"gpt-4o": PriceConfig(input=1, output=2)}
    own = deployment("a", "openai", "gpt-4o", price={"input": 9, "output": 9})
    assert price_of(own, prices) == Price(9, 9, 9, 0, 9, "deployment")
    assert price_of(deployment("b", "openai", "gpt-4o"), prices).source == "config"
    shipped = price_of(deployment("c", "openai", "gpt-4o-2024-08-06"), {})
    assert (shipped.input, shipped.cached_input, shipped.output, shipped.source) == (
        *price_table.CHAT["gpt-4o"][:2], price_table.CHAT["gpt-4o"][2], "table",
    )  # fmt: skip
    # The longest prefix wins: gpt-4o-mini is not priced as gpt-4o.
    assert price_of(deployment("d", "openai", "gpt-4o-mini-2024-07-18"), {}).input == 0.15
    claude = price_of(deployment("e", "anthropic", "claude-3-5-sonnet-20241022"), {})
    assert (claude.input, claude.cached_input, claude.output) == (3.0, 0.30, 15.0)
    assert price_of(deployment("f", "openai", "text-embedding-3-small"), {}).embedding == 0.02


def test_mock_and_unknown_models_cost_nothing_unless_the_config_says() -> None:
    assert price_of(deployment("m", "mock", "gpt-4o"), {}) == Price()  # the table is vendors'
    assert price_of(deployment("u", "openai", "my-finetune"), {}) == Price()
    priced = price_of(deployment("m", "mock", "echo"), {"echo": PriceConfig(output=3)})
    assert (priced.output, priced.source) == (3, "config")


def test_the_shipped_table_is_dated() -> None:
    assert len(price_table.AS_OF) == 10 and price_table.AS_OF[4] == "-"


@pytest.mark.parametrize(
    ("price", "problem"),
    [({"input": -1}, "input"), ({"output": "lots"}, "output"), ({"per_token": 1}, "per_token")],
)
def test_bad_prices_fail_at_load_naming_the_field(price: dict[str, Any], problem: str) -> None:
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo",
                                     "price": price}]}}  # fmt: skip
    with pytest.raises(ConfigError, match=rf"models\.m\.deployments\.0\.price\.{problem}"):
        make_config(models)


# --- cost-aware routing ------------------------------------------------------------------


MODELS: dict[str, Any] = {
    "chat": {
        "strategy": "lowest_cost",
        "deployments": [
            {"name": "dear", "provider": "mock", "model": "echo", "price": {"output": 30}},
            {"name": "cheap", "provider": "mock", "model": "echo", "price": {"output": 1}},
            {"name": "middle", "provider": "mock", "model": "echo", "price": {"output": 10}},
        ],
    },
    # Input-heavy calls favour the one with the cheap input, short ones the cheap output.
    "mix": {
        "strategy": "lowest_cost",
        "deployments": [
            {"name": "cheap-in", "provider": "mock", "model": "echo",
             "price": {"input": 1, "output": 20}},
            {"name": "cheap-out", "provider": "mock", "model": "echo",
             "price": {"input": 20, "output": 1}},
        ],
    },
    "capped": {
        "max_cost_usd": 0.0001,
        "deployments": [
            {"name": "over", "provider": "mock", "model": "echo", "price": {"request": 0.001}},
            {"name": "under", "provider": "mock", "model": "echo", "price": {"request": 0.00001}},
        ],
    },
}  # fmt: skip


def ask(model: str, text: str = "one two three", **kw: Any) -> Request:
    return Request(model, (Message("user", text),), **kw)


def router(models: dict[str, Any] = MODELS) -> Router:
    return Router(make_config(models), build_provider)


def test_lowest_cost_orders_by_the_estimated_cost_and_records_it_in_the_plan() -> None:
    r = router()
    plan = r.plan(ask("chat"), stream=False)
    assert plan.strategy == "lowest_cost"
    assert [d.name for d in plan.candidates] == ["cheap", "middle", "dear"]
    assert r.route(ask("chat")).deployment == "cheap"


def test_lowest_cost_weighs_the_requests_own_token_estimate() -> None:
    r = router()
    long_prompt = ask("mix", "word " * 4000, params=Params(max_tokens=10))
    short_prompt = ask("mix", "hi", params=Params(max_tokens=1000))
    assert r.route(long_prompt).deployment == "cheap-in"
    assert r.route(short_prompt).deployment == "cheap-out"
    assert estimate_tokens(short_prompt) == (1, 1000)


async def test_lowest_cost_falls_back_to_the_next_cheapest() -> None:
    models = {"chat": {**MODELS["chat"], "deployments": [
        {"name": "cheap", "provider": "mock", "model": "error", "price": {"output": 1}},
        {"name": "middle", "provider": "mock", "model": "echo", "price": {"output": 10}},
        {"name": "dear", "provider": "mock", "model": "echo", "price": {"output": 30}},
    ]}}  # fmt: skip
    r = router(models)
    routed = await r.generate(ask("chat"))
    assert routed.deployment == "middle"
    # Once the cheapest's breaker is open, it is skipped up front.
    for _ in range(10):
        await r.generate(ask("chat"))
    plan = r.plan(ask("chat"), stream=False, advance=False)
    assert [d.name for d in plan.candidates] == ["middle", "dear"]
    assert [d.name for d, _ in plan.skipped] == ["cheap"]
    await r.aclose()


def test_equal_costs_rotate() -> None:
    models = {"free": {"strategy": "lowest_cost", "deployments": [
        {"name": "a", "provider": "mock", "model": "echo"},
        {"name": "b", "provider": "mock", "model": "echo"},
    ]}}  # fmt: skip
    r = router(models)
    firsts = {r.plan(ask("free"), stream=False).candidates[0].name for _ in range(4)}
    assert firsts == {"a", "b"}


def test_the_alias_ceiling_skips_dearer_deployments_and_says_why() -> None:
    plan = router().plan(ask("capped"), stream=False)
    assert [d.name for d in plan.candidates] == ["under"]
    [(skipped, why)] = plan.skipped
    assert skipped.name == "over" and "above the ceiling $0.000100" in why


def test_a_request_ceiling_below_every_deployment_is_invalid_argument() -> None:
    r = router()
    with pytest.raises(InvalidRequest, match=r"max_cost_usd.*every deployment of 'chat'"):
        r.plan(ask("chat", params=Params(max_tokens=100), max_cost_usd=1e-9), stream=False)
    # A ceiling between the prices keeps the cheap ones: 100 tokens at $1 and $10 per 1M.
    plan = r.plan(ask("chat", params=Params(max_tokens=100), max_cost_usd=0.0011), stream=False)
    assert [d.name for d in plan.candidates] == ["cheap", "middle"]


def test_the_price_book_estimates_with_the_dearest_deployment() -> None:
    book = PriceBook(make_config(MODELS))
    assert book.estimate("chat", 0, 1000) == 30 * 1000 * 1000  # dear: $30 per 1M output
    assert book.price("chat", "cheap").output == 1
    assert book.price("other-alias", "cheap").output == 1  # a fallback's, by name
    assert book.price("chat", "") == Price()  # a cached answer


def test_prices_set_through_the_api_win_route_by_cost_and_outlive_a_reload() -> None:
    r = router()
    r.use_prices({"dear": Price(output=0.5, source="api")})  # now the cheapest
    assert r.prices.price("chat", "dear") == Price(output=0.5, source="api")
    assert r.plan(ask("chat"), stream=False).candidates[0].name == "dear"
    reloaded = Router(make_config(MODELS), build_provider, previous=r)
    assert reloaded.prices.price("chat", "dear").source == "api"
    reloaded.use_prices({})  # deleted: the config's again
    assert reloaded.prices.price("chat", "dear") == Price(output=30, source="deployment")
    assert reloaded.plan(ask("chat"), stream=False).candidates[0].name == "cheap"
