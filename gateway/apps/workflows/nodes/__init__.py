"""The node types, by name. Add one: a module here with a NodeType subclass,
listed below."""

from __future__ import annotations

from gateway.apps.workflows.nodes.aggregate import Aggregate
from gateway.apps.workflows.nodes.answer import Answer
from gateway.apps.workflows.nodes.base import NodeType
from gateway.apps.workflows.nodes.classifier import Classifier
from gateway.apps.workflows.nodes.end import End
from gateway.apps.workflows.nodes.expression import Expression
from gateway.apps.workflows.nodes.extractor import Extractor
from gateway.apps.workflows.nodes.http_request import HttpRequest
from gateway.apps.workflows.nodes.if_else import IfElse
from gateway.apps.workflows.nodes.llm import Llm
from gateway.apps.workflows.nodes.map import Map
from gateway.apps.workflows.nodes.retrieval import Retrieval
from gateway.apps.workflows.nodes.start import Start
from gateway.apps.workflows.nodes.task import TaskNode
from gateway.apps.workflows.nodes.template import Template

TYPES: dict[str, NodeType] = {
    t.name: t
    for t in (
        Start(), End(), Answer(), Llm(), Retrieval(), Template(), IfElse(), Aggregate(),
        Map(), Classifier(), Extractor(), TaskNode(),
        HttpRequest(), Expression(),
    )
}  # fmt: skip
