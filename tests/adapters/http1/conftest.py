"""Every test here runs on both event loops: the gateway serves on uvloop,
whose transports differ from asyncio's (they are not asyncio.Transport
subclasses, for one), and the test suite otherwise runs on asyncio's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
