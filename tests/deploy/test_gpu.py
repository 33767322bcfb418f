"""gateway/gpu.py: GPU series only where NVML sees a device (here through a
fake `pynvml` put in sys.modules), nothing and no error without one."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from gateway import gpu
from indexer.onnx_embedder import OnnxEmbedder
from tests.conftest import StartGateway
from tests.deploy.fake_nvml import Device, FakeNvml

GIB = 1 << 30


def install(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml | None) -> None:
    """`nvml` as the `pynvml` module; None: the package is not installed."""
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # type: ignore[arg-type]


def gpu_lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "infergate_gpu" in line or "embedder" in line]


class Counted:
    """The counters an embedder keeps (OnnxEmbedder's)."""

    def __init__(self, calls: int, rows: int, capacity: int) -> None:
        self.inference_calls, self.inference_rows, self._capacity = calls, rows, capacity

    @property
    def max_batch_size(self) -> int:
        return self._capacity


@pytest.mark.parametrize(
    "nvml",
    [None, FakeNvml([], driver=False), FakeNvml([])],
    ids=["no package", "no driver", "no device"],
)
def test_without_a_device_nothing_is_exported_and_nothing_complains(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, nvml: FakeNvml | None
) -> None:
    install(monkeypatch, nvml)
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO), gpu.exported(Counted(1, 1, 1), registry) as on:
        assert on is False
        assert gpu_lines(registry) == []
    assert not caplog.records
    if nvml is not None:
        assert nvml.initialised == 0  # initialised and shut down again, or never


def test_the_real_nvidia_ml_py_without_a_gpu_exports_nothing() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver: the absent path is tested with fakes")
    registry = CollectorRegistry()
    with gpu.exported(None, registry) as on:
        assert on is False
    assert gpu_lines(registry) == []


def test_with_devices_utilisation_memory_and_batch_occupancy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNvml(
        [Device("NVIDIA H100", 73, 5 * GIB, 80 * GIB), Device("NVIDIA L4", 0, 0, 24 * GIB)]
    )
    install(monkeypatch, nvml)
    registry = CollectorRegistry()
    embedder = Counted(calls=10, rows=320, capacity=128)
    with gpu.exported(embedder, registry) as on:
        assert on is True
        sample = registry.get_sample_value
        h100, l4 = {"gpu": "0", "name": "NVIDIA H100"}, {"gpu": "1", "name": "NVIDIA L4"}
        assert sample("infergate_gpu_utilization_ratio", h100) == 0.73
        assert sample("infergate_gpu_utilization_ratio", l4) == 0.0
        assert sample("infergate_gpu_memory_used_bytes", h100) == 5 * GIB
        assert sample("infergate_gpu_memory_total_bytes", l4) == 24 * GIB
        assert sample("infergate_embedder_batches_total") == 10
        assert sample("infergate_embedder_batch_rows_total") == 320
        assert sample("infergate_embedder_batch_capacity_rows") == 128
        nvml.devices[0].gpu_percent = 12  # read at scrape time, not cached
        assert sample("infergate_gpu_utilization_ratio", h100) == 0.12
        embedder.inference_calls = 11
        assert sample("infergate_embedder_batches_total") == 11
    # The embedder is gone; the devices stay for the life of the process.
    assert registry.get_sample_value("infergate_embedder_batches_total") is None
    assert registry.get_sample_value("infergate_gpu_memory_used_bytes", h100) == 5 * GIB


def test_two_gateways_in_one_process_share_one_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([Device("gpu", 10, 1, 2)]))
    registry = CollectorRegistry()  # a second registration would raise "Duplicated timeseries"
    with gpu.exported(Counted(1, 8, 16), registry), gpu.exported(Counted(3, 40, 16), registry):
        assert registry.get_sample_value("infergate_embedder_batches_total") == 4
        assert registry.get_sample_value("infergate_embedder_batch_rows_total") == 48


def test_a_failing_device_is_left_out_and_the_others_still_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install(monkeypatch, FakeNvml([Device("lost", 0, 0, 1, broken=True), Device("ok", 40, 1, 2)]))
    registry = CollectorRegistry()
    utilization = "infergate_gpu_utilization_ratio"
    with gpu.exported(None, registry):
        assert registry.get_sample_value(utilization, {"gpu": "1", "name": "ok"}) == 0.4
        assert registry.get_sample_value(utilization, {"gpu": "0", "name": "lost"}) is None
    assert "device 0: GPU is lost" in caplog.text


async def test_the_onnx_embedders_own_batches_are_counted(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    install(monkeypatch, FakeNvml([Device("gpu", 10, 1, 2)]))
    embedder = OnnxEmbedder(tiny_model, max_batch_size=4)
    registry = CollectorRegistry()
    try:
        with gpu.exported(embedder, registry):
            await embedder.embed([f"text number {i}" for i in range(6)])
            batches = registry.get_sample_value("infergate_embedder_batches_total")
            assert batches == embedder.inference_calls >= 2  # 6 rows, 4 at most per call
            assert registry.get_sample_value("infergate_embedder_batch_rows_total") == 6
            assert registry.get_sample_value("infergate_embedder_batch_capacity_rows") == 4
    finally:
        await embedder.aclose()


@pytest.fixture
def fake_gpu_on_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    """A fake device for a started gateway, in place of a real one's collector if
    an earlier gateway registered it; afterwards the registry is as it was."""
    real = gpu._collectors.pop(REGISTRY, None)
    if real is not None:
        REGISTRY.unregister(real)
    nvml = FakeNvml([Device("NVIDIA H100", 55, 3 * GIB, 80 * GIB)])
    install(monkeypatch, nvml)
    yield nvml
    fake = gpu._collectors.pop(REGISTRY, None)
    if fake is not None:
        REGISTRY.unregister(fake)
    if real is not None:
        gpu._collectors[REGISTRY] = real
        REGISTRY.register(real)


async def test_a_started_gateway_exports_them_on_its_metrics(
    fake_gpu_on_the_default_registry: FakeNvml, start_gateway: StartGateway
) -> None:
    await start_gateway()
    device = {"gpu": "0", "name": "NVIDIA H100"}
    assert REGISTRY.get_sample_value("infergate_gpu_utilization_ratio", device) == 0.55
    assert REGISTRY.get_sample_value("infergate_gpu_memory_used_bytes", device) == 3 * GIB


async def test_a_started_gateway_without_a_gpu_exports_none(start_gateway: StartGateway) -> None:
    nvml = gpu.open_nvml()
    if nvml is not None:
        nvml.nvmlShutdown()
        pytest.skip("this machine has a GPU")
    await start_gateway()
    assert "infergate_gpu" not in generate_latest(REGISTRY).decode()
