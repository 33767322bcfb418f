"""An OpenAPI 3 document generated from the same bindings the shim serves."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.rest.bindings import Binding
from gateway.rest.template import VARIABLE

F = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    F.TYPE_DOUBLE: {"type": "number"},
    F.TYPE_FLOAT: {"type": "number"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    # 64-bit integers are JSON strings in the proto3 mapping.
    F.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"},
    F.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"},
    F.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$"},
    F.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
}
_STATUS = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"google.rpc.Status": _STATUS}

    def ref(self, descriptor: Descriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursion stops here
            self.components[name] = self._message(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message(self, descriptor: Descriptor, skip: frozenset[str] = frozenset()) -> Any:
        properties = {f.json_name: self.field(f) for f in descriptor.fields if f.name not in skip}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS[field.type])

    def body(self, descriptor: Descriptor, skip: frozenset[str]) -> Any:
        """The request body schema without the fields the path carries."""
        return self._message(descriptor, skip)


def _query_parameters(
    schemas: _Schemas, descriptor: Descriptor, prefix: str, taken: set[str], depth: int = 0
) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for field in descriptor.fields:
        name = prefix + field.json_name
        if field.name in taken or depth > 2:
            continue
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            continue  # maps have no query form
        if message is not None and not message.full_name.startswith("google.protobuf."):
            if not field.is_repeated:
                params += _query_parameters(schemas, message, name + ".", set(), depth + 1)
            continue
        if message is not None and message.full_name != "google.protobuf.Timestamp":
            continue
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schemas.field(field),
                **({"style": "form", "explode": True} if field.is_repeated else {}),
            }
        )
    return params


def _openapi_path(template: str) -> tuple[str, list[dict[str, Any]]]:
    """`/v1/{name=tenants/*/keys/*}` -> `/v1/tenants/{p0}/keys/{p1}`: OpenAPI path
    parameters cannot hold a '/', so each wildcard segment is a parameter."""
    params: list[dict[str, Any]] = []

    def wildcard(variable: str) -> str:
        params.append(
            {
                "name": f"p{len(params)}",
                "in": "path",
                "required": True,
                "description": f"a segment of the request's `{variable}`",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.~-]+$"},
            }
        )
        return f"{{p{len(params) - 1}}}"

    def expand(found: re.Match[str]) -> str:
        pattern = found.group(2) or "*"
        return "/".join(
            wildcard(found.group(1)) if s in ("*", "**") else s for s in pattern.split("/")
        )

    return VARIABLE.sub(expand, template), params


def _operation(schemas: _Schemas, binding: Binding, operation_id: str) -> dict[str, Any]:
    method = binding.method
    request = method.input_type
    variables = binding.template.variables
    _, params = _openapi_path(binding.template.text)
    top = {v.split(".")[0] for v in variables}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [method.containing_service.name],
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {}},
            "default": {
                "description": "a google.rpc.Status",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/google.rpc.Status"}
                    }
                },
            },
        },
    }
    response = schemas.ref(method.output_type)
    if binding.response_body:
        response = schemas.field(method.output_type.fields_by_name[binding.response_body])
    if binding.server_streaming:
        item = {"type": "object", "properties": {"result": response, "error": {}}}
        operation["responses"]["200"]["content"]["application/x-ndjson"] = {"schema": item}
    else:
        operation["responses"]["200"]["content"]["application/json"] = {"schema": response}
    if binding.body == "*":
        schema = schemas.body(request, frozenset(top))
        operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    elif binding.body:
        schema = schemas.field(request.fields_by_name[binding.body])
        operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
        top.add(binding.body)
    if binding.body != "*":
        params += _query_parameters(schemas, request, "", top)
    return operation


def openapi_document(bindings: list[Binding], title: str = "infergate") -> dict[str, Any]:
    """OpenAPI 3.0 for every binding (wildcard segments become {p0}, {p1}, ...)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for binding in bindings:
        path, _ = _openapi_path(binding.template.text)
        name = f"{binding.method.containing_service.name}_{binding.method.name}"
        seen[name] = seen.get(name, 0) + 1
        operation_id = name if seen[name] == 1 else f"{name}{seen[name]}"
        paths.setdefault(path, {})[binding.http_method.lower()] = _operation(
            schemas, binding, operation_id
        )
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
