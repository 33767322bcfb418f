"""What the gateway serves in place of the Dataset layer when the config says
`dataset.enabled: false`: every Dataset RPC answers UNIMPLEMENTED saying so, and
an app that retrieves from collections answers FAILED_PRECONDITION when it chats.

Apps are checked at chat time, not when saved: an app written while the layer
was on stays as it is, and works again once the layer is turned back on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import grpc

from gateway.apps.retrieval import Passage
from gateway.errors import FailedPrecondition
from gateway.pb import dataset_pb2, dataset_pb2_grpc

DISABLED = "the Dataset layer is disabled in the config (dataset.enabled: false)"


class DisabledDatasetService(dataset_pb2_grpc.DatasetServicer):
    """Every method of infergate.v1.Dataset (set below, from the descriptor, so
    a new RPC is covered too) answers UNIMPLEMENTED with `DISABLED`."""


async def _refuse(self: Any, request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, DISABLED)
    raise AssertionError("unreachable: abort raises")


for _method in dataset_pb2.DESCRIPTOR.services_by_name["Dataset"].methods:
    setattr(DisabledDatasetService, _method.name, _refuse)


class DisabledRetrieval:
    """The apps' Retriever while the Dataset layer is off: an app without
    collections chats as usual; one with collections is refused before anything
    streams. Idempotent, instant, no deadline to keep."""

    async def search(
        self,
        tenant: str,
        collections: Sequence[str],
        query: str,
        k: int,
        score_threshold: float,
        *,
        mode: str = "",
        filter: Mapping[str, Any] | None = None,
        rerank: bool = False,
        rerank_top_n: int = 0,
    ) -> list[Passage]:
        if collections:
            raise FailedPrecondition(
                f"app.retrieval.collections: {DISABLED}; turn it on, or clear the "
                "app's retrieval collections"
            )
        return []
