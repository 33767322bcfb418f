from __future__ import annotations

from pathlib import Path

import pytest
from google.api import annotations_pb2

from gateway import protogen
from gateway.pb import app_pb2, dataset_pb2, router_pb2, tasks_pb2

FILES = (router_pb2, dataset_pb2, app_pb2, tasks_pb2)


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    fresh = protogen.generate(tmp_path)
    committed = {p.name: p.read_text() for p in protogen.OUT.glob("*_pb2*")}
    assert sorted(fresh) == sorted(committed), "run `make protos`"
    for name, text in fresh.items():
        assert committed[name] == text, f"gateway/pb/{name} is stale: run `make protos`"


def _methods() -> list[tuple[str, object]]:
    return [
        (f"{service.name}.{method.name}", method)
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


@pytest.mark.parametrize(("name", "method"), _methods(), ids=[n for n, _ in _methods()])
def test_every_rpc_has_an_http_rule_under_v1(name: str, method: object) -> None:
    options = method.GetOptions()  # type: ignore[attr-defined]
    assert options.HasExtension(annotations_pb2.http), f"{name} has no google.api.http"
    rule = options.Extensions[annotations_pb2.http]
    path = getattr(rule, rule.WhichOneof("pattern"))
    assert path.startswith("/v1/"), f"{name}: {path}"


def test_the_router_contract() -> None:
    router = router_pb2.DESCRIPTOR.services_by_name["Router"]
    assert {"Generate", "GenerateStream", "Embed", "ListModels", "GetModelHealth", "Route"} <= {
        m.name for m in router.methods
    }
    assert router.methods_by_name["GenerateStream"].server_streaming
    health = router.methods_by_name["GetModelHealth"].GetOptions()
    assert health.Extensions[annotations_pb2.http].get == "/v1/models/health"
    assert {f.DESCRIPTOR.package for f in FILES} == {"infergate.v1"}
