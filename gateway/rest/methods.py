"""The RPCs the shim can call, read from the services' descriptors.

A REST route names an RPC by its `MethodDescriptor` (from the proto's
`google.api.http` binding, or a constant such as `GENERATE`); this table leads
from the descriptor to the servicer method that serves it, and to the handler
that (de)serializes as the generated `add_*Servicer_to_server` registers it
with the gRPC server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

from gateway.pb import router_pb2

_ROUTER = router_pb2.DESCRIPTOR.services_by_name["Router"]
GENERATE = _ROUTER.methods_by_name["Generate"]
GENERATE_STREAM = _ROUTER.methods_by_name["GenerateStream"]
EMBED = _ROUTER.methods_by_name["Embed"]
RERANK = _ROUTER.methods_by_name["Rerank"]
LIST_MODELS = _ROUTER.methods_by_name["ListModels"]
HEALTH_CHECK = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]

# (client streaming, server streaming) -> grpc's handler factory for that shape.
_HANDLERS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def full_name(method: MethodDescriptor) -> str:
    """As gRPC names it on the wire and to interceptors: "/pkg.Service/Method"."""
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass(frozen=True, slots=True)
class Method:
    descriptor: MethodDescriptor
    serve: Callable[..., Any]  # the servicer's method of the same name
    handler: grpc.RpcMethodHandler


def _method(descriptor: MethodDescriptor, servicer: Any) -> Method:
    serve = getattr(servicer, descriptor.name)
    request = message_factory.GetMessageClass(descriptor.input_type)
    response = message_factory.GetMessageClass(descriptor.output_type)
    shape = (bool(descriptor.client_streaming), bool(descriptor.server_streaming))
    handler = _HANDLERS[shape](
        serve,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )
    return Method(descriptor, serve, handler)


class MethodTable:
    """Every RPC of the given (service descriptor, servicer) pairs."""

    def __init__(self, services: Iterable[tuple[ServiceDescriptor, Any]]) -> None:
        self._methods = {
            method: _method(method, servicer)
            for service, servicer in services
            for method in service.methods
        }
        self.services = sorted(
            {m.containing_service for m in self._methods}, key=lambda s: s.full_name
        )

    def get(self, descriptor: MethodDescriptor) -> Method | None:
        return self._methods.get(descriptor)
