"""`infergate workflow validate FILE` (offline) and `infergate workflow push
FILE --id ID [--publish]`: a workflow document from a YAML or JSON file,
checked here, then saved through the gateway's public gRPC API (a new
workflow, or a new version of an existing one) with your key."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import struct_pb2

from gateway.apps import workflow_runner
from gateway.config import load_config
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc


def register(commands: Any) -> None:
    group = commands.add_parser("workflow", help="check and save workflow documents")
    sub = group.add_subparsers(dest="workflow_command", required=True)
    check = sub.add_parser("validate", help="check a workflow file; exit 1 listing its problems")
    check.add_argument("file", type=Path, help="YAML or JSON: inputs, nodes, edges, outputs")
    push = sub.add_parser("push", help="save a workflow file: created, or a new version")
    push.add_argument("file", type=Path)
    push.add_argument("--id", required=True, help="the workflow's id (workflows/ID or ID)")
    push.add_argument("--name", default="", help="display name")
    push.add_argument("--publish", action="store_true", help="publish the version saved")
    push.add_argument("--address", help="the gateway's gRPC address (default: the config's)")
    push.add_argument("--key", help="API key (default: the INFERGATE_API_KEY environment variable)")
    push.add_argument("--config", help="YAML config, for the address (default: the embedded one)")
    check.set_defaults(run=_validate)
    push.set_defaults(run=lambda args: asyncio.run(_push(args)))


def _read(path: Path) -> Any:
    """The document in `path`; YAML is a superset of JSON, so one parser reads both."""
    return yaml.safe_load(path.read_text())


def _validate(args: argparse.Namespace) -> int:
    try:
        document = _read(args.file)
    except (OSError, yaml.YAMLError) as exc:
        print(f"infergate: {args.file}: {exc}", file=sys.stderr)
        return 2
    problems = workflow_runner.problems(document)
    for problem in problems:
        print(f"{args.file}: {problem}")
    if not problems:
        print(f"{args.file}: valid")
    return 1 if problems else 0


async def _push(args: argparse.Namespace) -> int:
    if _validate(args) != 0:
        return 1
    definition = struct_pb2.Struct()
    definition.update(_read(args.file))
    workflow_id = args.id.removeprefix("workflows/")
    key = args.key or os.environ.get("INFERGATE_API_KEY", "")
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    address = args.address or load_config(args.config).server.address
    async with grpc.aio.insecure_channel(address) as channel:
        stub = app_pb2_grpc.AppStub(channel)  # type: ignore[no-untyped-call]
        spec = pb.Workflow(display_name=args.name, definition=definition)
        try:
            try:
                saved = await stub.CreateWorkflow(
                    pb.CreateWorkflowRequest(workflow_id=workflow_id, workflow=spec),
                    metadata=metadata,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.ALREADY_EXISTS:
                    raise
                spec.name = f"workflows/{workflow_id}"
                saved = await stub.UpdateWorkflow(
                    pb.UpdateWorkflowRequest(workflow=spec), metadata=metadata
                )
            if args.publish:
                await stub.PublishWorkflow(
                    pb.PublishWorkflowRequest(name=saved.name, version=saved.version),
                    metadata=metadata,
                )
        except grpc.aio.AioRpcError as exc:
            print(f"infergate: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    state = "published" if args.publish else f"published: {saved.published_version or 'none'}"
    print(f"{saved.name} version {saved.version} saved ({state})")
    return 0
