"""HTTP bindings read from the services' `google.api.http` annotations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from gateway.rest.template import PathTemplate, compile_template


@dataclass(frozen=True, slots=True)
class Binding:
    """One HTTP route of one RPC (an RPC with additional_bindings has several)."""

    http_method: str  # "GET", "POST", ...
    template: PathTemplate
    body: str  # "" (no body), "*" (the whole request) or a top-level field name
    response_body: str  # "" (the whole response) or a field name
    method: MethodDescriptor

    @property
    def request_class(self) -> Any:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def client_streaming(self) -> bool:
        return bool(self.method.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)


def _bindings(rule: http_pb2.HttpRule, method: MethodDescriptor) -> Iterable[Binding]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    elif kind is not None:
        verb, path = kind.upper(), getattr(rule, kind)
    else:
        raise ValueError(f"{method.full_name}: google.api.http rule without a path")
    yield Binding(verb, compile_template(path), rule.body, rule.response_body, method)
    for extra in rule.additional_bindings:
        yield from _bindings(extra, method)


def read_bindings(services: Iterable[ServiceDescriptor]) -> list[Binding]:
    """Every binding of every RPC, most specific templates first."""
    found: list[Binding] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                found.extend(_bindings(options.Extensions[annotations_pb2.http], method))
    found.sort(key=lambda b: b.template.specificity, reverse=True)
    return found


class RouteTable:
    """Finds the binding for an HTTP method and path."""

    def __init__(self, bindings: list[Binding]) -> None:
        self.bindings = bindings

    def find(self, http_method: str, path: str) -> tuple[Binding, dict[str, str]] | list[str]:
        """The binding and its path variables, else the methods the path allows
        (empty: no route)."""
        allowed: list[str] = []
        for binding in self.bindings:
            variables = binding.template.match(path)
            if variables is None:
                continue
            if binding.http_method == http_method:
                return binding, variables
            allowed.append(binding.http_method)
        return sorted(set(allowed))
