"""Prices set through the API (SetPrice / DeletePrice) and the CLI: admin
only, audited, validated field by field, over the config's price for pricing
calls, and picked up by another replica within the budgets' refresh interval."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gateway.cli import main
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc, router_pb2_grpc
from gateway.server import Gateway
from router.pricing import Price
from tests.conftest import StartGateway, chat
from tests.gateway.apps.test_auth import admin, secure_top
from tests.gateway.apps.test_quota import key

# The config's price: one cent a call, whatever its tokens.
MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8",
                              "price": {"request": 0.01}}]},
}  # fmt: skip


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    # A short refresh interval: changes made elsewhere (another replica) arrive quickly.
    return await start_gateway(MODELS, top=secure_top(tmp_path, budgets={"refresh_s": 0.05}))


async def code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), str(exc.details())
    return grpc.StatusCode.OK, ""


async def test_a_price_set_through_the_api_wins_over_the_config_and_is_audited(
    gateway: Gateway,
) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps, router = app_pb2_grpc.AppStub(ch), router_pb2_grpc.RouterStub(ch)
        price = pb.Price(deployment="chat-a", input=1, output=2)
        saved = await apps.SetPrice(pb.SetPriceRequest(price=price), metadata=admin(gateway))
        assert (saved.model, saved.deployment, saved.input, saved.output, saved.request) == (
            "chat", "chat-a", 1, 2, 0,
        )  # fmt: skip
        assert saved.source == "api"
        [listed] = (await apps.ListPrices(pb.ListPricesRequest(), metadata=admin(gateway))).prices
        assert (listed.output, listed.source) == (2, "api")
        reply = await router.Generate(chat("chat"), metadata=admin(gateway))
        # "hello world": 2 input tokens at $1/1M, 8 output at $2/1M; no per-call price.
        assert reply.usage.cost_usd == pytest.approx((2 * 1000 + 8 * 2000) / 1e9, abs=1e-15)
        delete = pb.DeletePriceRequest(deployment="chat-a")
        await apps.DeletePrice(delete, metadata=admin(gateway))
        [back] = (await apps.ListPrices(pb.ListPricesRequest(), metadata=admin(gateway))).prices
        assert (back.request, back.output, back.source) == (0.01, 0, "deployment")
        again = await router.Generate(chat("chat"), metadata=admin(gateway))
        assert again.usage.cost_usd == pytest.approx(0.01)
        assert (await code(apps.DeletePrice(delete, metadata=admin(gateway))))[0] is (
            grpc.StatusCode.NOT_FOUND
        )
        events = await apps.ListAuditEvents(
            pb.ListAuditEventsRequest(resource="prices/chat-a"), metadata=admin(gateway)
        )
    assert [e.action for e in events.events] == ["SetPrice", "DeletePrice"]
    assert events.events[0].after["output"] == 2


async def test_only_admins_set_prices_and_a_bad_price_names_its_field(gateway: Gateway) -> None:
    dev = await key(gateway, "acme", "developer")
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)

        def set_(metadata: Any, **fields: Any) -> Any:
            price = pb.Price(**{"deployment": "chat-a", "output": 1, **fields})
            return apps.SetPrice(pb.SetPriceRequest(price=price), metadata=metadata)

        denied = await code(set_(dev))
        assert denied[0] is grpc.StatusCode.PERMISSION_DENIED and "needs role admin" in denied[1]
        deleted = await code(apps.DeletePrice(pb.DeletePriceRequest(deployment="chat-a"),
                                              metadata=dev))  # fmt: skip
        assert deleted[0] is grpc.StatusCode.PERMISSION_DENIED
        bad = grpc.StatusCode.INVALID_ARGUMENT
        for fields, field in [
            ({"input": -1}, "price.input"), ({"cached_input": float("nan")}, "price.cached_input"),
            ({"output": 1e7}, "price.output"), ({"request": -0.5}, "price.request"),
            ({"embedding": float("inf")}, "price.embedding"),
            ({"deployment": ""}, "price.deployment"),
        ]:  # fmt: skip
            got = await code(set_(admin(gateway), **fields))
            assert got[0] is bad and got[1].startswith(f"{field}:"), (fields, got)
        unknown = await code(set_(admin(gateway), deployment="nope"))
        assert unknown[0] is grpc.StatusCode.NOT_FOUND and "nope" in unknown[1]
        [unchanged] = (await apps.ListPrices(pb.ListPricesRequest(), metadata=dev)).prices
    assert unchanged.source == "deployment"  # nothing refused was stored


async def test_another_replica_picks_a_price_up_within_the_refresh_interval(
    gateway: Gateway,
) -> None:
    assert gateway.apps is not None
    # What another replica (or the CLI) writes: the store, not this process's router.
    await gateway.apps.store.prices.set("chat-a", Price(output=5, source="api"), "elsewhere")
    for _ in range(100):
        if gateway.router.prices.price("chat", "chat-a").source == "api":
            break
        await asyncio.sleep(0.01)
    assert gateway.router.prices.price("chat", "chat-a") == Price(output=5, source="api")
    await gateway.apps.store.prices.delete("chat-a", "elsewhere")
    for _ in range(100):
        if gateway.router.prices.price("chat", "chat-a").source != "api":
            break
        await asyncio.sleep(0.01)
    assert gateway.router.prices.price("chat", "chat-a").request == 0.01


def test_the_cli_sets_and_deletes_a_price_over_the_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "models": {"chat": {"deployments": [
            {"name": "a", "provider": "mock", "model": "echo", "price": {"output": 2}},
        ]}},
    }))  # fmt: skip
    cfg = ["--config", str(config)]

    def rows() -> dict[str, list[str]]:
        assert main(["budgets", "prices", *cfg]) == 0
        lines = capsys.readouterr().out.splitlines()[2:]
        return {r.split("\t")[1]: r.split("\t") for r in lines}

    assert main(["budgets", "prices", "set", "a", "--output", "3", "--cached-input", "0.5",
                 *cfg]) == 0  # fmt: skip
    assert "set the price of a" in capsys.readouterr().out
    assert rows()["a"][3:] == ["0", "0.5", "3", "0", "0", "api"]
    assert main(["budgets", "prices", "set", "a", "--input", "-1", *cfg]) == 2
    assert "price.input" in capsys.readouterr().err
    assert main(["budgets", "prices", "set", "nope", "--output", "1", *cfg]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["budgets", "prices", "delete", "a", *cfg]) == 0
    capsys.readouterr()
    assert rows()["a"][3:] == ["0", "0", "2", "0", "0", "deployment"]
    assert main(["audit", "verify", *cfg]) == 0  # the CLI's changes are in the chain
