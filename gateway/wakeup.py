"""How fast an idle CPU wakes: a bound the serving process can ask the kernel for.

Between an upstream's tokens the gateway's CPU idles, and the first code to
run after the idle pays for the wake. On the 2-core VM of bench/RESULTS.md
(guest idle state `haltpoll`, no halt polling) the same path to the first
byte took 816 µs after a 5 ms idle against 326 µs back to back, and this
bound took 0.18-0.29 ms off what the gateway adds to the first token and
to a unary call (issue 15).
`server.max_cpu_wakeup_us` files a PM QoS request (`/dev/cpu_dma_latency`,
the kernel's "CPU latency" QoS, which tuned's latency-performance profile
also sets) for as long as the process serves: the CPUs then use only idle
states that wake within that many µs; 0 keeps them polling. The cost is
power, and on a VM a vCPU that never halts keeps its host CPU busy. Opening
the device needs root (or a node set up to allow it); without it each
serving process says so once and serves as it would have.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("infergate")
DEVICE = Path("/dev/cpu_dma_latency")


@contextlib.contextmanager
def bounded(max_us: int | None, device: Path = DEVICE) -> Iterator[bool]:
    """Hold the request while inside; True if the kernel has it. None asks nothing."""
    if max_us is None:
        yield False
        return
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        _refused(device, exc)
        yield False
        return
    try:
        try:
            os.write(fd, struct.pack("=i", max_us))  # a native 32-bit integer, as the kernel reads
        except OSError as exc:
            _refused(device, exc)
            yield False
            return
        log.info("idle CPUs wake within %d µs while serving (%s)", max_us, device)
        yield True
    finally:
        os.close(fd)  # the kernel drops the request with its file


def _refused(device: Path, exc: OSError) -> None:
    log.warning(
        "server.max_cpu_wakeup_us: %s refused the request (%s): idle CPUs wake as the "
        "kernel chooses", device, exc.strerror or exc,
    )  # fmt: skip
