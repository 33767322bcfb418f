"""validate.load: one test per rule, each naming the exact node and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.apps.workflows import document
from gateway.apps.workflows.document import Definition, DefinitionError, Problem
from gateway.apps.workflows.validate import load


def problems(raw: Any) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    assert str(caught.value) == "; ".join(map(str, caught.value.problems))
    return caught.value.problems


def only(raw: Any) -> Problem:
    found = problems(raw)
    assert len(found) == 1, found
    return found[0]


def expect(raw: Any, node: str, field: str, *fragments: str) -> Problem:
    problem = only(raw)
    assert (problem.node, problem.field) == (node, field), problem
    for fragment in fragments:
        assert fragment in problem.message, problem
    return problem


def rag() -> dict[str, Any]:
    """A valid definition: start -> search -> check -> reply -> say | sorry."""
    return copy.deepcopy({
        "inputs": {"question": {"type": "string", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "search", "type": "retrieval",
             "config": {"collections": ["handbook"], "query": "{{ start.question }}"}},
            {"id": "check", "type": "if_else", "config": {"cases": [{
                "label": "confident",
                "conditions": [
                    {"variable": "{{ search.top_score }}", "operator": "ge", "value": 0.5}
                ],
            }]}},
            {"id": "reply", "type": "llm", "config": {"model": "chat", "messages": [
                {"role": "user", "content": "{{ search.text }} {{ start.question }}"}]}},
            {"id": "say", "type": "answer", "config": {"text": "{{ reply.text }}"}},
            {"id": "sorry", "type": "answer", "config": {"text": "Nothing found."}},
        ],
        "edges": [
            {"from": "start", "to": "search"},
            {"from": "search", "to": "check"},
            {"from": "check", "to": "reply", "branch": "confident"},
            {"from": "reply", "to": "say"},
            {"from": "check", "to": "sorry", "branch": "else"},
        ],
        "outputs": {"answer": "{{ say.text }}"},
    })  # fmt: skip


def node(raw: dict[str, Any], node_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in raw["nodes"] if n["id"] == node_id)
    return found


def test_the_base_definition_is_valid() -> None:
    definition = load(rag())
    assert [n.id for n in definition.nodes] == ["start", "search", "check", "reply", "say", "sorry"]


def test_unknown_node_type() -> None:
    raw = rag()
    node(raw, "sorry")["type"] = "telepathy"
    problem = expect(raw, "sorry", "type", "unknown type 'telepathy' (one of ")
    for known in ("aggregate", "answer", "if_else", "llm", "retrieval", "start", "template"):
        assert known in problem.message


def test_config_schema_violation_names_the_field() -> None:
    raw = rag()
    node(raw, "search")["config"]["k"] = 0
    expect(raw, "search", "config.k", "0 is less than the minimum of 1")


def test_config_schema_violation_in_a_nested_field() -> None:
    raw = rag()
    node(raw, "reply")["config"]["messages"][0]["role"] = "robot"
    expect(raw, "reply", "config.messages[0].role", "'robot' is not one of")


def test_config_unknown_key() -> None:
    raw = rag()
    node(raw, "search")["config"]["topk"] = 3
    expect(raw, "search", "config", "Additional properties are not allowed ('topk' was unexpected)")


def test_missing_required_config() -> None:
    raw = rag()
    del node(raw, "reply")["config"]["model"]
    expect(raw, "reply", "config", "'model' is a required property")


def test_no_start() -> None:
    raw = {"nodes": [{"id": "t", "type": "template", "config": {"template": "x"}}]}
    assert only(raw) == Problem("", "nodes", "needs exactly one start node, has 0")


def test_two_starts() -> None:
    raw = rag()
    raw["nodes"].append({"id": "start2", "type": "start"})
    assert only(raw) == Problem("", "nodes", "needs exactly one start node, has 2")


def test_edge_into_start() -> None:
    raw = rag()
    raw["edges"].append({"from": "say", "to": "start"})
    assert only(raw) == Problem("start", "edges[5].to", "no edge may lead into start")


def test_dangling_edge_from() -> None:
    raw = rag()
    raw["edges"].append({"from": "ghost", "to": "say"})
    assert only(raw) == Problem("", "edges[5].from", "no node 'ghost'")


def test_dangling_edge_to() -> None:
    raw = rag()
    raw["edges"].append({"from": "say", "to": "ghost"})
    assert only(raw) == Problem("say", "edges[5].to", "no node 'ghost'")


def test_duplicate_edge() -> None:
    raw = rag()
    raw["edges"].append({"from": "reply", "to": "say"})
    assert only(raw) == Problem("reply", "edges[5]", "duplicate edge reply -> say")


def test_duplicate_node_id() -> None:
    raw = rag()
    raw["nodes"].append({"id": "say", "type": "answer", "config": {"text": "again"}})
    assert only(raw) == Problem("say", "nodes[6].id", "duplicate id 'say'")


def test_bad_node_id() -> None:
    raw = rag()
    raw["nodes"].append({"id": "Bad-Id", "type": "start"})
    expect(raw, "Bad-Id", "nodes[6].id", "must match [a-z][a-z0-9_]*")


def test_cycle_is_named() -> None:
    raw = rag()
    raw["nodes"] += [
        {"id": "a", "type": "template", "config": {"template": "a"}},
        {"id": "b", "type": "template", "config": {"template": "b"}},
    ]
    raw["edges"] += [{"from": "say", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "a"}]
    assert only(raw) == Problem("a", "edges", "cycle: a -> b -> a")


def test_self_loop_is_a_cycle() -> None:
    raw = rag()
    raw["edges"].append({"from": "sorry", "to": "sorry"})
    assert only(raw) == Problem("sorry", "edges", "cycle: sorry -> sorry")


def test_unreachable_node() -> None:
    raw = rag()
    raw["nodes"].append({"id": "island", "type": "template", "config": {"template": "x"}})
    assert only(raw) == Problem("island", "edges", "unreachable: no path from start leads here")


def test_reference_to_a_downstream_node() -> None:
    raw = rag()
    node(raw, "search")["config"]["query"] = "{{ reply.text }}"
    assert only(raw) == Problem(
        "search", "config.query",
        "reads {{ reply.text }}, but no node upstream of this node is called 'reply'",
    )  # fmt: skip


def test_reference_to_a_sibling_node() -> None:
    """`say` and `sorry` are the two arms of the if_else: neither is upstream of the other."""
    raw = rag()
    node(raw, "sorry")["config"]["text"] = "{{ say.text }}"
    assert only(raw) == Problem(
        "sorry", "config.text",
        "reads {{ say.text }}, but no node upstream of this node is called 'say'",
    )  # fmt: skip


def test_reference_to_a_missing_node() -> None:
    raw = rag()
    node(raw, "reply")["config"]["messages"][0]["content"] = "{{ ghost }}"
    assert only(raw) == Problem(
        "reply", "config.messages[0].content",
        "reads {{ ghost }}, but no node upstream of this node is called 'ghost'",
    )  # fmt: skip


def test_reference_to_a_missing_output_field_lists_the_fields() -> None:
    raw = rag()
    node(raw, "reply")["config"]["messages"][0]["content"] = "{{ search.txt }}"
    assert only(raw) == Problem(
        "reply", "config.messages[0].content",
        "search (retrieval) has no output 'txt' (it has: chunks, count, text, top_score)",
    )  # fmt: skip


def test_reference_to_an_input_the_workflow_does_not_declare() -> None:
    raw = rag()
    node(raw, "search")["config"]["query"] = "{{ start.topic }}"
    expect(raw, "search", "config.query", "start (start) has no output 'topic' (it has: question)")


def test_ordered_comparison_on_an_array_is_a_type_mismatch() -> None:
    raw = rag()
    node(raw, "check")["config"]["cases"][0]["conditions"][0] = {
        "variable": "{{ search.chunks }}", "operator": "gt", "value": 1,
    }  # fmt: skip
    assert only(raw) == Problem(
        "check", "config.cases[0].conditions[0].variable",
        "gt compares numbers, but search.chunks is array",
    )  # fmt: skip


def test_comparison_without_a_value() -> None:
    raw = rag()
    del node(raw, "check")["config"]["cases"][0]["conditions"][0]["value"]
    assert only(raw) == Problem("check", "config.cases[0].conditions[0].value", "is required")


def test_if_else_label_else_is_reserved() -> None:
    raw = rag()
    node(raw, "check")["config"]["cases"][0]["label"] = "else"
    raw["edges"][2]["branch"] = "else"
    assert only(raw) == Problem("check", "config.cases[0].label", "'else' is the default branch")


def test_edge_branch_label_the_if_else_does_not_take() -> None:
    raw = rag()
    raw["edges"][2]["branch"] = "maybe"
    assert only(raw) == Problem(
        "check", "edges[2].branch", "must be one of 'confident', 'else', got 'maybe'"
    )


def test_unlabelled_edge_from_an_if_else() -> None:
    raw = rag()
    del raw["edges"][2]["branch"]
    assert only(raw) == Problem(
        "check", "edges[2].branch", "must be one of 'confident', 'else', got ''"
    )


def test_labelled_edge_from_a_node_that_does_not_branch() -> None:
    raw = rag()
    raw["edges"][3]["branch"] = "yes"
    assert only(raw) == Problem(
        "reply", "edges[3].branch", "llm does not branch: label only its error edges ('error')"
    )


def test_error_edge_needs_on_error_branch() -> None:
    raw = rag()
    raw["nodes"].append({"id": "oops", "type": "answer", "config": {"text": "failed"}})
    raw["edges"].append({"from": "reply", "to": "oops", "branch": "error"})
    assert only(raw) == Problem(
        "reply", "edges[5].branch", "an error edge needs on_error: branch on its source node"
    )


def test_error_edge_with_on_error_branch_may_read_the_error() -> None:
    raw = rag()
    node(raw, "reply")["on_error"] = "branch"
    raw["nodes"].append(
        {"id": "oops", "type": "answer", "config": {"text": "failed: {{ reply.error }}"}}
    )
    raw["edges"].append({"from": "reply", "to": "oops", "branch": "error"})
    definition = load(raw)
    assert definition.node("reply").on_error == "branch"
    assert definition.edges[-1] == document.Edge("reply", "oops", "error")


def test_the_error_output_is_only_for_on_error_branch_nodes() -> None:
    raw = rag()
    node(raw, "say")["config"]["text"] = "{{ reply.error }}"
    expect(raw, "say", "config.text", "reply (llm) has no output 'error'")


def test_template_syntax_error_names_the_line() -> None:
    raw = rag()
    node(raw, "reply")["config"]["messages"][0]["content"] = "Context:\n{{ search.text | }}"
    assert only(raw) == Problem(
        "reply", "config.messages[0].content",
        "line 2: expected token 'name', got 'end of print statement'",
    )  # fmt: skip


def test_unclosed_block_is_a_syntax_error() -> None:
    raw = rag()
    node(raw, "say")["config"]["text"] = "{% if reply.text %}{{ reply.text }}"
    expect(raw, "say", "config.text", "line 1: Unexpected end of template")


def test_workflow_outputs_reference_an_unknown_node() -> None:
    raw = rag()
    raw["outputs"]["extra"] = "{{ ghost.text }}"
    assert only(raw) == Problem(
        "",
        "outputs.extra",
        "reads {{ ghost.text }}, but no node upstream of the outputs is called 'ghost'",
    )


def test_workflow_outputs_reference_a_missing_field() -> None:
    raw = rag()
    raw["outputs"]["extra"] = "{{ say.txt }}"
    assert only(raw) == Problem(
        "", "outputs.extra", "say (answer) has no output 'txt' (it has: text)"
    )


def test_secrets_outside_http_headers() -> None:
    raw = rag()
    node(raw, "reply")["config"]["messages"][0]["content"] = "key {{ secrets.API_KEY }}"
    assert only(raw) == Problem(
        "reply", "config.messages[0].content", "secrets are readable in http_request headers only"
    )


def test_secrets_in_workflow_outputs() -> None:
    raw = rag()
    raw["outputs"]["leak"] = "{{ secrets.API_KEY }}"
    assert only(raw) == Problem(
        "", "outputs.leak", "secrets are readable in http_request headers only"
    )


def test_shape_problems_are_reported_together() -> None:
    raw = rag()
    raw["nodes"][1]["retry"] = {"max_attempts": 0}
    raw["nodes"][3]["timeout_s"] = -1
    raw["edges"].append({"from": "say"})
    raw["colour"] = "blue"
    assert problems(raw) == [
        Problem("", "colour", "unknown field (expected inputs, nodes, edges, outputs)"),
        Problem("search", "nodes[1].retry.max_attempts", "must be an integer in [1, 10]"),
        Problem("reply", "nodes[3].timeout_s", "must be a number of seconds in (0, 3600]"),
        Problem("", "edges[5].to", "must name a node"),
    ]


def test_several_problems_are_reported_at_once() -> None:
    raw = rag()
    node(raw, "search")["config"]["k"] = 0
    node(raw, "sorry")["type"] = "telepathy"
    raw["edges"].append({"from": "ghost", "to": "say"})
    raw["edges"].append({"from": "reply", "to": "say", "branch": "yes"})
    found = problems(raw)
    assert [(p.node, p.field) for p in found] == [
        ("search", "config.k"),
        ("sorry", "type"),
        ("", "edges[5].from"),
        ("reply", "edges[6].branch"),
    ]


def test_several_graph_problems_are_reported_at_once() -> None:
    raw = rag()
    node(raw, "search")["config"]["query"] = "{{ start.topic }}"
    node(raw, "say")["config"]["text"] = "{{ sorry.text }} {{ reply.txt }}"
    raw["nodes"].append({"id": "island", "type": "template", "config": {"template": "x"}})
    raw["outputs"]["extra"] = "{{ ghost }}"
    found = problems(raw)
    assert [(p.node, p.field) for p in found] == [
        ("island", "edges"),
        ("search", "config.query"),
        ("say", "config.text"),
        ("say", "config.text"),
        ("", "outputs.extra"),
    ]
    assert "'sorry'" in found[2].message and "no output 'txt'" in found[3].message


COMPLEX: dict[str, Any] = {
    "inputs": {
        "question": {"type": "string", "required": True, "description": "what to ask"},
        "threshold": {"type": "number", "default": 0.5},
        "tags": {"type": "array", "default": ["hr"]},
    },
    "nodes": [
        {"id": "start", "type": "start", "title": "Begin"},
        {"id": "search", "type": "retrieval", "config": {
            "collections": ["handbook", "collections/policies"], "query": "{{ start.question }}",
            "k": 3, "mode": "hybrid", "min_score": 0.1, "filter": {"year": {"gte": 2020}},
        }},
        {"id": "check", "type": "if_else", "config": {"cases": [
            {"label": "confident", "match": "all", "conditions": [
                {"variable": "{{ search.top_score }}", "operator": "ge", "value": 0.5},
                {"variable": "{{ search.chunks }}", "operator": "not_empty"},
            ]},
            {"label": "some", "match": "any", "conditions": [
                {"variable": "{{ search.count }}", "operator": "gt", "value": 0},
            ]},
        ]}},
        {"id": "context", "type": "template", "config": {
            "template": "{% for c in search.chunks %}[{{ loop.index }}] {{ c.text }}\n{% endfor %}",
        }},
        {"id": "reply", "type": "llm", "timeout_s": 30, "on_error": "branch",
         "retry": {"max_attempts": 2, "backoff_s": 0.25}, "config": {
            "model": "chat", "params": {"temperature": 0.2, "max_tokens": 100},
            "messages": [{"role": "system", "content": "Answer from:\n{{ context.text }}"},
                         {"role": "user", "content": "{{ start.question }}"}]}},
        {"id": "hedge", "type": "template", "config": {"template": "Maybe: {{ search.text }}"}},
        {"id": "nothing", "type": "template",
         "config": {"template": "Nothing on {{ start.question | lower }}"}},
        {"id": "failed", "type": "template", "config": {"template": "Error: {{ reply.error }}"}},
        {"id": "join", "type": "aggregate", "config": {
            "sources": [
                "{{ reply.text }}", "{{ hedge.text }}", "{{ nothing.text }}", "{{ failed.text }}",
            ],
        }},
        {"id": "say", "type": "answer", "config": {"text": "{{ join.value }}"}},
        {"id": "end", "type": "end", "config": {"outputs": {"answer": "{{ join.value }}",
                                                             "sources": "{{ search.chunks }}"}}},
    ],
    "edges": [
        {"from": "start", "to": "search"},
        {"from": "search", "to": "check"},
        {"from": "check", "to": "context", "branch": "confident"},
        {"from": "context", "to": "reply"},
        {"from": "check", "to": "hedge", "branch": "some"},
        {"from": "check", "to": "nothing", "branch": "else"},
        {"from": "reply", "to": "join"},
        {"from": "reply", "to": "failed", "branch": "error"},
        {"from": "failed", "to": "join"},
        {"from": "hedge", "to": "join"},
        {"from": "nothing", "to": "join"},
        {"from": "join", "to": "say"},
        {"from": "join", "to": "end"},
    ],
    "outputs": {"answer": "{{ end.answer }}", "score": "{{ search.top_score }}"},
}  # fmt: skip


def test_a_valid_complex_definition_passes() -> None:
    definition = load(COMPLEX)
    assert len(definition.nodes) == 11 and len(definition.edges) == 13
    reply = definition.node("reply")
    assert (reply.timeout_s, reply.retry, reply.on_error) == (
        30.0,
        document.Retry(2, 0.25),
        "branch",
    )
    assert definition.inputs[1] == document.Input("threshold", "number", False, 0.5)
    assert definition.edges[7] == document.Edge("reply", "failed", "error")


def test_to_json_round_trips() -> None:
    parsed = document.parse(COMPLEX)
    again = document.to_json(parsed)
    assert document.parse(again) == parsed
    assert document.to_json(document.parse(again)) == again
    assert isinstance(load(again), Definition)
    assert again["nodes"][4] == {
        "id": "reply", "type": "llm", "config": COMPLEX["nodes"][4]["config"], "timeout_s": 30.0,
        "retry": {"max_attempts": 2, "backoff_s": 0.25}, "on_error": "branch",
    }  # fmt: skip
    assert again["nodes"][0] == {"id": "start", "type": "start", "title": "Begin"}
    assert again["inputs"] == {
        "question": {"type": "string", "required": True, "description": "what to ask"},
        "threshold": {"type": "number", "required": False, "default": 0.5},
        "tags": {"type": "array", "required": False, "default": ["hr"]},
    }
    assert again["edges"] == COMPLEX["edges"]
    assert again["outputs"] == COMPLEX["outputs"]


def test_a_node_keeps_where_the_editor_drew_it() -> None:
    raw = {"nodes": [{"id": "start", "type": "start", "position": {"x": 40, "y": -12.5}}]}
    parsed = document.parse(raw)
    assert parsed.nodes[0].position == (40.0, -12.5)
    assert document.to_json(parsed)["nodes"][0]["position"] == {"x": 40.0, "y": -12.5}
    for bad in ({"x": 1}, {"x": 1, "y": "2"}, {"x": 1, "y": 2e7}, [1, 2], {"x": True, "y": 0}):
        with pytest.raises(DefinitionError) as caught:
            document.parse({"nodes": [{"id": "start", "type": "start", "position": bad}]})
        found = [(p.node, p.field) for p in caught.value.problems]
        assert found == [("start", "nodes[0].position")]


def test_to_json_of_a_minimal_definition() -> None:
    raw = {"nodes": [{"id": "start", "type": "start"}]}
    assert document.to_json(document.parse(raw)) == raw
