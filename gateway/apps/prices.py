"""Prices set through the API (SetPrice, `infergate budgets prices set`),
applied over the config's: the store holds them; every replica loads them
into its live router snapshot now and every `apps.budgets.refresh_s` (the
budgets' interval), and at once after a change made on it. A snapshot built
by a reload keeps its predecessor's (router/router.py), so a reload never
drops them for a refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from router.pricing import Price
from router.router import Router

log = logging.getLogger("infergate.spend")


class PriceSource(Protocol):
    async def list(self) -> Mapping[str, Price]:
        """Deployment name -> price, every one set through the API."""
        ...


class SetPrices:
    def __init__(self, source: PriceSource, router: Callable[[], Router]) -> None:
        self._source = source
        self._router = router

    async def refresh(self) -> None:
        """Load the stored prices into the live snapshot. Raises what the store
        raises (the snapshot keeps the prices it had)."""
        found = await self._source.list()
        self._router().use_prices(found)

    async def refresh_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:  # a store hiccup: the last prices keep applying
                log.exception("refreshing the prices set through the API failed")
