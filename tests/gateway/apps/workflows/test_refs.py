"""refs: which variables a template reads, and how templates render."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.apps.workflows import refs
from gateway.errors import InvalidArgument

SCOPE: dict[str, Any] = {
    "start": {"question": "How many days?", "n": 3},
    "search": {
        "chunks": [{"text": "30 days.", "score": 0.8}, {"text": "Opens at 8.", "score": 0.3}],
        "top_score": 0.8,
        "count": 2,
    },
    "reply": {"text": "thirty", "json": {"days": 30}},
}


# --- references -------------------------------------------------------------------------


def test_references_of_plain_text_is_empty() -> None:
    assert refs.references("no variables here") == ()
    assert refs.references("") == ()


def test_references_attribute() -> None:
    assert refs.references("{{ search.top_score }}") == (("search", "top_score"),)


def test_references_nested_attribute_names_the_first_field() -> None:
    assert refs.references("{{ reply.json.days }}") == (("reply", "json"),)


def test_references_item() -> None:
    assert refs.references("{{ search['chunks'] }}") == (("search", "chunks"),)
    assert refs.references('{{ reply["json"]["days"] }}') == (("reply", "json"),)


def test_references_item_with_a_non_string_key_has_no_field() -> None:
    assert refs.references("{{ search[0] }}") == (("search", None),)
    assert refs.references("{{ search[start.question] }}") == (
        ("search", None),
        ("start", "question"),
    )


def test_references_through_filters_and_their_arguments() -> None:
    found = refs.references("{{ start.question | upper }} {{ reply.text | default(start.n) }}")
    assert set(found) == {("start", "question"), ("reply", "text"), ("start", "n")}
    assert len(found) == 3


def test_references_in_tests_and_conditions() -> None:
    found = refs.references("{% if search.count > 0 and reply.text is defined %}x{% endif %}")
    assert set(found) == {("search", "count"), ("reply", "text")}


def test_references_loop_variables_are_not_references() -> None:
    source = (
        "{% for c in search.chunks %}{{ loop.index }}: {{ c.text }} ({{ c['score'] }}){% endfor %}"
    )
    assert refs.references(source) == (("search", "chunks"),)


def test_references_set_variables_are_not_references() -> None:
    assert refs.references("{% set q = start.question %}{{ q | lower }}") == (
        ("start", "question"),
    )


def test_references_plain_names() -> None:
    assert refs.references("{{ start }} and {{ search }}") == (("start", None), ("search", None))


def test_references_each_once() -> None:
    assert refs.references("{{ start.n }}{{ start.n + start.n }}") == (("start", "n"),)


def test_references_syntax_error() -> None:
    with pytest.raises(refs.TemplateError, match=r"^line 1: unexpected '}'$"):
        refs.references("{{ start.question }")


# --- render -----------------------------------------------------------------------------


def test_render_plain_string_is_returned_as_is() -> None:
    assert refs.render("just text", SCOPE) == "just text"


def test_render_lone_expression_returns_the_native_value() -> None:
    chunks = refs.render("{{ search.chunks }}", SCOPE)
    assert isinstance(chunks, list) and chunks == SCOPE["search"]["chunks"]
    assert refs.render("{{ search.top_score }}", SCOPE) == 0.8
    assert refs.render("  {{ start.n * 2 }} ", SCOPE) == 6
    assert refs.render("{{ reply.json }}", SCOPE) == {"days": 30}
    assert refs.render("{{ search.count > 1 }}", SCOPE) is True


def test_render_mixed_template_returns_text() -> None:
    assert refs.render("n={{ start.n }}", SCOPE) == "n=3"
    assert refs.render("{{ start.n }}{{ start.n }}", SCOPE) == "33"
    source = "{% for c in search.chunks %}[{{ loop.index }}] {{ c.text }}\n{% endfor %}"
    assert refs.render(source, SCOPE) == "[1] 30 days.\n[2] Opens at 8.\n"
    assert refs.render("{% if reply.text %}yes{% endif %}", SCOPE) == "yes"


def test_render_filters() -> None:
    assert refs.render("{{ start.question | upper }}", SCOPE) == "HOW MANY DAYS?"
    assert refs.render("{{ search.chunks | map(attribute='text') | join(' ') }}", SCOPE) == (
        "30 days. Opens at 8."
    )


def test_render_undefined_node_is_empty() -> None:
    assert refs.render("{{ ghost.text }}", SCOPE) is None
    assert refs.text(refs.render("{{ ghost.text }}", SCOPE)) == ""
    assert refs.render("a{{ ghost.text }}b", SCOPE) == "ab"
    assert refs.render("a{{ ghost.text.deeper }}b", SCOPE) == "ab"
    assert refs.render("{{ start.missing }}", SCOPE) is None


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "x {{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ start.__class__ }}",
        "{{ start.items.__self__ }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
    ],
)
def test_render_sandbox_refuses_internals(source: str) -> None:
    with pytest.raises(refs.TemplateError, match="unsafe"):
        refs.render(source, SCOPE)


def test_evaluate_sandbox_refuses_internals() -> None:
    with pytest.raises(refs.TemplateError, match="unsafe"):
        refs.evaluate("reply.__class__", SCOPE)


def test_render_error_is_a_template_error() -> None:
    with pytest.raises(refs.TemplateError, match="cannot render"):
        refs.render("{{ start.n / 0 }}", SCOPE)
    with pytest.raises(refs.TemplateError, match="line 1"):
        refs.render("{{ start.n ", SCOPE)


def test_resolve_walks_dicts_and_lists_and_names_the_field() -> None:
    value = {"a": ["{{ start.n }}", "x {{ start.n }}"], "b": 2, "c": {"d": "{{ search.count }}"}}
    assert refs.resolve(value, SCOPE) == {"a": [3, "x 3"], "b": 2, "c": {"d": 2}}
    with pytest.raises(InvalidArgument) as caught:
        refs.resolve({"a": [1, "{{ start.n / 0 }}"]}, SCOPE, "config")
    assert caught.value.field == "config.a[1]"


def test_segments_split_text_and_expressions() -> None:
    assert refs.segments("A: {{ reply.text }}!") == [
        ("text", "A: "),
        ("expr", "reply.text"),
        ("text", "!"),
    ]
    assert refs.segments("{% if x %}y{% endif %}") is None
    assert refs.segments("{# note #}x") is None


def test_strings_lists_every_string_with_its_path() -> None:
    value = {"messages": [{"role": "user", "content": "{{ x }}"}], "k": 3}
    assert list(refs.strings(value, "config")) == [
        ("config.messages[0].role", "user"),
        ("config.messages[0].content", "{{ x }}"),
    ]
