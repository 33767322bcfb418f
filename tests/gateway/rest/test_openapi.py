"""/openapi.json, and a bounded property-based run of schemathesis against the
running shim: no generated request may get a 5xx."""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.pb import app_pb2, dataset_pb2, router_pb2, tasks_pb2
from gateway.rest.bindings import read_bindings
from gateway.rest.openapi import openapi_document

SERVICES = [(router_pb2, "Router"), (dataset_pb2, "Dataset"), (app_pb2, "App"),
            (tasks_pb2, "Tasks")]  # fmt: skip
DOCUMENT = openapi_document(read_bindings(m.DESCRIPTOR.services_by_name[n] for m, n in SERVICES))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_openapi_3_with_every_rpc(base_url: str) -> None:
    served = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    assert served["openapi"].startswith("3.")
    operations = {op["operationId"] for path in served["paths"].values() for op in path.values()}
    assert {"Router_Generate", "Router_GenerateStream", "Router_GetModelHealth"} <= operations
    assert {"Tasks_Get", "Tasks_Get2"} <= operations  # additional_bindings
    assert "/v1/tenants/{p0}/keys/{p1}" in served["paths"]  # wildcards as parameters
    assert served == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=10,  # 29 operations: about 15 s on 2 cores
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_request_gets_a_5xx(case: Any, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=10,
    )
