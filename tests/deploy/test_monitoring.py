"""deploy/grafana and deploy/prometheus: every query parses, every metric it
reads is one a started gateway exports (its live registry, not a list kept by
hand), the panels and alerts the operations pack promises exist, and the rules
pass `promtool check rules` and their unit tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from gateway.gpu import GpuMetrics
from tests.conftest import StartGateway, service_missing
from tests.deploy.fake_nvml import Device, FakeNvml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "infergate.json"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
# Grafana's range variables, as Prometheus would see them once Grafana filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# The sample names a family exposes (prometheus_client's text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def sample_names(families: Iterator[Metric]) -> set[str]:
    return {f"{family.name}{suffix}" for family in families for suffix in SUFFIXES[family.type]}


@pytest.fixture
async def exported(start_gateway: StartGateway) -> set[str]:
    """What a started gateway's /metrics can show: its registry's families, and
    the GPU collector's (registered only where NVML sees a device) from a fake one."""
    await start_gateway()
    gpu = GpuMetrics(FakeNvml([Device("fake", 50, 1, 2)]))  # type: ignore[arg-type]
    return sample_names(REGISTRY.collect()) | sample_names(iter(gpu.collect()))


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", ())]


def rule_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {expr}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)  # raises on a syntax error
    return names


@pytest.mark.parametrize(("where", "queries"), [("dashboard", dashboard_queries),
                                                ("alert rules", rule_queries)])  # fmt: skip
async def test_every_query_reads_metrics_the_gateway_exports(
    exported: set[str], where: str, queries: Any
) -> None:
    used = {name: title for title, expr in queries() for name in metric_names(expr)}
    unknown = {name: title for name, title in used.items() if name not in exported}
    assert not unknown, f"{where} reads metrics no gateway exports: {unknown}"
    assert len(used) >= 5  # the walk found selectors at all


def test_the_dashboard_has_the_promised_panels() -> None:
    titles = " | ".join(title.lower() for title, _ in dashboard_queries())
    for topic in (
        "requests by method and code", "error ratio", "by model", "p50 / p95 / p99",
        "time to first token", "by deployment", "breaker states", "in flight", "tokens",
        "cache hit rate", "queue depth", "task age", "dead letters", "retrieval latency",
        "rate-limit refusals", "gpu utilisation", "gpu memory", "batch occupancy",
    ):  # fmt: skip
        assert topic in titles, topic
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_the_dashboards_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_the_rules_cover_the_promised_alerts() -> None:
    alerts = dict(rule_queries())
    assert set(alerts) == {
        "InfergateHighErrorRatio", "InfergateModelUnavailable", "InfergateBreakerOpen",
        "InfergateSlowFirstToken", "InfergateDeadLettersGrowing", "InfergateTasksOld",
        "InfergateTaskBacklog", "InfergateConfigReloadRejected",
    }  # fmt: skip
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_missing("promtool not installed (Debian: apt-get install prometheus)")
    return path


@pytest.mark.parametrize("args", [["check", "rules", "alerts.yaml"],
                                  ["test", "rules", "alerts_test.yaml"]])  # fmt: skip
def test_promtool_accepts_the_rules_and_their_unit_tests(args: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_misspelt_metric_would_be_caught(exported: set[str]) -> None:
    """The check itself: a name off by a suffix is not taken for an exported one."""
    assert {"infergate_grpc_requests_total", "infergate_grpc_request_seconds_bucket"} <= exported
    assert not metric_names("rate(infergate_grpc_requests[5m])") <= exported
    assert not metric_names("infergate_grpc_request_seconds") <= exported
