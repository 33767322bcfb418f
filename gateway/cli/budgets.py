"""`infergate budgets …`: set, list and delete spend budgets; list, set and
delete prices (`budgets prices [set|delete]`). Works on the store and config
the config file names, directly (no running gateway needed): gateways pick a
change up within `apps.budgets.refresh_s`. Every change is audited as
`cli:<user>`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from typing import Any

from gateway.apps import periods
from gateway.apps.model import BUDGET_PERIODS
from gateway.apps.store import open_store
from gateway.apps.wire import budget_from_pb, budget_subject, price_from_pb
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError, NotFound
from gateway.pb import app_pb2
from router import price_table
from router.pricing import PriceBook, usd


def register(commands: Any) -> None:
    budgets = commands.add_parser("budgets", help="spend budgets per tenant, key and app; prices")
    sub = budgets.add_subparsers(dest="budgets_command", required=True)
    set_ = sub.add_parser("set", help="add or replace a budget")
    set_.add_argument("name", help="tenants/T, tenants/T/keys/K or tenants/T/apps/A")
    set_.add_argument("--limit-usd", type=float, required=True)
    set_.add_argument("--period", choices=BUDGET_PERIODS, default="monthly")
    set_.add_argument("--alert-share", type=float, default=0.0, help="0..1; 0: no alert")
    listing = sub.add_parser("list", help="budgets and what was spent this period (recorded)")
    listing.add_argument("--tenant", help="only this tenant's")
    delete = sub.add_parser("delete", help="remove a budget")
    delete.add_argument("name")
    prices = sub.add_parser("prices", help="every deployment's price and its source; set one")
    actions = prices.add_subparsers(dest="prices_command")
    set_price = actions.add_parser("set", help="a deployment's price, over the config's")
    set_price.add_argument("deployment")
    for rate in ("input", "cached-input", "output", "request", "embedding"):
        set_price.add_argument(
            f"--{rate}",
            type=float,
            default=0.0,
            help="USD per call" if rate == "request" else "USD per 1M tokens",
        )
    delete_price = actions.add_parser("delete", help="back to the config's (or table's) price")
    delete_price.add_argument("deployment")
    for parser in [*sub.choices.values(), set_price, delete_price]:
        parser.add_argument("--config", help="YAML config (default: the embedded one)")
    budgets.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    work = _prices if args.budgets_command == "prices" else _budgets
    try:
        return int(asyncio.run(work(config, args)))
    except GatewayError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2


async def _budgets(config: GatewayConfig, args: argparse.Namespace) -> int:
    store = await open_store(config.apps, config.data_dir)
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.budgets_command == "set":
            msg = app_pb2.Budget(
                name=args.name, limit_usd=args.limit_usd, period=args.period,
                alert_share=args.alert_share,
            )  # fmt: skip
            rule = await store.budgets.set(budget_from_pb(msg), actor)
            print(f"set {rule.name}: ${usd(rule.limit_nanos):.2f} {rule.period}")
        elif args.budgets_command == "delete":
            scope, tenant, subject = budget_subject(args.name)
            await store.budgets.delete(tenant, scope, subject, actor)
            print(f"deleted the budget of {args.name}")
        else:
            now = time.time()
            print("name\tlimit_usd\tperiod\tspent_usd\tresets")
            for rule in await store.budgets.list(args.tenant):
                start, end = periods.window(rule.period, now)
                spent = await store.budgets.spent(rule, start * 1000)
                resets = periods.iso(end) if end is not None else "never"
                print(f"{rule.name}\t{usd(rule.limit_nanos):.2f}\t{rule.period}\t"
                      f"{usd(spent):.6f}\t{resets}")  # fmt: skip
        return 0
    finally:
        await store.aclose()


async def _prices(config: GatewayConfig, args: argparse.Namespace) -> int:
    store = await open_store(config.apps, config.data_dir)
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.prices_command == "set":
            msg = app_pb2.Price(
                deployment=args.deployment, input=args.input, cached_input=args.cached_input,
                output=args.output, request=args.request, embedding=args.embedding,
            )  # fmt: skip
            deployment, price = price_from_pb(msg)
            if not any(e.deployment == deployment for e in PriceBook(config).entries):
                raise NotFound(f"deployment {deployment!r}")
            await store.prices.set(deployment, price, actor)
            print(f"set the price of {deployment}")
        elif args.prices_command == "delete":
            await store.prices.delete(args.deployment, actor)
            print(f"deleted the price set for {args.deployment}")
        else:
            _print_prices(PriceBook(config, await store.prices.list()))
        return 0
    finally:
        await store.aclose()


def _print_prices(book: PriceBook) -> None:
    print(f"USD per million tokens (per call: request); shipped table of {price_table.AS_OF}")
    print("model\tdeployment\tupstream\tinput\tcached_input\toutput\trequest\tembedding\tsource")
    for e in book.entries:
        p = e.price
        rates = (p.input, p.cached_input, p.output, p.request, p.embedding)
        figures = "\t".join(f"{r:g}" for r in rates)
        print(f"{e.alias}\t{e.deployment}\t{e.provider}:{e.model}\t{figures}\t{p.source}")
