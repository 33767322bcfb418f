"""System prompt templates: Jinja2 in a sandbox, checked when an app is saved.

A template sees `chunks` (the retrieved passages: `text`, `collection`,
`document_id`, `chunk_id`, `score`, and `rerank_score`, none unless the app
reranks), `query` and `inputs` (the request's variables). The sandbox refuses
attribute tricks that reach Python internals; a syntax error or a sandbox
violation is reported at save time, naming the line.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from gateway.apps.retrieval import Passage
from gateway.errors import InvalidArgument

DEFAULT_TEMPLATE = (
    "Answer the question using only the context below. If the context does not "
    "hold the answer, say so.\n"
    "{% for c in chunks %}[{{ loop.index }}] {{ c.text }}\n{% endfor %}"
)
_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_FIELD = "app.prompt_template"


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def check(source: str) -> None:
    """Raise InvalidArgument unless `source` compiles and renders on sample data."""
    try:
        template = _compiled(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(_FIELD, f"line {exc.lineno}: {exc.message}") from None
    sample = [Passage("collections/sample", "doc", "doc#0", 1.0, "sample text")]
    _render(template, sample, "sample question", {})


def render(source: str, chunks: Sequence[Passage], query: str, inputs: Mapping[str, Any]) -> str:
    return _render(_compiled(source or DEFAULT_TEMPLATE), chunks, query, inputs)


def _render(
    template: jinja2.Template, chunks: Sequence[Passage], query: str, inputs: Mapping[str, Any]
) -> str:
    try:
        return template.render(chunks=list(chunks), query=query, inputs=dict(inputs))
    except jinja2.TemplateError as exc:  # sandbox SecurityError is a TemplateError
        raise InvalidArgument(_FIELD, f"cannot render: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise InvalidArgument(_FIELD, f"cannot render: {type(exc).__name__}: {exc}") from None
