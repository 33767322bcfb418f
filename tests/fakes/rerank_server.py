"""A fake Cohere/Jina-style rerank API: POST {path} (default /v1/rerank) in
the shape of Cohere's reference, scoring each document by the share of the
query's words it holds, driven by a `Script` (status, retry_after, delay_s,
error_message).

    fake = await RerankFake().start()   # fake.base_url for the deployment
"""

from __future__ import annotations

from typing import Any

from tests.fakes.http import HttpRequest, HttpServer, Reply, received
from tests.fakes.script import Observed, Script


class RerankFake:
    def __init__(self, script: Script | None = None, path: str = "/v1/rerank") -> None:
        self.script = script or Script()
        self.path = path
        self.observed = Observed()
        self.server = HttpServer(self.handle, self.observed)
        self.answer: dict[str, Any] | None = None  # sent instead of the scored one when set

    async def start(self) -> RerankFake:
        await self.server.start()
        return self

    async def close(self) -> None:
        await self.server.close()

    @property
    def base_url(self) -> str:
        return self.server.url

    async def handle(self, request: HttpRequest, reply: Reply) -> None:
        script = self.script
        body = await received(request, script, self.observed)
        if script.status != 200:
            headers = {"retry-after": script.retry_after} if script.retry_after else {}
            message = script.error_message or f"fake error {script.status}"
            reply.json(script.status, {"message": message}, headers)
        elif request.method != "POST" or request.path != self.path:
            reply.json(404, {"message": f"no route {request.path}"})
        else:
            reply.json(200, self.answer or reranked(body))


def reranked(body: dict[str, Any]) -> dict[str, Any]:
    words = set(body["query"].lower().split())
    scores = [len(words & set(d.lower().split())) / len(words) for d in body["documents"]]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.get("top_n")]
    return {
        "id": "fake-rerank",
        "results": [{"index": i, "relevance_score": scores[i]} for i in order],
        "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}},
    }
