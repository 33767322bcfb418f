"""`classifier`: a model picks one of several classes; each class is a branch.

    model: small
    input: "{{ start.question }}"
    classes:
      - {label: billing, description: invoices, payments, refunds}
      - {label: technical, description: errors, outages, how-to}
    instruction: "Questions about prices are billing."   # optional

The node writes the prompt itself (the classes and their descriptions, and
asks for one label) and reads the reply: the label alone (any case, quotes
and punctuation ignored), else the one label the reply names as a word. A
reply that names none, or several, fails the node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import ERROR_BRANCH, Node, Problem
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape
from gateway.apps.workflows.nodes.llm import call
from router.types import Message, Params

MAX_TOKENS = 32
_WORD = re.compile(r"[A-Za-z0-9_-]+")
_NOISE = " \t\r\n\"'`.,;:!?()[]{}*"


class Classifier(NodeType):
    name = "classifier"
    description = "A model sorts the input into one of the classes; each class is a branch."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "input", "classes"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "a model alias"},
            "input": {"type": "string", "description": "template: the text to classify"},
            "classes": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["label"],
                    "properties": {
                        "label": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                        "description": {"type": "string"},
                    },
                },
            },
            "instruction": {"type": "string", "description": "template: more guidance"},
        },
    }
    outputs: ClassVar[dict[str, str]] = {"label": "string"}
    literal_fields = frozenset({"model", "classes"})

    def branches(self, node: Node) -> tuple[str, ...]:
        """The classes' labels (those that are strings: a malformed config's
        schema problems say what is wrong with the others)."""
        classes = node.config.get("classes")
        if not isinstance(classes, list | tuple):
            return ()
        return tuple(
            c["label"]
            for c in classes
            if isinstance(c, Mapping) and isinstance(c.get("label"), str)
        )

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        labels = self.branches(node)
        problems = []
        if len(labels) < 2:
            problems.append(Problem(node.id, "config.classes", "needs at least 2 classes"))
        for i, label in enumerate(labels):
            f = f"config.classes[{i}].label"
            if label.lower() in (x.lower() for x in labels[:i]):
                problems.append(Problem(node.id, f, f"{label!r} is used twice"))
            elif label == ERROR_BRANCH:
                problems.append(Problem(node.id, f, f"{label!r} labels the error edges"))
        return problems

    async def run(self, ctx: NodeContext) -> Outcome:
        config = ctx.node.config
        classes = "\n".join(
            f"- {c['label']}" + (f": {c['description']}" if c.get("description") else "")
            for c in config["classes"]
        )
        system = f"Classify the user's text into exactly one of these classes:\n{classes}\n"
        instruction = refs.text(ctx.resolve("instruction"))
        if instruction:
            system += f"{instruction}\n"
        system += "Answer with the label of the class only, nothing else."
        messages = (Message("system", system), Message("user", refs.text(ctx.resolve("input"))))
        p = Params(temperature=0.0, max_tokens=MAX_TOKENS)
        text, _, usage = await call(ctx, config["model"], messages, p, stream=False)
        label = pick(text, self.branches(ctx.node))
        return Outcome({"label": label}, branch=label, usage=usage)


def pick(reply: str, labels: tuple[str, ...]) -> str:
    """The label `reply` names; NodeFailed quoting the reply when it names none or several."""
    by_lower = {label.lower(): label for label in labels}
    exact = by_lower.get(reply.strip(_NOISE).lower())
    if exact is not None:
        return exact
    words = {w.lower() for w in _WORD.findall(reply)}
    named = [label for low, label in by_lower.items() if low in words]
    if len(named) == 1:
        return named[0]
    shown = reply if len(reply) <= 200 else reply[:200] + "…"
    why = "names several classes" if named else "names no class"
    raise NodeFailed(f"the model's reply {why} ({', '.join(labels)}): {shown!r}")
