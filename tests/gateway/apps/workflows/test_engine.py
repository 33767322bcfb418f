"""The workflow engine end to end over mock models: scheduling and branches,
concurrency, streaming, failures, retries, timeouts, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import pytest

from gateway.apps.retrieval import Passage
from gateway.apps.workflows import engine
from gateway.apps.workflows.engine import Run, check_inputs
from gateway.apps.workflows.events import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
    TextDelta,
)
from gateway.apps.workflows.nodes.base import Services
from gateway.apps.workflows.validate import load
from gateway.errors import InvalidArgument
from router.errors import ErrorKind, ProviderError
from router.router import Router
from router.types import Chunk, Request, Usage
from tests.gateway.apps.workflows.helpers import run, services

# --- helpers ----------------------------------------------------------------------------


def finished(events: Sequence[Event], node: str) -> NodeFinished:
    (found,) = [e for e in events if isinstance(e, NodeFinished) and e.node == node]
    return found


def index(events: Sequence[Event], kind: type, node: str) -> int:
    (i,) = [
        i for i, e in enumerate(events) if isinstance(e, kind) and getattr(e, "node", "") == node
    ]
    return i


def last(events: Sequence[Event]) -> RunFinished:
    end = events[-1]
    assert isinstance(end, RunFinished)
    return end


def deltas(events: Sequence[Event], node: str) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta) and e.node == node]


def assert_well_ordered(events: Sequence[Event]) -> None:
    """RunStarted first, RunFinished last (once each); per node one NodeStarted
    before its one NodeFinished (none for a skipped node); deltas in between.
    A failed run cancels the nodes still running: they finish "cancelled"."""
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, RunStarted) for e in events) == 1
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    started: dict[str, int] = {}
    done: dict[str, int] = {}
    for i, e in enumerate(events):
        if isinstance(e, NodeStarted):
            assert e.node not in started and e.node not in done, e
            started[e.node] = i
        elif isinstance(e, NodeFinished):
            assert e.node not in done, e
            if e.status == SKIPPED:
                assert e.node not in started, e
            else:
                assert e.node in started, e
            done[e.node] = i
        elif isinstance(e, TextDelta):
            assert e.node in started and e.node not in done, e
    end = events[-1]
    if end.status == SUCCEEDED:
        assert set(started) <= set(done)


def provider(svc: Services, alias: str) -> Any:
    return svc.router().model(alias).deployments[0].provider


def workflow_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("workflow:")]


def llm(node_id: str, model: str, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id, "type": "llm", **extra,
        "config": {"model": model, "messages": [{"role": "user", "content": content}]},
    }  # fmt: skip


class ScoredRetriever:
    """One passage with a fixed score."""

    def __init__(self, score: float) -> None:
        self.score = score

    async def search(
        self, tenant: str, collections: Sequence[str], query: str, k: int, score_threshold: float,
        *, mode: str = "", filter: Mapping[str, Any] | None = None,
        rerank: bool = False, rerank_top_n: int = 0,
    ) -> list[Passage]:  # fmt: skip
        return [
            Passage(
                "collections/handbook",
                "leave.md",
                "leave.md#0",
                self.score,
                "30 days of paid leave.",
            )
        ]


class FakeStream:
    def __init__(self, owner: FakeRouter, behaviour: str) -> None:
        self.owner, self.behaviour, self.deployment = owner, behaviour, ""

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        owner = self.owner
        owner.active += 1
        try:
            if self.behaviour == "fail":
                raise ProviderError(ErrorKind.UPSTREAM_5XX, f"fake failure {owner.calls}")
            self.deployment = "fake-a"
            for i, word in enumerate(
                ["one", "two", "three"] * (20 if self.behaviour == "hang" else 1)
            ):
                if self.behaviour == "hang":
                    await asyncio.sleep(0.05)
                yield Chunk(delta=word if i == 0 else " " + word)
            yield Chunk(finish_reason="stop", usage=Usage(2, 3))
        except (asyncio.CancelledError, GeneratorExit):
            owner.cancelled = True
            raise
        finally:
            owner.active -= 1


class FakeRouter:
    """Plays `script` (one behaviour per call: ok, fail, hang), then ok."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.calls = 0
        self.active = 0
        self.cancelled = False
        self.requests: list[Request] = []

    def stream(self, request: Request, deadline: float | None = None) -> FakeStream:
        self.calls += 1
        self.requests.append(request)
        return FakeStream(self, self.script.pop(0) if self.script else "ok")


def fake_services(fake: FakeRouter) -> Services:
    return services(cast(Router, fake))


# --- RAG with an if_else on the retrieval score -----------------------------------------

RAG: dict[str, Any] = {
    "inputs": {"question": {"type": "string", "required": True}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "search", "type": "retrieval",
         "config": {"collections": ["handbook"], "query": "{{ start.question }}", "k": 2}},
        {"id": "check", "type": "if_else", "config": {"cases": [{
            "label": "confident",
            "conditions": [{"variable": "{{ search.top_score }}", "operator": "ge", "value": 0.5}],
        }]}},
        {"id": "reply", "type": "llm", "config": {"model": "chat", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "{{ search.chunks[0].text }} Q: {{ start.question }}"},
        ]}},
        {"id": "say", "type": "answer", "config": {"text": "A: {{ reply.text }}"}},
        {"id": "sorry", "type": "answer",
         "config": {"text": "No good source (best {{ search.top_score }})."}},
    ],
    "edges": [
        {"from": "start", "to": "search"},
        {"from": "search", "to": "check"},
        {"from": "check", "to": "reply", "branch": "confident"},
        {"from": "reply", "to": "say"},
        {"from": "check", "to": "sorry", "branch": "else"},
    ],
    "outputs": {"answer": "{{ say.text }}{{ sorry.text }}", "score": "{{ search.top_score }}"},
}  # fmt: skip
# the echo model repeats the user message's words: 8 tokens of
# "30 days of paid leave. Q: how many days" (9 words; 2 more in the system message)
REPLY = "30 days of paid leave. Q: how many"


async def test_rag_confident_branch_runs_llm_and_answer() -> None:
    svc = services(retriever=ScoredRetriever(0.82))
    events = await run(RAG, {"question": "how many days"}, svc)
    assert_well_ordered(events)
    assert events[0] == RunStarted("r1")
    statuses = {e.node: e.status for e in events if isinstance(e, NodeFinished)}
    assert statuses == {
        "start": SUCCEEDED, "search": SUCCEEDED, "check": SUCCEEDED,
        "reply": SUCCEEDED, "say": SUCCEEDED, "sorry": SKIPPED,
    }  # fmt: skip
    assert [e.node for e in events if isinstance(e, NodeStarted)] == [
        "start", "search", "check", "reply", "say",
    ]  # fmt: skip
    check = finished(events, "check")
    assert (check.branch, check.outputs) == ("confident", {"branch": "confident"})
    assert check.inputs == {"search.top_score": 0.82}
    reply = finished(events, "reply")
    assert reply.outputs == {
        "text": REPLY, "finish_reason": "stop",
        "usage": {"input_tokens": 11, "output_tokens": 8}, "json": None,
    }  # fmt: skip
    assert reply.inputs == {"search.chunks": finished(events, "search").outputs["chunks"],
                            "start.question": "how many days"}  # fmt: skip
    assert reply.usage == Usage(11, 8) and reply.attempts == 1
    assert finished(events, "say").outputs == {"text": "A: " + REPLY}
    assert "".join(deltas(events, "say")) == "A: " + REPLY
    assert deltas(events, "sorry") == []
    end = last(events)
    assert end == RunFinished(SUCCEEDED, {"answer": "A: " + REPLY, "score": 0.82}, Usage(11, 8))
    llm_usage = [e.usage for e in events if isinstance(e, NodeFinished) and e.type == "llm"]
    assert end.usage == Usage(
        sum(u.input_tokens for u in llm_usage), sum(u.output_tokens for u in llm_usage)
    )
    uses = svc.uses  # type: ignore[attr-defined]
    assert [
        (u.node, u.model, u.deployment, u.input_tokens, u.output_tokens, u.status) for u in uses
    ] == [("reply", "chat", "chat-a", 11, 8, "OK")]


async def test_rag_low_score_takes_the_else_answer() -> None:
    svc = services(retriever=ScoredRetriever(0.2))
    events = await run(RAG, {"question": "how many days"}, svc)
    assert_well_ordered(events)
    statuses = {e.node: e.status for e in events if isinstance(e, NodeFinished)}
    assert statuses == {
        "start": SUCCEEDED, "search": SUCCEEDED, "check": SUCCEEDED,
        "reply": SKIPPED, "say": SKIPPED, "sorry": SUCCEEDED,
    }  # fmt: skip
    assert finished(events, "check").branch == "else"
    assert not any(isinstance(e, NodeStarted) and e.node in ("reply", "say") for e in events)
    for node in ("reply", "say"):
        assert finished(events, node) == NodeFinished(
            node, {"reply": "llm", "say": "answer"}[node], SKIPPED
        )
    assert deltas(events, "sorry") == ["No good source (best ", "0.2", ")."]
    assert last(events) == RunFinished(
        SUCCEEDED, {"answer": "No good source (best 0.2).", "score": 0.2}, Usage()
    )
    assert svc.uses == []  # type: ignore[attr-defined]


async def test_without_declared_outputs_the_answers_are_the_output() -> None:
    raw = {k: v for k, v in RAG.items() if k != "outputs"}
    events = await run(raw, {"question": "how many days"}, services(retriever=ScoredRetriever(0.9)))
    assert last(events).outputs == {"answer": "A: " + REPLY}


# --- concurrency ------------------------------------------------------------------------

PARALLEL: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "start"},
        llm("left", "paced100", "left words"),
        llm("right", "paced100", "right words"),
        {"id": "merge", "type": "template",
         "config": {"template": "{{ left.text }} | {{ right.text }}"}},
        {"id": "end", "type": "end", "config": {"outputs": {"merged": "{{ merge.text }}"}}},
    ],
    "edges": [
        {"from": "start", "to": "left"}, {"from": "start", "to": "right"},
        {"from": "left", "to": "merge"}, {"from": "right", "to": "merge"},
        {"from": "merge", "to": "end"},
    ],
}  # fmt: skip


async def test_independent_llm_calls_run_concurrently() -> None:
    started = time.monotonic()
    events = await run(PARALLEL)
    wall_ms = (time.monotonic() - started) * 1000
    assert_well_ordered(events)
    both_started = max(index(events, NodeStarted, "left"), index(events, NodeStarted, "right"))
    first_done = min(index(events, NodeFinished, "left"), index(events, NodeFinished, "right"))
    assert both_started < first_done
    left, right = finished(events, "left"), finished(events, "right")
    # each paced call takes ~100 ms; run one after the other they would take the sum
    assert left.latency_ms >= 90 and right.latency_ms >= 90
    assert wall_ms < left.latency_ms + right.latency_ms
    assert index(events, NodeStarted, "merge") > max(
        index(events, NodeFinished, "left"), index(events, NodeFinished, "right")
    )
    text_l = "left words left words left words left words left words left"
    text_r = "right words right words right words right words right words right"
    assert left.outputs["text"] == text_l
    assert right.outputs["text"] == text_r
    assert finished(events, "merge").outputs == {"text": f"{text_l} | {text_r}"}
    end = last(events)
    assert end == RunFinished(SUCCEEDED, {"merged": f"{text_l} | {text_r}"}, Usage(4, 22))
    assert end.usage == Usage(
        left.usage.input_tokens + right.usage.input_tokens,
        left.usage.output_tokens + right.usage.output_tokens,
    )


# --- answer streaming -------------------------------------------------------------------


def streamed(text: str, model: str = "paced") -> dict[str, Any]:
    return {
        "nodes": [{"id": "start", "type": "start"}, llm("reply", model, "alpha beta"),
                  {"id": "say", "type": "answer", "config": {"text": text}}],
        "edges": [{"from": "start", "to": "reply"}, {"from": "reply", "to": "say"}],
    }  # fmt: skip


async def test_answer_forwards_tokens_as_the_llm_produces_them() -> None:
    events = await run(streamed("A: {{ reply.text }}!"))
    assert_well_ordered(events)
    reply_done = index(events, NodeFinished, "reply")
    # the answer is eager: it starts while the llm still runs
    assert index(events, NodeStarted, "say") < reply_done
    early = [e for e in events[:reply_done] if isinstance(e, TextDelta)]
    assert early[:3] == [
        TextDelta("say", "A: "),
        TextDelta("say", "alpha"),
        TextDelta("say", " beta"),
    ]
    assert len(early) >= 5  # 10 tokens at 200/s: most are forwarded before the call ends
    text = "alpha beta alpha beta alpha beta alpha beta alpha beta"
    assert finished(events, "reply").outputs["text"] == text
    assert "".join(deltas(events, "say")) == f"A: {text}!"
    assert deltas(events, "say")[-1] == "!"
    assert finished(events, "say").outputs == {"text": f"A: {text}!"}
    assert last(events).outputs == {"answer": f"A: {text}!"}


async def test_answer_with_blocks_renders_whole_once_its_sources_settle() -> None:
    source = "{% if reply.text %}Yes: {{ reply.text | upper }}{% else %}nothing{% endif %}"
    events = await run(streamed(source))
    assert_well_ordered(events)
    text = "ALPHA BETA ALPHA BETA ALPHA BETA ALPHA BETA ALPHA BETA"
    assert deltas(events, "say") == [f"Yes: {text}"]
    assert index(events, TextDelta, "say") > index(events, NodeFinished, "reply")
    assert finished(events, "say").outputs == {"text": f"Yes: {text}"}


# --- failures, error branches, retries, timeouts ----------------------------------------


async def test_a_failing_node_fails_the_run_and_cancels_the_others() -> None:
    raw = {
        "nodes": [
            {"id": "start", "type": "start"},
            llm("bad", "broken", "hi"),
            llm("good", "long", "hi"),
        ],
        "edges": [{"from": "start", "to": "bad"}, {"from": "start", "to": "good"}],
    }
    svc = services()
    long = provider(svc, "long")
    started = time.monotonic()
    events = await run(raw, {}, svc)
    assert time.monotonic() - started < 0.8  # "long" alone takes ~1 s
    assert_well_ordered(events)
    bad = finished(events, "bad")
    assert bad.status == FAILED and bad.attempts == 1
    assert "all deployments of 'broken' failed" in bad.error
    assert "injected failure" in bad.error
    good = finished(events, "good")  # still running when "bad" failed: cancelled
    assert (good.status, good.error) == ("cancelled", "the run failed")
    end = last(events)
    assert end.status == FAILED and end.error_node == "bad" and end.outputs == {}
    assert end.error == f"node 'bad': {bad.error}"
    assert (long.calls, long.active_streams, long.cancelled_streams) == (1, 0, 1)
    assert workflow_tasks() == []


ERROR_BRANCH: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "start"},
        llm("reply", "MODEL", "hi there", on_error="branch"),
        {"id": "say", "type": "answer", "config": {"text": "A: {{ reply.text }}"}},
        {"id": "sorry", "type": "answer", "config": {"text": "Sorry: {{ reply.error }}"}},
    ],
    "edges": [
        {"from": "start", "to": "reply"},
        {"from": "reply", "to": "say"},
        {"from": "reply", "to": "sorry", "branch": "error"},
    ],
}


def with_model(raw: dict[str, Any], model: str) -> dict[str, Any]:
    nodes = [
        {**n, "config": {**n["config"], "model": model}}
        if n.get("config", {}).get("model") == "MODEL"
        else n
        for n in raw["nodes"]
    ]
    return {**raw, "nodes": nodes}


async def test_on_error_branch_follows_the_error_edge() -> None:
    events = await run(with_model(ERROR_BRANCH, "broken"))
    assert_well_ordered(events)
    reply = finished(events, "reply")
    assert reply.status == FAILED and "injected failure" in reply.error
    # the plain edge is not taken: its eager answer must not start (nor stream)
    assert finished(events, "say") == NodeFinished("say", "answer", SKIPPED)
    assert deltas(events, "say") == []
    assert index(events, NodeStarted, "sorry") > index(events, NodeFinished, "reply")
    sorry = finished(events, "sorry")
    assert sorry.status == SUCCEEDED
    assert sorry.outputs == {"text": f"Sorry: {reply.error}"}
    assert sorry.inputs == {"reply.error": reply.error}
    assert "".join(deltas(events, "sorry")) == f"Sorry: {reply.error}"
    assert last(events) == RunFinished(SUCCEEDED, {"answer": f"Sorry: {reply.error}"}, Usage())


async def test_on_error_branch_that_succeeds_skips_the_error_edge() -> None:
    events = await run(with_model(ERROR_BRANCH, "chat"))
    assert_well_ordered(events)
    assert finished(events, "reply").status == SUCCEEDED
    assert finished(events, "sorry") == NodeFinished("sorry", "answer", SKIPPED)
    assert deltas(events, "sorry") == []
    text = "hi there hi there hi there hi there"
    assert "".join(deltas(events, "say")) == f"A: {text}"
    assert last(events) == RunFinished(SUCCEEDED, {"answer": f"A: {text}"}, Usage(2, 8))


async def test_retry_runs_a_failing_node_max_attempts_times() -> None:
    raw = {
        "nodes": [{"id": "start", "type": "start"},
                  llm("reply", "broken", "hi", retry={"max_attempts": 3, "backoff_s": 0})],
        "edges": [{"from": "start", "to": "reply"}],
    }  # fmt: skip
    svc = services()
    events = await run(raw, {}, svc)
    reply = finished(events, "reply")
    assert (reply.status, reply.attempts) == (FAILED, 3)
    assert "'broken'" in reply.error
    assert [u.node for u in svc.uses] == ["reply"] * 3  # type: ignore[attr-defined]
    assert last(events).error_node == "reply"


async def test_retry_succeeds_on_a_later_attempt_with_backoff() -> None:
    raw = {
        "nodes": [{"id": "start", "type": "start"},
                  llm("reply", "chat", "hi", retry={"max_attempts": 3, "backoff_s": 0.05})],
        "edges": [{"from": "start", "to": "reply"}],
    }  # fmt: skip
    fake = FakeRouter("fail", "fail", "ok")
    started = time.monotonic()
    events = await run(raw, {}, fake_services(fake))
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s
    reply = finished(events, "reply")
    assert (reply.status, reply.attempts, reply.error) == (SUCCEEDED, 3, "")
    assert reply.outputs["text"] == "one two three"
    assert fake.calls == 3
    assert last(events) == RunFinished(SUCCEEDED, {}, Usage(2, 3))


async def test_no_retry_once_text_has_streamed() -> None:
    raw = {
        "nodes": [{"id": "start", "type": "start"},
                  llm("reply", "cut", "a b c d", retry={"max_attempts": 3, "backoff_s": 0})],
        "edges": [{"from": "start", "to": "reply"}],
    }  # fmt: skip
    events = await run(raw)
    reply = finished(events, "reply")
    assert (reply.status, reply.attempts) == (FAILED, 1)
    assert "stream cut after 3 tokens" in reply.error


async def test_timeout_fails_the_node() -> None:
    raw = {
        "nodes": [{"id": "start", "type": "start"}, llm("reply", "slow", "hi", timeout_s=0.1)],
        "edges": [{"from": "start", "to": "reply"}],
    }
    svc = services()
    slow = provider(svc, "slow")
    started = time.monotonic()
    events = await run(raw, {}, svc)
    assert time.monotonic() - started < 0.6  # "slow" waits 1 s before its first token
    reply = finished(events, "reply")
    assert (reply.status, reply.error, reply.attempts) == (FAILED, "timed out after 0.1 s", 1)
    assert last(events).error == "node 'reply': timed out after 0.1 s"
    assert (slow.active_streams, slow.cancelled_streams) == (0, 1)
    assert [u.status for u in svc.uses] == ["CANCELLED"]  # type: ignore[attr-defined]


async def test_a_node_failure_is_reported_in_the_authors_words() -> None:
    """NodeFailed is an expected failure: no exception type in the message."""
    node = llm("reply", "chat", "not json")
    node["config"]["json_schema"] = {"type": "object"}
    raw = {
        "nodes": [{"id": "start", "type": "start"}, node],
        "edges": [{"from": "start", "to": "reply"}],
    }
    events = await run(raw)
    reply = finished(events, "reply")
    assert reply.status == FAILED
    assert reply.error.startswith("the model's reply is not JSON: ")


# --- cancellation and deadlines ---------------------------------------------------------

STREAMING: dict[str, Any] = {
    "nodes": [{"id": "start", "type": "start"}, llm("reply", "long", "hi there"),
              {"id": "say", "type": "answer", "config": {"text": "{{ reply.text }}"}}],
    "edges": [{"from": "start", "to": "reply"}, {"from": "reply", "to": "say"}],
}  # fmt: skip


def new_run(raw: Mapping[str, Any], svc: Services, deadline: float | None = None) -> Run:
    definition = load(raw)
    return Run(
        definition, check_inputs(definition, {}), svc, tenant="acme", run_id="r1", deadline=deadline
    )


async def test_closing_the_event_stream_cancels_the_model_call() -> None:
    svc = services()
    long = provider(svc, "long")
    events = new_run(STREAMING, svc).events()
    seen: list[Event] = []
    async for event in events:
        seen.append(event)
        if isinstance(event, TextDelta):  # the llm has started and is mid-stream
            break
    assert any(isinstance(e, NodeStarted) and e.node == "reply" for e in seen)
    assert long.active_streams == 1
    await events.aclose()
    assert (long.active_streams, long.cancelled_streams) == (0, 1)
    assert workflow_tasks() == []


async def test_cancelling_the_consumer_cancels_the_model_call() -> None:
    fake = FakeRouter("hang")
    raw = {
        **STREAMING,
        "nodes": [STREAMING["nodes"][0], llm("reply", "chat", "hi"), STREAMING["nodes"][2]],
    }
    seen: list[Event] = []
    reply_started = asyncio.Event()

    async def consume() -> None:
        async for event in new_run(raw, fake_services(fake)).events():
            seen.append(event)
            if isinstance(event, NodeStarted) and event.node == "reply":
                reply_started.set()

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(reply_started.wait(), 2)
    for _ in range(100):
        if fake.active:
            break
        await asyncio.sleep(0.01)
    assert fake.active == 1 and not fake.cancelled
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert fake.cancelled and fake.active == 0
    assert workflow_tasks() == []
    assert not any(isinstance(e, RunFinished) for e in seen)


async def test_a_deadline_over_a_slow_model_raises_and_cancels_the_call() -> None:
    raw = {"nodes": [{"id": "start", "type": "start"}, llm("reply", "slow", "hi")],
           "edges": [{"from": "start", "to": "reply"}]}  # fmt: skip
    svc = services()
    slow = provider(svc, "slow")
    started = time.monotonic()
    seen: list[Event] = []
    with pytest.raises(engine.DeadlineExceeded):
        async for event in new_run(raw, svc, deadline=started + 0.2).events():
            seen.append(event)
    assert 0.15 < time.monotonic() - started < 0.6
    assert [type(e) for e in seen] == [RunStarted, NodeStarted, NodeFinished, NodeStarted]
    assert (slow.calls, slow.active_streams, slow.cancelled_streams) == (1, 0, 1)
    assert workflow_tasks() == []


# --- inputs -----------------------------------------------------------------------------

INPUTS: dict[str, Any] = {
    "inputs": {
        "question": {"type": "string", "required": True},
        "count": {"type": "integer", "default": 3},
        "strict": "boolean",
        "tags": {"type": "array", "default": ["a"]},
    },
    "nodes": [{"id": "start", "type": "start"}],
}


def bad_inputs(inputs: Mapping[str, Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_inputs(load(INPUTS), inputs)
    return caught.value


def test_check_inputs_fills_defaults() -> None:
    assert check_inputs(load(INPUTS), {"question": "q"}) == {
        "question": "q", "count": 3, "strict": None, "tags": ["a"],
    }  # fmt: skip
    assert check_inputs(load(INPUTS), {"question": "q", "count": 2.0, "strict": False}) == {
        "question": "q", "count": 2, "strict": False, "tags": ["a"],
    }  # fmt: skip


def test_check_inputs_integer_default_given_as_a_float_is_an_integer() -> None:
    raw = {
        "inputs": {"count": {"type": "integer", "default": 2.0}},
        "nodes": [{"id": "start", "type": "start"}],
    }
    checked = check_inputs(load(raw), {})
    assert checked == {"count": 2} and type(checked["count"]) is int


def test_check_inputs_missing_required() -> None:
    for inputs in ({}, {"question": None}):
        error = bad_inputs(inputs)
        assert (error.field, str(error)) == ("inputs.question", "inputs.question: is required")


def test_check_inputs_wrong_type() -> None:
    error = bad_inputs({"question": 3})
    assert (error.field, str(error)) == (
        "inputs.question",
        "inputs.question: must be string, got int",
    )
    error = bad_inputs({"question": "q", "count": True})
    assert str(error) == "inputs.count: must be integer, got bool"
    error = bad_inputs({"question": "q", "count": 1.5})
    assert str(error) == "inputs.count: must be integer, got float"
    error = bad_inputs({"question": "q", "tags": "a"})
    assert str(error) == "inputs.tags: must be array, got str"


def test_check_inputs_unknown_input() -> None:
    error = bad_inputs({"question": "q", "nope": 1})
    assert error.field == "inputs.nope"
    assert (
        str(error)
        == "inputs.nope: not an input of this workflow (it takes: count, question, strict, tags)"
    )


async def test_start_outputs_are_the_checked_inputs() -> None:
    events = await run(INPUTS, {"question": "q"})
    assert finished(events, "start").outputs == {
        "question": "q",
        "count": 3,
        "strict": None,
        "tags": ["a"],
    }


# --- aggregate --------------------------------------------------------------------------

JOIN: dict[str, Any] = {
    "inputs": {"n": {"type": "number", "required": True}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "check", "type": "if_else", "config": {"cases": [{
            "label": "big",
            "conditions": [{"variable": "{{ start.n }}", "operator": "gt", "value": 10}],
        }]}},
        {"id": "big", "type": "template", "config": {"template": "big {{ start.n }}"}},
        {"id": "small", "type": "template", "config": {"template": "small {{ start.n }}"}},
        {"id": "join", "type": "aggregate",
         "config": {"sources": ["{{ big.text }}", "{{ small.text }}"]}},
        {"id": "end", "type": "end",
         "config": {"outputs": {"value": "{{ join.value }}", "source": "{{ join.source }}"}}},
    ],
    "edges": [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "big", "branch": "big"},
        {"from": "check", "to": "small", "branch": "else"},
        {"from": "big", "to": "join"}, {"from": "small", "to": "join"},
        {"from": "join", "to": "end"},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("n", "ran", "skipped", "value", "source"),
    [(42, "big", "small", "big 42", 0), (3, "small", "big", "small 3", 1)],
)
async def test_aggregate_joins_the_arms_of_an_if_else(
    n: int, ran: str, skipped: str, value: str, source: int
) -> None:
    events = await run(JOIN, {"n": n})
    assert_well_ordered(events)
    assert finished(events, skipped).status == SKIPPED
    assert finished(events, ran).outputs == {"text": value}
    join = finished(events, "join")
    assert (join.status, join.outputs) == (SUCCEEDED, {"value": value, "source": source})
    assert index(events, NodeStarted, "join") > index(events, NodeFinished, skipped)
    assert last(events) == RunFinished(SUCCEEDED, {"value": value, "source": source}, Usage())
