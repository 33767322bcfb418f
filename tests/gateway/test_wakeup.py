"""server.max_cpu_wakeup_us (gateway/wakeup.py): the PM QoS request is filed
while serving and dropped after, or the gateway says why it could not and
serves anyway."""

from __future__ import annotations

import logging
import os
import struct
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway import wakeup
from gateway.config import ServerConfig


def _open_fds_to(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_unset_asks_nothing(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    with wakeup.bounded(None, device) as held:
        assert held is False
    assert not device.exists()


def test_the_request_is_written_as_the_kernel_reads_it_and_held_while_inside(
    tmp_path: Path,
) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    with wakeup.bounded(25, device) as held:
        assert held is True
        assert device.read_bytes() == (25).to_bytes(4, sys.byteorder)  # an s32, native order
        assert _open_fds_to(device) == 1  # the request lives as long as its file
    assert _open_fds_to(device) == 0


def test_a_device_that_refuses_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "absent" / "cpu_dma_latency"
    with caplog.at_level(logging.WARNING, "infergate"), wakeup.bounded(0, missing) as held:
        assert held is False
    assert "server.max_cpu_wakeup_us" in caplog.text and str(missing) in caplog.text


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full to refuse a write")
def test_a_refused_write_is_a_warning_too(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, "infergate"),
        wakeup.bounded(0, Path("/dev/full")) as held,
    ):
        assert held is False  # ENOSPC
    assert "/dev/full refused the request" in caplog.text
    assert _open_fds_to(Path("/dev/full")) == 0


def test_the_bound_is_a_non_negative_32_bit_integer() -> None:
    assert ServerConfig(max_cpu_wakeup_us=0).max_cpu_wakeup_us == 0
    for bad in (-1, 2**31):
        with pytest.raises(ValidationError):
            ServerConfig(max_cpu_wakeup_us=bad)


@pytest.mark.skipif(
    not os.access(wakeup.DEVICE, os.R_OK | os.W_OK), reason="the PM QoS device needs root"
)
def test_the_kernel_takes_the_request_and_drops_it_after() -> None:
    def current() -> int:  # reading the device gives the CPU latency target in force
        value: int = struct.unpack("=i", wakeup.DEVICE.read_bytes()[:4])[0]
        return value

    before = current()
    with wakeup.bounded(7) as held:
        assert held is True
        assert current() == min(7, before)
    assert current() == before
