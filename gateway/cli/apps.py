"""`infergate keys …` and `infergate audit verify`: work on the store the
config names, directly (no running gateway needed)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from gateway.apps.audit import verify
from gateway.apps.catalog import check_id
from gateway.apps.model import Tenant
from gateway.apps.roles import parse_role
from gateway.apps.store import audit_anchor, open_store
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError, NotFound


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--tenant", required=True, help="created when missing")
    create.add_argument("--role", required=True, choices=["admin", "developer", "user"])
    create.add_argument("--rpm", type=int, default=0, help="requests per minute (0: unlimited)")
    create.add_argument("--tpm", type=int, default=0, help="tokens per minute (0: unlimited)")
    listing = sub.add_parser("list", help="list a tenant's keys (never their secrets)")
    listing.add_argument("--tenant", required=True)
    revoke = sub.add_parser("revoke", help="revoke tenants/T/keys/K")
    revoke.add_argument("name")
    audit = commands.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the hash chain; exit 1 at the first broken link")
    for parser in (create, listing, revoke, *audit_sub.choices.values()):
        parser.add_argument("--config", help="YAML config (default: the embedded one)")
    keys.set_defaults(run=lambda args: _run(_keys, args))
    audit.set_defaults(run=lambda args: _run(_audit, args))


def _config(args: argparse.Namespace) -> GatewayConfig:
    return load_config(args.config)


def _run(command: Any, args: argparse.Namespace) -> int:
    try:
        return int(asyncio.run(command(_config(args), args)))
    except GatewayError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2


async def _keys(config: GatewayConfig, args: argparse.Namespace) -> int:
    store = await open_store(config.apps, config.data_dir)
    actor = f"cli:{getpass.getuser()}"
    try:
        if args.keys_command == "create":
            tenant = check_id(args.tenant, "--tenant")
            try:
                await store.tenants.get(tenant)
            except NotFound:
                await store.tenants.create(Tenant(tenant, tenant), actor)
            key, secret = await store.keys.create(
                tenant, parse_role(args.role, "--role"), actor, rpm=args.rpm, tpm=args.tpm
            )
            print(f"created tenants/{tenant}/keys/{key.id} ({args.role}); shown once:")
            print(secret)
        elif args.keys_command == "list":
            for key in await store.keys.list(args.tenant):
                state = "revoked" if key.revoked_ms is not None else "active"
                print(f"tenants/{key.tenant}/keys/{key.id}\t{key.role.name.lower()}\t"
                      f"{key.prefix}…\t{state}")  # fmt: skip
        else:
            from gateway.apps.wire import key_name

            tenant, key_id = key_name(args.name)
            await store.keys.revoke(tenant, key_id, actor)
            print(f"revoked {args.name}")
        return 0
    finally:
        await store.aclose()


async def _audit(config: GatewayConfig, args: argparse.Namespace) -> int:
    try:
        anchor = audit_anchor(config.data_dir).read()
    except ValueError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 2
    store = await open_store(config.apps, config.data_dir)
    try:
        verdict = verify([e async for e in store.audit.events()], anchor)
    finally:
        await store.aclose()
    if verdict.ok:
        reaches = f", up to the anchored head {anchor.seq}" if anchor is not None else ""
        print(f"audit log ok: {verdict.events} events, chain intact{reaches}")
        return 0
    print(f"audit log BROKEN at sequence {verdict.bad_seq}: {verdict.reason}", file=sys.stderr)
    return 1
