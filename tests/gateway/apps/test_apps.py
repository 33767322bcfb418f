"""Apps over real gRPC: CRUD with save-time checks, RAG chat and completion with
citations, usage and history, conversations, tenant isolation, usage totals
and the audit trail of app changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from gateway.apps.retrieval import Passage
from gateway.errors import NotFound
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc, router_pb2, router_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway, chat
from tests.gateway.apps.test_auth import admin, bearer, new_key, secure_top

FACTS = {
    "acme": {
        "collections/handbook": [
            ("leave.md", "leave.md#0", "Employees get 30 days of paid leave per year."),
            ("office.md", "office.md#0", "The office opens at 8 and closes at 18."),
            ("office.md", "office.md#1", "Parking is free for visitors on level -2."),
        ]
    },
    "beta": {"collections/secret": [("s.md", "s.md#0", "Beta launches on Mars in 2031.")]},
}


class KeywordRetriever:
    """A small Retriever over FACTS: word-overlap scores, scoped by tenant like
    the Dataset layer (another tenant's collection is NotFound)."""

    async def search(
        self, tenant: str, collections: Sequence[str], query: str, k: int, score_threshold: float,
        *, mode: str = "", filter: Mapping[str, Any] | None = None,
        rerank: bool = False, rerank_top_n: int = 0,
    ) -> list[Passage]:  # fmt: skip
        words = {w.strip("?.,").lower() for w in query.split()}
        found = []
        for name in collections:
            if name not in FACTS.get(tenant, {}):
                raise NotFound(f"collection {name!r}")
            for doc, chunk, text in FACTS[tenant][name]:
                overlap = len(words & {w.strip(".,").lower() for w in text.split()})
                score = overlap / len(words)
                if overlap and score >= score_threshold:
                    found.append(Passage(name, doc, chunk, score, text))
        return sorted(found, key=lambda p: -p.score)[:k]


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    gw = await start_gateway(top=secure_top(tmp_path))
    assert gw.apps is not None
    gw.apps.chat.retriever = KeywordRetriever()
    return gw


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> app_pb2_grpc.AppStub:
    return app_pb2_grpc.AppStub(channel)


@pytest.fixture
async def acme(channel: grpc.aio.Channel, gateway: Gateway) -> tuple[tuple[str, str], ...]:
    return bearer(await new_key(channel, gateway, "acme", "developer"))


@pytest.fixture
async def beta(channel: grpc.aio.Channel, gateway: Gateway) -> tuple[tuple[str, str], ...]:
    return bearer(await new_key(channel, gateway, "beta", "developer"))


def spec(**fields: object) -> pb.AppSpec:
    base: dict[str, object] = {
        "model": "chat",
        "prompt_template": "Context:\n{% for c in chunks %}- {{ c.text }}\n{% endfor %}"
        "Be {{ inputs.tone | default('brief') }}.",
        "retrieval": pb.Retrieval(collections=["collections/handbook"], k=2),
    }
    base.update(fields)
    return pb.AppSpec(**base)  # type: ignore[arg-type]


async def create(
    stub: app_pb2_grpc.AppStub, md: object, app_id: str = "helpdesk", **f: object
) -> pb.AppSpec:
    return await stub.CreateApp(pb.CreateAppRequest(app_id=app_id, app=spec(**f)), metadata=md)


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:  # type: ignore[attr-defined]
                pass
        else:
            await result  # type: ignore[misc]
    return exc.value


async def test_crud(stub: app_pb2_grpc.AppStub, acme: object) -> None:
    created = await create(stub, acme, display_name="Helpdesk")
    assert (created.name, created.display_name, created.retrieval.k) == (
        "apps/helpdesk",
        "Helpdesk",
        2,
    )
    assert created.create_time.seconds > 0
    got = await stub.GetApp(pb.GetAppRequest(name="apps/helpdesk"), metadata=acme)
    assert got == created
    await create(stub, acme, "another")
    listed = await stub.ListApps(pb.ListAppsRequest(page_size=1), metadata=acme)
    assert [a.name for a in listed.apps] == ["apps/another"] and listed.next_page_token
    rest = await stub.ListApps(pb.ListAppsRequest(page_token=listed.next_page_token), metadata=acme)
    assert [a.name for a in rest.apps] == ["apps/helpdesk"] and not rest.next_page_token
    updated = await stub.UpdateApp(
        pb.UpdateAppRequest(app=pb.AppSpec(name="apps/helpdesk", display_name="Desk"),
                            update_mask=["display_name"]),
        metadata=acme,
    )  # fmt: skip
    assert (updated.display_name, updated.model, updated.retrieval.k) == ("Desk", "chat", 2)
    assert (await failure(create(stub, acme))).code() is grpc.StatusCode.ALREADY_EXISTS
    await stub.DeleteApp(pb.DeleteAppRequest(name="apps/helpdesk"), metadata=acme)
    gone = await failure(stub.GetApp(pb.GetAppRequest(name="apps/helpdesk"), metadata=acme))
    assert gone.code() is grpc.StatusCode.NOT_FOUND


async def test_rerank_settings_are_stored_and_returned(
    stub: app_pb2_grpc.AppStub, acme: object
) -> None:
    plain = await create(stub, acme, "plain")
    assert (plain.retrieval.rerank, plain.retrieval.rerank_top_n) == (False, 0)
    reranking = pb.Retrieval(collections=["collections/handbook"], k=2, rerank=True,
                             rerank_top_n=1000)  # fmt: skip
    created = await create(stub, acme, retrieval=reranking)
    assert created.retrieval == reranking
    got = await stub.GetApp(pb.GetAppRequest(name="apps/helpdesk"), metadata=acme)
    assert got.retrieval == reranking
    renamed = await stub.UpdateApp(
        pb.UpdateAppRequest(app=pb.AppSpec(name="apps/helpdesk", display_name="Desk"),
                            update_mask=["display_name"]),
        metadata=acme,
    )  # fmt: skip
    assert renamed.retrieval == reranking  # a mask without retrieval keeps it
    fewer = pb.Retrieval(collections=["collections/handbook"], k=2, rerank=True, rerank_top_n=0)
    updated = await stub.UpdateApp(
        pb.UpdateAppRequest(app=pb.AppSpec(name="apps/helpdesk", retrieval=fewer),
                            update_mask=["retrieval"]),
        metadata=acme,
    )  # fmt: skip
    assert (updated.retrieval.rerank, updated.retrieval.rerank_top_n) == (True, 0)
    listed = await stub.ListApps(pb.ListAppsRequest(), metadata=acme)
    assert [(a.name, a.retrieval.rerank) for a in listed.apps] == [
        ("apps/helpdesk", True), ("apps/plain", False),
    ]  # fmt: skip
    off = await stub.UpdateApp(pb.UpdateAppRequest(app=spec(name="apps/helpdesk")), metadata=acme)
    assert (off.retrieval.rerank, off.retrieval.rerank_top_n) == (False, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt_template": "{% for c in chunks %}{{ c.text }"}, "app.prompt_template: line 1"),
        ({"prompt_template": "{{ chunks.__class__.__mro__ }}"}, "app.prompt_template"),
        ({"model": "no-such-model"}, "app.model"),
        ({"retrieval": pb.Retrieval(collections=["handbook"])}, "app.retrieval.collections[0]"),
        ({"retrieval": pb.Retrieval(k=500)}, "app.retrieval.k"),
        ({"retrieval": pb.Retrieval(rerank=True, rerank_top_n=-1)}, "app.retrieval.rerank_top_n"),
        ({"retrieval": pb.Retrieval(rerank_top_n=1001)}, "app.retrieval.rerank_top_n"),
        ({"params": router_pb2.GenerationParams(temperature=3)}, "app.params.temperature"),
    ],
)
async def test_bad_apps_are_refused_at_save_time(
    stub: app_pb2_grpc.AppStub, acme: object, fields: dict[str, object], field: str
) -> None:
    error = await failure(create(stub, acme, **fields))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(field), error.details()


async def test_bad_app_ids_are_refused(stub: app_pb2_grpc.AppStub, acme: object) -> None:
    error = await failure(create(stub, acme, "Not An Id"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "app_id" in (error.details() or "")


async def test_chat_streams_citations_tokens_and_usage(
    stub: app_pb2_grpc.AppStub, acme: object
) -> None:
    await create(stub, acme)
    query = "how many days of paid leave do employees get"
    events = [
        e async for e in stub.Chat(pb.ChatRequest(app="apps/helpdesk", query=query), metadata=acme)
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "citation" and kinds[-1] == "done" and "delta" in kinds
    assert kinds.index("delta") > max(i for i, k in enumerate(kinds) if k == "citation")
    top = events[0].citation
    assert (top.collection, top.document_id, top.chunk_id) == (
        "collections/handbook",
        "leave.md",
        "leave.md#0",
    )
    assert "30 days" in top.text and top.score > 0
    conversation = events[0].conversation_id
    assert conversation and all(e.conversation_id == conversation for e in events)
    answer = "".join(e.delta for e in events)
    assert answer.split() == (query.split() * 2)[:8]  # the mock echoes the question (8 tokens)
    done = events[-1].done
    assert done.finish_reason == "stop" and done.usage.output_tokens == 8
    assert done.usage.input_tokens > 0 and done.deployment == "chat-a"


async def test_a_conversation_keeps_its_history(
    stub: app_pb2_grpc.AppStub, acme: object, beta: object, gateway: Gateway
) -> None:
    await create(stub, acme)
    first = await stub.Completion(
        pb.ChatRequest(app="apps/helpdesk", query="when does the office open"), metadata=acme
    )
    second = await stub.Completion(
        pb.ChatRequest(
            app="apps/helpdesk", query="and parking", conversation_id=first.conversation_id
        ),
        metadata=acme,
    )
    assert second.conversation_id == first.conversation_id
    assert gateway.apps is not None
    history = await gateway.apps.store.turns.history("acme", "helpdesk", first.conversation_id)
    assert [(t.role, t.content) for t in history] == [
        ("user", "when does the office open"), ("assistant", first.text),
        ("user", "and parking"), ("assistant", second.text),
    ]  # fmt: skip
    # The model saw the history: its input grew by the first turn's tokens.
    assert second.usage.input_tokens > first.usage.input_tokens
    unknown = await failure(
        stub.Completion(
            pb.ChatRequest(app="apps/helpdesk", query="x", conversation_id="nope"), metadata=acme
        )
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND


async def test_completion_cites_the_chunk_that_holds_the_fact(
    stub: app_pb2_grpc.AppStub, acme: object
) -> None:
    await create(stub, acme, retrieval=pb.Retrieval(collections=["collections/handbook"], k=1))
    kind = struct_pb2.Struct(fields={"tone": struct_pb2.Value(string_value="kind")})
    reply = await stub.Completion(
        pb.ChatRequest(app="apps/helpdesk", query="is parking free for visitors", inputs=kind),
        metadata=acme,
    )
    assert [c.chunk_id for c in reply.citations] == ["office.md#1"]
    assert "Parking is free" in reply.citations[0].text
    assert reply.text and reply.finish_reason == "stop" and reply.usage.output_tokens == 8
    assert reply.deployment == "chat-a"


async def test_tenants_cannot_see_each_others_apps_or_conversations(
    stub: app_pb2_grpc.AppStub, acme: object, beta: object
) -> None:
    await create(stub, acme)
    mine = await stub.Completion(
        pb.ChatRequest(app="apps/helpdesk", query="leave days"), metadata=acme
    )
    missing = await failure(stub.GetApp(pb.GetAppRequest(name="apps/nope"), metadata=beta))
    attempts = [
        stub.GetApp(pb.GetAppRequest(name="apps/helpdesk"), metadata=beta),
        stub.UpdateApp(pb.UpdateAppRequest(app=spec(name="apps/helpdesk")), metadata=beta),
        stub.DeleteApp(pb.DeleteAppRequest(name="apps/helpdesk"), metadata=beta),
        stub.Chat(pb.ChatRequest(app="apps/helpdesk", query="leave days"), metadata=beta),
        stub.Completion(pb.ChatRequest(app="apps/helpdesk", query="leave days"), metadata=beta),
    ]
    for call in attempts:
        error = await failure(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND
        # Word for word what a missing app answers: existence does not leak.
        assert error.details() == (missing.details() or "").replace("nope", "helpdesk")
    assert not (await stub.ListApps(pb.ListAppsRequest(), metadata=beta)).apps
    # beta's own app of the same name cannot continue acme's conversation...
    await create(stub, beta, retrieval=pb.Retrieval(collections=["collections/secret"]))
    theirs = pb.ChatRequest(app="apps/helpdesk", query="x", conversation_id=mine.conversation_id)
    stolen = await failure(stub.Completion(theirs, metadata=beta))
    assert stolen.code() is grpc.StatusCode.NOT_FOUND
    # ...and acme's app cannot retrieve from beta's collection.
    secret = pb.Retrieval(collections=["collections/secret"])
    await stub.UpdateApp(
        pb.UpdateAppRequest(app=spec(name="apps/helpdesk", retrieval=secret)), metadata=acme
    )
    leak = await failure(
        stub.Completion(pb.ChatRequest(app="apps/helpdesk", query="mars"), metadata=acme)
    )
    assert leak.code() is grpc.StatusCode.NOT_FOUND
    assert (
        await stub.GetApp(pb.GetAppRequest(name="apps/helpdesk"), metadata=beta)
    ).retrieval.collections == ["collections/secret"]


async def test_usage_totals_match_the_mock_token_counts_exactly(
    channel: grpc.aio.Channel,
    stub: app_pb2_grpc.AppStub,
    acme: object,
    beta: object,
    gateway: Gateway,
) -> None:
    router = router_pb2_grpc.RouterStub(channel)
    expected: dict[tuple[str, str], list[int]] = {}  # (tenant, model) -> [requests, in, out]

    def add(tenant: str, model: str, usage: router_pb2.Usage) -> None:
        row = expected.setdefault((tenant, model), [0, 0, 0])
        row[0] += 1
        row[1] += usage.input_tokens
        row[2] += usage.output_tokens

    for i in range(3):
        reply = await router.Generate(chat("chat", "one two " * (i + 1)), metadata=acme)
        add("acme", "chat", reply.usage)
    async for chunk in router.GenerateStream(chat("paced", "a b c d"), metadata=beta):
        last = chunk
    add("beta", "paced", last.usage)
    await create(stub, acme)
    reply = await stub.Completion(
        pb.ChatRequest(app="apps/helpdesk", query="leave days"), metadata=acme
    )
    add("acme", "chat", reply.usage)
    embedded = await router.Embed(
        router_pb2.EmbedRequest(model="embed", inputs=["x y"]), metadata=beta
    )
    add("beta", "embed", embedded.usage)
    ranked = await router.Rerank(  # metered like Embed: its tokens are recorded
        router_pb2.RerankRequest(model="embed", query="leave days", documents=["leave", "x"]),
        metadata=beta,
    )
    assert ranked.usage.input_tokens == 2 * 2 + 2  # the mock: query words per document + docs
    add("beta", "embed", ranked.usage)
    assert gateway.apps is not None and gateway.apps.recorder is not None
    await gateway.apps.recorder.flush()
    result = await stub.QueryUsage(
        pb.QueryUsageRequest(group_by=["tenant", "model"]), metadata=admin(gateway)
    )
    got = {(r.group["tenant"], r.group["model"]): [r.requests, r.input_tokens, r.output_tokens]
           for r in result.rows}  # fmt: skip
    assert got == expected
    assert all(r.errors == 0 for r in result.rows)
    # A developer sees only its own tenant; the app column names the app.
    own = await stub.QueryUsage(pb.QueryUsageRequest(group_by=["tenant", "app"]), metadata=acme)
    assert {(r.group["tenant"], r.group["app"], r.requests) for r in own.rows} == {
        ("acme", "", 3), ("acme", "helpdesk", 1),
    }  # fmt: skip


async def test_app_changes_are_audited_with_the_acting_key(
    stub: app_pb2_grpc.AppStub, acme: object, gateway: Gateway
) -> None:
    await create(stub, acme)
    await stub.DeleteApp(pb.DeleteAppRequest(name="apps/helpdesk"), metadata=acme)
    page = await stub.ListAuditEvents(
        pb.ListAuditEventsRequest(resource="tenants/acme/apps/helpdesk"), metadata=admin(gateway)
    )
    assert [e.action for e in page.events] == ["CreateApp", "DeleteApp"]
    assert page.events[0].actor.startswith("tenants/acme/keys/")
    assert page.events[0].after["model"] == "chat" and not page.events[1].HasField("after")
    assert page.events[1].prev_hash == page.events[0].hash


async def test_a_chat_that_fails_mid_stream_ends_with_an_error_and_stores_nothing(
    stub: app_pb2_grpc.AppStub, acme: object, gateway: Gateway
) -> None:
    await create(stub, acme, model="cut")  # the mock stream breaks after 3 tokens
    events: list[pb.ChatEvent] = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for event in stub.Chat(
            pb.ChatRequest(app="apps/helpdesk", query="a b c d e"), metadata=acme
        ):
            events.append(event)
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len([e for e in events if e.HasField("delta")]) == 3
    assert not any(e.HasField("done") for e in events)
    assert gateway.apps is not None
    with pytest.raises(NotFound):  # the conversation was never stored
        await gateway.apps.store.turns.history("acme", "helpdesk", events[0].conversation_id)
