"""The RPCs the resolvers call, by the services' descriptors (as the shim's
method table knows them)."""

from __future__ import annotations

from types import ModuleType

from google.protobuf.descriptor import MethodDescriptor

from gateway.pb import app_pb2, dataset_pb2, router_pb2, tasks_pb2


def _methods(module: ModuleType, service: str) -> dict[str, MethodDescriptor]:
    return dict(module.DESCRIPTOR.services_by_name[service].methods_by_name)


ROUTER = _methods(router_pb2, "Router")
DATASET = _methods(dataset_pb2, "Dataset")
APP = _methods(app_pb2, "App")
TASKS = _methods(tasks_pb2, "Tasks")
