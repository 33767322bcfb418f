"""A stand-in for `pynvml` (nvidia-ml-py) with the calls gateway/gpu.py makes,
its devices set by the test: injected as sys.modules["pynvml"]."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace


class NVMLError(Exception):
    pass


@dataclass
class Device:
    name: str
    gpu_percent: int
    used: int
    total: int
    broken: bool = False  # its calls raise NVMLError, as for a GPU fallen off the bus


class FakeNvml:
    """The module: `FakeNvml([Device(...)])` (no devices: NVML sees none);
    `driver=False`: nvmlInit fails as without the driver library."""

    NVMLError = NVMLError

    def __init__(self, devices: list[Device], driver: bool = True) -> None:
        self.devices = devices
        self.driver = driver
        self.initialised = 0  # nvmlInit calls not yet matched by nvmlShutdown

    def nvmlInit(self) -> None:
        if not self.driver:
            raise NVMLError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Device:
        return self.devices[index]

    def nvmlDeviceGetName(self, device: Device) -> bytes:
        return device.name.encode()  # bytes, as older releases return

    def nvmlDeviceGetUtilizationRates(self, device: Device) -> SimpleNamespace:
        if device.broken:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(gpu=device.gpu_percent, memory=0)

    def nvmlDeviceGetMemoryInfo(self, device: Device) -> SimpleNamespace:
        if device.broken:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(
            used=device.used, total=device.total, free=device.total - device.used
        )
