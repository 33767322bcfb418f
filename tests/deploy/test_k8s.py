"""deploy/k8s: schema-valid for a pinned Kubernetes version, in step with the
gateway config it mounts (ports, drain and grace), probing the health service
the gateway serves, and hot-reloading the ConfigMap the way the kubelet
updates it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters import build_provider
from gateway.config import GatewayConfig, load_config
from gateway.live import LiveRouter
from gateway.reload import Reloader
from router.router import Router
from tests.conftest import StartGateway

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES = "1.33.0"  # the version the manifests are validated against
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """The kustomization's resources by (kind, name), before kustomize."""
    return {
        (d["kind"], d["metadata"]["name"]): d
        for name in KUSTOMIZATION["resources"]
        for d in documents(K8S / name)
    }


def deployment() -> dict[str, Any]:
    return resources()["Deployment", "infergate"]


def gateway_container() -> dict[str, Any]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def mounted_config() -> GatewayConfig:
    return load_config(K8S / "config.yaml")


def validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_every_manifest_is_valid_for_the_pinned_kubernetes() -> None:
    files = [*KUSTOMIZATION["resources"], "secret.example.yaml"]
    for name in files:
        for document in documents(K8S / name):
            validate(document)
    kinds = {kind for kind, _ in resources()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds


def test_every_manifest_file_is_used() -> None:
    listed = {*KUSTOMIZATION["resources"], "kustomization.yaml", "secret.example.yaml"}
    listed |= {f for g in KUSTOMIZATION["configMapGenerator"] for f in g["files"]}
    assert {p.name for p in K8S.glob("*.yaml")} == listed


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the resources were validated one file at a time")
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_kustomized_output_is_valid_and_keeps_the_configmaps_name() -> None:
    rendered = kustomize(K8S)
    for document in rendered:
        validate(document)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "infergate"
    config_maps = [d for d in rendered if d["kind"] == "ConfigMap"]
    # No hash suffix: the mounted file is updated in place, which is what hot reload needs.
    assert [c["metadata"]["name"] for c in config_maps] == ["infergate-config"]
    assert config_maps[0]["data"]["config.yaml"] == (K8S / "config.yaml").read_text()


def test_the_in_flight_component_adds_a_pods_metric(tmp_path: Path) -> None:
    base = os.path.relpath(K8S, tmp_path)  # kustomize takes relative paths only
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [base], "components": [f"{base}/components/in-flight"]})
    )
    (hpa,) = [d for d in kustomize(tmp_path) if d["kind"] == "HorizontalPodAutoscaler"]
    validate(hpa)
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "infergate_grpc_in_flight"


def test_ports_and_probes_match_the_mounted_config() -> None:
    config = mounted_config()
    container = gateway_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": config.server.port, "http": config.rest.port, "metrics": config.server.metrics_port
    }  # fmt: skip
    assert config.server.host == config.rest.host == "0.0.0.0"  # the kubelet probes the pod IP
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": config.server.port}, probe
    service_ports = {
        p["name"]: p["targetPort"] for p in resources()["Service", "infergate"]["spec"]["ports"]
    }
    assert set(service_ports.values()) <= set(ports)


def test_termination_covers_pre_stop_drain_and_grace() -> None:
    server = mounted_config().server
    spec = deployment()["spec"]["template"]["spec"]
    container = gateway_container()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    shutdown = float(command[1]) + server.drain_delay_s + server.grace_period_s
    assert server.drain_delay_s > 0
    assert spec["terminationGracePeriodSeconds"] == shutdown + 5  # 5 s to exit
    # Health says NOT_SERVING for the whole shutdown: liveness must not kill the pod then.
    liveness = container["livenessProbe"]
    tolerated = liveness["periodSeconds"] * liveness["failureThreshold"]
    assert tolerated > spec["terminationGracePeriodSeconds"]


def test_resources_autoscaling_and_disruption_budget() -> None:
    container = gateway_container()
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])  # the HPA needs cpu
    hpa = resources()["HorizontalPodAutoscaler", "infergate"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "infergate"
    assert hpa["minReplicas"] >= 2
    pdb = resources()["PodDisruptionBudget", "infergate"]["spec"]
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] < hpa["minReplicas"]


def test_credentials_come_from_the_secret_and_services_by_url() -> None:
    container = gateway_container()
    assert container["envFrom"] == [{"secretRef": {"name": "infergate-secrets"}}]
    (secret,) = documents(K8S / "secret.example.yaml")
    assert {"PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    config = mounted_config()
    assert config.cache.backend == config.apps.limits.backend == config.tasks.backend == "redis"
    assert config.apps.store.url.startswith("postgresql+asyncpg://")
    assert ":" not in config.apps.store.url.split("//")[1].split("@")[0]  # no password in it
    assert config.tasks.archive.backend == "s3"
    assert config.dataset.snapshots is not None


async def test_the_probed_health_service_is_serving(start_gateway: StartGateway) -> None:
    """What the kubelet's gRPC probe asks: Check with the probe's service ("")."""
    gateway = await start_gateway()
    service = gateway_container()["readinessProbe"]["grpc"].get("service", "")
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# The ConfigMap volume as the kubelet lays it out: the keys in a timestamped
# directory, `..data` pointing at it, and each key a symlink through `..data`.
# An update writes a new directory, swaps `..data` atomically (a new symlink
# renamed over it) and removes the old directory.


def mount_version(mount: Path, stamp: str, files: dict[str, str]) -> None:
    (mount / stamp).mkdir()
    for key, text in files.items():
        (mount / stamp / key).write_text(text)
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    (mount / "..data_tmp").symlink_to(stamp)
    os.replace(mount / "..data_tmp", mount / "..data")
    if old is not None:
        shutil.rmtree(mount / old)


def config_path_in(mount: Path) -> Path:
    """Where the container's --config points, inside `mount` (its mountPath)."""
    container = gateway_container()
    (volume,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert "subPath" not in volume  # a subPath mount never sees the swap
    path = Path(container["args"][container["args"].index("--config") + 1])
    assert path.parent == Path(volume["mountPath"])
    return mount / path.name


def with_model(alias: str) -> str:
    data = yaml.safe_load((K8S / "config.yaml").read_text())
    data["models"][alias] = {"deployments": [{"name": alias, "provider": "mock", "model": "echo"}]}
    return yaml.safe_dump(data)


@contextlib.asynccontextmanager
async def watched(path: Path) -> AsyncIterator[LiveRouter]:
    config = await asyncio.to_thread(load_config, path)
    live = LiveRouter(Router(config, build_provider), None)
    reloader = Reloader(live, path, build_provider, server=config.server)
    task = asyncio.create_task(reloader.watch())
    try:
        yield live
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await live.router.aclose()


async def until_served(live: LiveRouter, alias: str, update: Any) -> None:
    """Until `alias` is served; `update` is repeated now and then, since one made
    before the watcher started is not seen."""
    for i in range(200):
        if i % 40 == 0:
            update()
        if alias in live.router.models:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{alias} never served; serving {sorted(live.router.models)}")


async def test_a_kubelet_configmap_update_is_hot_reloaded(tmp_path: Path) -> None:
    (key,) = [f for g in KUSTOMIZATION["configMapGenerator"] for f in g["files"]]
    mount_version(tmp_path, "..2024_05_01_10_00_00.000000001", {key: with_model("v1")})
    path = config_path_in(tmp_path)
    assert path.is_symlink() and path.name == key
    versions = iter(range(2, 100))

    def update(alias: str) -> None:
        stamp = f"..2024_05_01_10_00_{next(versions):02}.000000001"
        mount_version(tmp_path, stamp, {key: with_model(alias)})

    async with watched(path) as live:
        assert "v1" in live.router.models
        await until_served(live, "v2", lambda: update("v2"))
        assert "v1" not in live.router.models
        await until_served(live, "v3", lambda: update("v3"))  # and again: the watch goes on
    assert len(versions_in(tmp_path)) == 1  # the kubelet removed the old ones


def versions_in(mount: Path) -> list[Path]:
    return [p for p in mount.iterdir() if p.name.startswith("..2024")]
