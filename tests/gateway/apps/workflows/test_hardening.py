"""Hardening of the workflow engine after review: schema `$ref`s never fetched,
malformed configs reported not crashed on, templates immutable and bounded,
CEL inputs bounded, secrets masked however a server writes them back, and a
secret header pinned to a written-out host."""

from __future__ import annotations

import copy
import http.server
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import DefinitionError, Problem, parse
from gateway.apps.workflows.engine import Run, check_inputs
from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.nodes import TYPES
from gateway.apps.workflows.nodes.base import NodeFailed
from gateway.apps.workflows.nodes.expression import MAX_VALUES
from gateway.apps.workflows.nodes.llm import parse_json
from gateway.apps.workflows.validate import load
from tests.gateway.apps.workflows.helpers import run, services
from tests.gateway.apps.workflows.scripted_router import ScriptedRouter, scripted_services


def problems(raw: Mapping[str, Any]) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    return caught.value.problems


def one_node(
    kind: str, config: Any, inputs: Mapping[str, Any] | None = None, *, labelled: bool = False
) -> dict[str, Any]:
    """start -> n (of `kind`) -> done; `labelled`: n -> done labelled too (so
    validation reads n's branch labels)."""
    edges = [{"from": "start", "to": "n"}, {"from": "n", "to": "done"}]
    if labelled:
        edges.append({"from": "n", "to": "done", "branch": "yes"})
    return {
        "inputs": dict(inputs or {"question": "string"}),
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "n", "type": kind, "config": config},
            {"id": "done", "type": "answer", "config": {"text": "ok"}},
        ],
        "edges": edges,
    }


def finished(events: list[Any], node: str) -> NodeFinished:
    return next(e for e in events if isinstance(e, NodeFinished) and e.node == node)


# --- 1. JSON Schema `$ref`s are never fetched ---------------------------------------------


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    """A local server that hands out a schema and records every request."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps({"type": "string"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/schema.json", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_ref_is_not_fetched_when_a_reply_is_checked(
    schema_server: tuple[str, list[str]],
) -> None:
    url, hits = schema_server
    schema = {"type": "object", "properties": {"x": {"$ref": url}}}
    with pytest.raises(NodeFailed, match="does not resolve") as caught:
        parse_json('{"x": "a string"}', schema)
    assert url in str(caught.value)
    assert hits == []  # no request left the gateway


def test_an_unresolvable_local_ref_fails_the_node_cleanly() -> None:
    with pytest.raises(NodeFailed, match="does not resolve"):
        parse_json('{"x": 1}', {"properties": {"x": {"$ref": "#/$defs/missing"}}})
    with pytest.raises(NodeFailed, match="cannot be checked"):
        parse_json('{"x": 1}', {"$ref": "#"})  # refers to itself forever


def test_local_refs_still_check_replies() -> None:
    schema = {
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
    }
    assert parse_json('{"x": 1}', schema) == {"x": 1}
    with pytest.raises(NodeFailed, match="at x: 'a' is not of type 'integer'"):
        parse_json('{"x": "a"}', schema)


async def test_an_llm_node_with_a_remote_ref_saved_earlier_fails_without_fetching(
    schema_server: tuple[str, list[str]],
) -> None:
    url, hits = schema_server
    raw = one_node("llm", {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "json_schema": {"type": "object", "properties": {"x": {"$ref": url}}},
    })  # fmt: skip
    stored = parse(raw)  # as stored before the save check refused it
    svc = scripted_services(ScriptedRouter(['{"x": "a"}']))
    r = Run(stored, check_inputs(stored, {}), svc, tenant="acme", run_id="r1", deadline=None)
    got = finished([e async for e in r.events()], "n")
    assert got.status == FAILED and "does not resolve" in got.error, got
    assert hits == []


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        (
            "llm",
            {
                "json_schema": {
                    "type": "object",
                    "properties": {"x": {"$ref": "https://a.example/s"}},
                }
            },
            "config.json_schema.properties.x.$ref",
        ),
        (
            "llm",
            {"json_schema": {"allOf": [{"$ref": "other.json#/x"}]}},
            "config.json_schema.allOf[0].$ref",
        ),
        (
            "extractor",
            {"schema": {"type": "object", "$defs": {"a": {"$dynamicRef": "http://10.0.0.1/"}}}},
            "config.schema.$defs.a.$dynamicRef",
        ),
        (
            "extractor",
            {"schema": {"type": "object", "$ref": "file:///etc/passwd"}},
            "config.schema.$ref",
        ),
    ],
)
def test_a_remote_ref_is_refused_when_saved(kind: str, config: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = (
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        if kind == "llm"
        else {"model": "m", "input": "{{ start.question }}"}
    )
    raw = one_node(kind, {**base, **config})
    [problem] = problems(raw)
    assert (problem.node, problem.field) == ("n", field), problem
    assert "must be a local reference (#...)" in problem.message


def test_local_refs_are_accepted_when_saved() -> None:
    schema = {"type": "object", "$defs": {"n": {"type": "integer"}},
              "properties": {"x": {"$ref": "#/$defs/n"}, "$ref": {"type": "string"}}}  # fmt: skip
    raw = one_node(
        "llm",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "json_schema": schema},
    )
    load(raw)


def test_an_llm_json_schema_must_be_a_json_schema() -> None:
    raw = one_node(
        "llm",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}],
         "json_schema": {"type": "object", "properties": {"x": {"type": "nonsense"}}}},
    )  # fmt: skip
    [problem] = problems(raw)
    assert problem.field == "config.json_schema"
    assert problem.message.startswith("not a valid JSON Schema: 'nonsense' is not valid")
    raw["nodes"][1]["config"]["json_schema"] = {"$schema": {"no": 1}, "type": "object"}
    [problem] = problems(raw)
    assert problem.field == "config.json_schema.$schema"


# --- 2. malformed configs are problems, never crashes ------------------------------------


def test_an_if_else_case_without_a_label_is_a_schema_problem() -> None:
    config = {
        "cases": [{"conditions": [{"variable": "{{ start.question }}", "operator": "empty"}]}]
    }
    found = problems(one_node("if_else", config, labelled=True))
    assert [(p.node, p.field) for p in found] == [("n", "config.cases[0]")]
    assert "'label' is a required property" in found[0].message


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("if_else", {"cases": "abc"}, "config.cases"),
        ("if_else", {"cases": ["abc"]}, "config.cases[0]"),
        ("if_else", {"cases": [{"label": 3, "conditions": []}]}, "config.cases[0].conditions"),
        ("classifier", {"model": "m", "input": "x", "classes": "abc"}, "config.classes"),
        ("classifier", {"model": "m", "input": "x", "classes": [{"description": "d"}]},
         "config.classes[0]"),
        ("classifier", {"model": "m", "input": "x", "classes": {"label": "a"}}, "config.classes"),
    ],
)  # fmt: skip
def test_a_malformed_branching_config_reports_its_schema_problems(
    kind: str, config: dict[str, Any], field: str
) -> None:
    found = problems(one_node(kind, config, labelled=True))
    assert found and {p.node for p in found} == {"n"}
    assert field in [p.field for p in found], found
    assert not [p for p in found if p.field.startswith("edges")], found  # labels not read


def _wrong_values(schema: Mapping[str, Any]) -> list[Any]:
    """Values of the wrong shape for a property: every JSON type, and lists
    and objects whose items are of the wrong shape."""
    values: list[Any] = [None, True, 7, -1.5, "", "abc", "{{ nope", [], {}, ["x"], [1], [[]],
                         [None], {"x": 1}, {"label": 1}, {"$ref": "http://x.example/"}]  # fmt: skip
    items = schema.get("items")
    if isinstance(items, Mapping):
        for item in _wrong_values({}):
            values.append([item])
        wrong: list[Any] = [None, 1, "x", [], {}, [{}]]
        for key in items.get("properties", {}):
            values += [[{key: bad}] for bad in wrong]
        required = items.get("required", [])
        values.append([{k: "x" for k in required[:-1]}])
    return values


def _malformed_configs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, kind in sorted(TYPES.items()):
        yield name, {}
        yield name, {"unknown": 1}
        for key, sub in kind.schema.get("properties", {}).items():
            for value in _wrong_values(sub):
                yield name, {key: value}


@pytest.mark.parametrize(("kind", "config"), list(_malformed_configs()))
def test_a_malformed_config_never_raises_but_definition_error(
    kind: str, config: dict[str, Any]
) -> None:
    try:
        load(one_node(kind, config, labelled=True))
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, Problem) for p in exc.problems)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["label", "{{ start.question }}", "{{", "gt", "eq", "#/x", "http://x/"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["label", "conditions", "variable", "operator", "value", "$ref", "type",
                         "properties", "items", "x"]),
        inner, max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip


@st.composite
def configs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(TYPES)))
    keys = [*TYPES[kind].schema.get("properties", {}), "x"]
    config = draw(st.dictionaries(st.sampled_from(keys), JSON, max_size=4))
    return kind, config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_config_never_raises_but_definition_error(case: tuple[str, dict[str, Any]]) -> None:
    kind, config = case
    try:
        load(one_node(kind, config, labelled=True))
    except DefinitionError:
        pass


# --- 3. templates cannot change what they read -------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{% set _ = start.tags.append('x') %}",
        "{{ start.tags.append('x') }}",
        "{{ start.tags.pop() }}",
        "{{ start.tags.extend([1]) }}",
        "{{ start.tags.sort() }}",
        "{{ start.meta.update({'k': 2}) }}",
        "{{ start.meta.pop('k') }}",
        "{{ start.meta.clear() }}",
        "{{ start.meta.setdefault('z', 1) }}",
    ],
)
def test_a_template_cannot_mutate_an_upstream_value(source: str) -> None:
    scope = {"start": {"tags": ["a", "b"], "meta": {"k": 1}}}
    before = copy.deepcopy(scope)
    with pytest.raises(refs.TemplateError, match="unsafe"):
        refs.render(source, scope)
    with pytest.raises(refs.TemplateError, match="unsafe"):
        refs.evaluate(source.strip("{}% ").removeprefix("set _ = "), scope)
    assert scope == before


def test_reading_still_works_and_keys_come_before_methods() -> None:
    scope = {"start": {"tags": ["b", "a"], "meta": {"pop": "popped", "items": [1]}}}
    assert refs.render("{{ start.tags|sort|join(',') }}", scope) == "a,b"
    assert refs.render("{{ start.meta.pop }}", scope) == "popped"
    assert refs.render("{{ start.meta.items }}", scope) == [1]
    assert refs.render("{% set t = start.tags + ['c'] %}{{ t|length }}", scope) == "3"
    assert scope["start"]["tags"] == ["b", "a"]


async def test_a_run_cannot_change_the_definitions_input_defaults() -> None:
    raw = {
        "inputs": {"tags": {"type": "array", "default": ["a"]}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "t", "type": "template",
             "config": {"template": "{% set _ = start.tags.append('x') %}{{ start.tags }}"}},
        ],
        "edges": [{"from": "start", "to": "t"}],
    }  # fmt: skip
    definition = load(raw)
    for _ in range(2):
        r = Run(definition, check_inputs(definition, {}), services(), tenant="acme",
                run_id="r1", deadline=None)  # fmt: skip
        events = [e async for e in r.events()]
        got = finished(events, "t")
        assert got.status == FAILED and "unsafe" in got.error
    assert definition.inputs[0].default == ["a"]


# --- 4. templates are bounded -------------------------------------------------------------

SCOPE = {"start": {"n": 3, "items": list(range(1000)), "text": "x" * 600_000}}


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (f"{{{{ 'x' * {refs.MAX_SIZE + 1} }}}}", "'*' would make 1,000,001"),
        (f"{{{{ {refs.MAX_SIZE + 1} * 'x' }}}}", "'*' would make 1,000,001"),
        (f"{{{{ [0] * {refs.MAX_SIZE + 1} }}}}", "'*' would make 1,000,001"),
        ("{{ ['x' * 1000] * 1001 }}", "'*' would make 1,001,000"),
        ("{{ 'x' * 10**10 }}", "'*' would make 10,000,000,000"),
        ("{{ 2 ** 20000 }}", "'**' would make a 20,000-bit number"),
        ("{{ 2 ** 100000000 }}", "'**' would make a 100,000,000-bit number"),
        ("{{ (2 ** 6000) * (2 ** 6000) }}", "'*' would make a 12,002-bit number"),
        ("{{ start.text + start.text }}", "'+' would make 1,200,000"),
        ("{{ '%0999999999d' % 1 }}", "'%' would make 999,999,999"),
        ("{{ '%*d' % (10**9, 1) }}", "'%' would make 1,000,000,000"),
        ("{{ '%09999999999d'|format(1) }}", "'%' would make"),
        ("{{ 'x'|center(100000000) }}", "center would make 100,000,000"),
        ("{{ 'x'.center(100000000) }}", "str.center would make 100,000,000"),
        ("{{ 'x'.zfill(100000000) }}", "str.zfill would make 100,000,000"),
        ("{{ '{:>999999999}'.format(1) }}", "format would make 999,999,999"),
        ("{{ '{:{w}}'.format(1, w=10**9) }}", "format would make 1,000,000,000"),
        ("{{ (['x' * 1000] * 1000)|join('--') }}", "join would make 1,001,998"),
        ("{{ start.text|replace('x', 'yy') }}", "replace would make 1,200,000"),
        ("{{ 'a b'|indent(1000000) }}", "indent would make"),
        ("{{ start.items|batch(10**7, 0)|list }}", "batch would make 10,000,000"),
        ("{{ start.text ~ start.text }}", "the rendered text is longer than 1,000,000"),
        ("a{{ start.text }}{{ start.text }}", "the rendered text is longer than 1,000,000"),
        ("{% set a %}{{ start.text }}{{ start.text }}{% endset %}{{ a|length }}",
         "the rendered text is longer than 1,000,000"),
        ("{% macro m() %}{{ start.text }}{{ start.text }}{% endmacro %}{{ m()|length }}",
         "the rendered text is longer than 1,000,000"),
        ("x {{ [start.text, start.text] }}", "printing a value would make 1,200,000"),
        ("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
         "more than 250,000 loop iterations and calls"),
        ("{% for a in start.items %}{% for b in start.items %}{% endfor %}{% endfor %}",
         "more than 250,000 loop iterations and calls"),
        ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}",
         "more than 250,000 loop iterations and calls"),
    ],
)  # fmt: skip
def test_a_template_that_would_grow_too_big_is_refused(source: str, why: str) -> None:
    started = time.monotonic()
    with pytest.raises(refs.TemplateError, match="cannot render: ") as caught:
        refs.render(source, SCOPE)
    assert why in str(caught.value)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (f"{{{{ ('x' * {refs.MAX_SIZE})|length }}}}", refs.MAX_SIZE),
        ("{{ 2 ** 9000 > 0 }}", True),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ [1, 2] * 2 }}", [1, 2, 1, 2]),
        ("{{ start.n * 2 + 1 }}", 7),
        ("{{ 2 ** -1 }}", 0.5),
        ("{{ 7 % 4 }}", 3),
        ("{{ '%05.1f|%s' % (3.14159, 'a') }}", "003.1|a"),
        ("{{ '%(a)s' % {'a': 1} }}", "1"),
        ("{{ '{:>4}|{}'.format('a', 2) }}", "   a|2"),
        ("{{ 'a'|center(5) }}", "  a  "),
        ("{{ ['a', 'b']|join(', ') }}", "a, b"),
        ("{{ 'a-b'|replace('-', '+') }}", "a+b"),
        ("{{ [1, 2, 3]|batch(2, 0)|list }}", [[1, 2], [3, 0]]),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("{% for x in [[1, [2]], [3]] recursive %}{{ x if x is number else loop(x) }}{% endfor %}",
         "123"),
        ("{{ 'a' ~ start.n ~ 'b' }}", "a3b"),
        ("{% set ns = namespace(s='') %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}"
         "{% endfor %}{{ ns.s }}", "012"),
        ("{{ start.items|length }}", 1000),
    ],
)  # fmt: skip
def test_ordinary_templates_still_render(source: str, value: Any) -> None:
    assert refs.render(source, SCOPE) == value


def test_each_render_has_its_own_step_budget() -> None:
    source = "{% for a in range(400) %}{% for b in range(400) %}{% endfor %}{% endfor %}done"
    for _ in range(3):  # 160,400 steps each: under the budget every time
        assert refs.render(source, SCOPE) == "done"


def test_lipsum_is_not_available() -> None:
    with pytest.raises(refs.TemplateError):
        refs.render("{{ lipsum(1000000) }}", {})


async def test_a_runaway_template_fails_its_node() -> None:
    raw = one_node("template", {"template": "{{ 'ab' * (start.n * 1000000) }}"},
                   {"n": "integer"})  # fmt: skip
    events = await run(raw, {"n": 1})
    got = finished(events, "n")
    assert got.status == FAILED and "'*' would make 2,000,000" in got.error


# --- 4b. CEL is bounded where it can be --------------------------------------------------


def cel_workflow(expression: str) -> dict[str, Any]:
    raw = one_node("expression", {"expression": expression}, {"items": "array"})
    raw["outputs"] = {"value": "{{ n.value }}"}
    return raw


def test_macros_nested_three_deep_are_refused_when_saved() -> None:
    [problem] = problems(cel_workflow("start.items.map(a, start.items.map(b, "
                                      "start.items.filter(c, c > b).size()))"))  # fmt: skip
    assert (problem.node, problem.field) == ("n", "config.expression")
    assert "nests macros 3 deep (at most 2)" in problem.message
    load(cel_workflow("start.items.map(a, start.items.filter(b, b > a).size())"))
    load(cel_workflow("start.items.map(a, a).filter(b, b > 1).exists(c, c == 2)"))
    load(cel_workflow("'x.map(a, y.map(b, z.map(c, 1)))'"))  # in a string: not macros


async def test_cel_without_macros_reads_large_inputs() -> None:
    events = await run(cel_workflow("size(start.items) + 1"), {"items": list(range(20_000))})
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs == {"value": 20_001}


@pytest.mark.parametrize(
    ("expression", "depth"),
    [("start.items.map(x, x * 2).size()", 1),
     ("start.items.map(x, start.items.exists(y, y > x)).size()", 2)],
)  # fmt: skip
async def test_cel_inputs_are_capped_by_macro_nesting(expression: str, depth: int) -> None:
    most = MAX_VALUES[depth]  # `start` is one map entry (items), then the list's items
    events = await run(cel_workflow(expression), {"items": list(range(most - 1))})
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs == {"value": most - 1}
    started = time.monotonic()
    events = await run(cel_workflow(expression), {"items": list(range(most))})
    got = finished(events, "n")
    assert got.status == FAILED, got
    assert f"its inputs hold more than {most:,} values" in got.error
    assert f"macros nest {depth} deep" in got.error
    assert time.monotonic() - started < 1


# --- 5. secrets are masked however they come back ----------------------------------------


class EchoHttp:
    """Answers every request with the given headers and body, JSON."""

    def __init__(self, headers: Mapping[str, str], body: str) -> None:
        self.headers = {"Content-Type": "application/json", **headers}
        self.body = body
        self.sent: list[Mapping[str, str]] = []

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], *_: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        self.sent.append(dict(headers))
        return 200, self.headers, self.body.encode()


class Secrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    async def reveal(self, tenant: str, names: Sequence[str]) -> dict[str, str]:
        return {n: self.values[n] for n in names}


async def http_call(
    http: EchoHttp, secrets: Mapping[str, str], headers: Mapping[str, str]
) -> NodeFinished:
    raw = one_node("http_request", {"url": "https://api.example/v1", "headers": dict(headers)})
    events = await run(raw, {}, services(http=http, secrets=Secrets(secrets)))
    got = finished(events, "n")
    assert got.status == SUCCEEDED, got.error
    return got


def leaks(value: Any, *needles: str) -> list[str]:
    text = json.dumps(value, ensure_ascii=False) + repr(value)
    return [n for n in needles if n in text]


async def test_a_secret_that_begins_another_does_not_unmask_its_rest() -> None:
    short, long = "tok-123", "tok-123-and-the-rest-42"
    body = json.dumps({"echo": long, "other": short})
    http = EchoHttp({"X-Echo": long}, body)
    got = await http_call(http, {"A": short, "B": long}, {"X-A": "{{ secrets.A }}",
                                                          "X-B": "{{ secrets.B }}"})  # fmt: skip
    assert http.sent[0]["X-B"] == long  # sent as it is
    assert got.outputs["json"] == {"echo": "***", "other": "***"}
    assert got.outputs["headers"]["x-echo"] == "***"
    assert leaks(got.outputs, "-and-the-rest-42", short) == []


@pytest.mark.parametrize(
    "written",
    [
        "s3cr3t\\/path\\/42",  # `/` escaped, as PHP and others write it
        "\\u0073\\u0033cr3t/path/42",  # letters as \\u escapes
        "s3cr3t\\u002fpath/42",
    ],
)
async def test_a_secret_echoed_json_escaped_is_masked(written: str) -> None:
    secret = "s3cr3t/path/42"
    body = '{"echo": "' + written + '", "n": 1, "' + written + '": true}'
    assert json.loads(body)["echo"] == secret  # the server did echo it
    http = EchoHttp({"X-Json": '{"k": "' + written + '"}', "X-" + secret: "1"}, body)
    got = await http_call(http, {"K": secret}, {"Authorization": "Bearer {{ secrets.K }}"})
    assert got.outputs["json"] == {"echo": "***", "n": 1, "***": True}
    assert json.loads(got.outputs["body"]) == got.outputs["json"]
    assert json.loads(got.outputs["headers"]["x-json"]) == {"k": "***"}
    assert "x-***" in got.outputs["headers"]
    assert leaks(got.outputs, secret, written, "cr3t") == []


# --- 6. a secret header needs a written-out host -----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "{{ start.question }}",
        "https://{{ start.question }}/v1",
        "https://api.example.com{{ start.question }}",  # "@evil.example/" would move it
        "{{ start.question }}://api.example.com/v1",
        "https://api.{{ start.question }}.example/v1",
        "https://user:{{ start.question }}@api.example.com/",
    ],
)
def test_a_templated_host_is_refused_when_headers_read_secrets(url: str) -> None:
    raw = one_node("http_request", {"url": url, "headers": {"X-Key": "{{ secrets.KEY }}"}})
    [problem] = problems(raw)
    assert (problem.node, problem.field) == ("n", "config.url")
    assert "the headers read secrets, so the scheme and host must be written out" in problem.message


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://api.example.com/v1/{{ start.question }}", {"X-Key": "{{ secrets.KEY }}"}),
        ("https://api.example.com?q={{ start.question }}", {"X-Key": "{{ secrets.KEY }}"}),
        ("HTTP://api.example.com:8443/{{ start.question }}", {"X-Key": "k {{ secrets.KEY }}"}),
        ("https://api.example.com/v1", {"X-Key": "{{ secrets.KEY }}"}),
        ("{{ start.question }}", {"X-Key": "{{ start.question }}"}),  # no secret: any URL
    ],
)
def test_a_written_out_host_is_accepted(url: str, headers: dict[str, str]) -> None:
    raw = one_node("http_request", {"url": url, "headers": headers})
    load(raw)
