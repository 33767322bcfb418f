"""Retrieval-augmented chat: retrieve -> render the system prompt -> stream
from the Router -> remember the turn.

Events come in this order: one `Cited` per passage (best first: by the
cross-encoder's score when the app reranks), `Delta`s as the model streams,
and a final `Done` with the finish reason and the upstream's usage. The
conversation's new turns are stored before `Done` is sent, so a client
that saw `Done` can continue the conversation at once; a stream that fails
or is cancelled stores nothing (the conversation stays as it was). The
deadline is the caller's, passed to the Router; retrieval is bounded by it
only through cancellation.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway import identity
from gateway.apps import calls, prompt
from gateway.apps.model import App, Turn
from gateway.apps.retrieval import Passage, Retriever
from gateway.apps.store.apps import AppLookup
from gateway.apps.store.turns import Conversations
from gateway.errors import InvalidArgument
from router.router import Router
from router.types import Message, Params, Request, Usage


@dataclass(frozen=True, slots=True)
class Cited:
    passage: Passage


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str
    usage: Usage
    deployment: str = ""  # the deployment that answered


Event = Cited | Delta | Done


class ChatEngine:
    def __init__(
        self,
        apps: AppLookup,
        turns: Conversations,
        router: Callable[[], Router],
        retriever: Retriever,
        params: Callable[[App], Params],
    ) -> None:
        self._apps = apps
        self._turns = turns
        self._router = router
        self.retriever = retriever  # swappable: the Dataset layer may come up later
        self._params = params

    async def start(
        self, app_id: str, conversation: str, query: str, inputs: Mapping[str, Any]
    ) -> tuple[str, App, list[Turn]]:
        """Check the request and load what the chat needs: (conversation id,
        app, history). Raises before anything streams."""
        if not query.strip():
            raise InvalidArgument("query", "must not be empty")
        tenant = identity.current().tenant
        app = await self._apps.get(tenant, app_id)
        if conversation:
            history = await self._turns.history(tenant, app_id, conversation)
        else:
            conversation, history = uuid.uuid4().hex, []
        return conversation, app, history

    async def chat(
        self,
        app: App,
        conversation: str,
        history: list[Turn],
        query: str,
        inputs: Mapping[str, Any],
        deadline: float | None,
    ) -> AsyncGenerator[Event, None]:
        tenant = identity.current().tenant
        r = app.retrieval
        passages = (
            await self.retriever.search(
                tenant,
                r.collections,
                query,
                r.k,
                r.score_threshold,
                rerank=r.rerank,
                rerank_top_n=r.rerank_top_n,
            )
            if r.collections
            else []
        )
        for passage in passages:
            yield Cited(passage)
        system = prompt.render(app.prompt_template, passages, query, inputs)
        messages = (
            Message("system", system),
            *(Message(t.role, t.content) for t in history),
            Message("user", query),
        )
        request = Request(
            app.model, messages, self._params(app), request_id="chat-" + secrets.token_hex(12)
        )
        call = calls.current_call()
        if call is not None:
            call.app, call.model = app.id, app.model
        stream = self._router().stream(request, deadline)
        text: list[str] = []
        finish, usage = "", Usage()
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                if call is not None and stream.deployment:
                    call.deployment = stream.deployment
                if chunk.delta:
                    text.append(chunk.delta)
                    yield Delta(chunk.delta)
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = chunk.usage
        await self._turns.append(
            tenant, app.id, conversation, [Turn("user", query), Turn("assistant", "".join(text))]
        )
        yield Done(finish, usage, stream.deployment or "")
