"""GPU metrics through NVML (`nvidia-ml-py`): each CUDA device's utilisation
and memory, and the embedder's batch occupancy, while a CUDA device is present.

Without one (no `pynvml` module, no driver library, or no device) nothing is
registered: no GPU series, no error, one DEBUG line saying why. The values are
read when Prometheus scrapes (NVML is thread-safe and each call is a few
microseconds), so nothing polls in the background. Batch occupancy is
`rate(infergate_embedder_batch_rows_total) / rate(infergate_embedder_batches_total)
/ infergate_embedder_batch_capacity_rows`. With `serve --workers N` the
supervisor serves only the workers' summed metric files, so these series,
like every scrape-time collector, come from single-process gateways.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import weakref
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("infergate.gpu")
_DEVICE = ["gpu", "name"]


@runtime_checkable
class Batched(Protocol):
    """What is read of an embedder: indexer.onnx_embedder.OnnxEmbedder's counters."""

    inference_calls: int
    inference_rows: int

    @property
    def max_batch_size(self) -> int: ...


def open_nvml() -> ModuleType | None:
    """`pynvml`, initialised, when it sees at least one device; else None."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        log.debug("no GPU metrics: nvidia-ml-py is not installed")
        return None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        log.debug("no GPU metrics: %s", exc)
        return None
    try:
        if nvml.nvmlDeviceGetCount() > 0:
            return nvml
        log.debug("no GPU metrics: NVML sees no device")
    except nvml.NVMLError as exc:
        log.debug("no GPU metrics: %s", exc)
    nvml.nvmlShutdown()
    return None


class GpuMetrics(Collector):
    """Device gauges from NVML, plus the batch counters of `embedders`."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self.embedders: list[Batched] = []

    def collect(self) -> Iterable[Metric]:
        yield from self._devices()
        yield from self._batches()

    def _devices(self) -> Iterator[Metric]:
        nvml = self._nvml
        utilization = GaugeMetricFamily(
            "infergate_gpu_utilization_ratio",
            "Share of the last sample period in which a kernel ran on the device",
            labels=_DEVICE,
        )
        used = GaugeMetricFamily(
            "infergate_gpu_memory_used_bytes", "Device memory allocated", labels=_DEVICE
        )
        total = GaugeMetricFamily(
            "infergate_gpu_memory_total_bytes", "Device memory installed", labels=_DEVICE
        )
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            log.warning("NVML: cannot count the devices: %s", exc)
            count = 0
        for index in range(count):
            try:  # a device can fail alone (fallen off the bus): the others still report
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                labels = [str(index), _text(nvml.nvmlDeviceGetName(handle))]
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:
                log.warning("NVML: device %d: %s", index, exc)
                continue
            utilization.add_metric(labels, rates.gpu / 100)
            used.add_metric(labels, memory.used)
            total.add_metric(labels, memory.total)
        yield from (utilization, used, total)

    def _batches(self) -> Iterator[Metric]:
        embedders = tuple(self.embedders)  # the event loop may change the list meanwhile
        batches = CounterMetricFamily(
            "infergate_embedder_batches", "Embedding model calls (batches) run"
        )
        rows = CounterMetricFamily(
            "infergate_embedder_batch_rows", "Windows embedded, summed over the batches"
        )
        capacity = GaugeMetricFamily(
            "infergate_embedder_batch_capacity_rows", "Windows one model call may take"
        )
        if embedders:
            batches.add_metric([], sum(e.inference_calls for e in embedders))
            rows.add_metric([], sum(e.inference_rows for e in embedders))
            capacity.add_metric([], max(e.max_batch_size for e in embedders))
        yield from (batches, rows, capacity)


# One collector per registry, shared by the gateways a process starts (tests start
# several): a second one would register the same names twice.
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, GpuMetrics] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def exported(embedder: Any, registry: CollectorRegistry = REGISTRY) -> Iterator[bool]:
    """GPU metrics on `registry` when NVML sees a device, with `embedder`'s
    batches (when it counts them) until exit; yields whether they are exported.
    Once registered, the device gauges stay for the life of the process."""
    collector = _collectors.get(registry)
    if collector is None:
        nvml = open_nvml()
        if nvml is None:
            yield False
            return
        collector = _collectors[registry] = GpuMetrics(nvml)
        registry.register(collector)
    counted = isinstance(embedder, Batched)
    if counted:
        collector.embedders.append(embedder)
    try:
        yield True
    finally:
        if counted:
            collector.embedders.remove(embedder)


def _text(value: str | bytes) -> str:
    """Device names are bytes in older nvidia-ml-py releases."""
    return value.decode() if isinstance(value, bytes) else value
