"""The cost limit: how many fields a query may make the gateway resolve.

A field costs 1 for each time it resolves: inside a list field that takes
`first` (connections) or `k` (search), everything below counts that many times
(the argument's literal, its default when absent, the largest allowed when it
is a variable, whose value validation cannot see). Depth, token and alias
limits come from strawberry's own extensions (schema.py)."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
)

from gateway.graphql.pagination import MAX_FIRST

_FAN_OUT = ("first", "k")


def _times(field: FieldNode, definition: Any) -> int:
    for name in _FAN_OUT:
        if definition is None or name not in definition.args:
            continue
        given = next((a.value for a in field.arguments or () if a.name.value == name), None)
        if given is None:
            default = definition.args[name].default_value
            return default if isinstance(default, int) else MAX_FIRST
        return int(given.value) if isinstance(given, IntValueNode) else MAX_FIRST
    return 1


class _Walk:
    def __init__(self, context: ValidationContext) -> None:
        self.context = context

    def cost(
        self, selections: SelectionSetNode, parent: Any, times: int, seen: frozenset[str]
    ) -> int:
        total = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                fields = parent.fields if isinstance(parent, GraphQLObjectType) else {}
                definition = fields.get(node.name.value)
                total += times
                if node.selection_set is not None and definition is not None:
                    below = get_named_type(definition.type)
                    inner = times * _times(node, definition)
                    total += self.cost(node.selection_set, below, inner, seen)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                kind = self.context.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(node.selection_set, kind, times, seen)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
                fragment = self.context.get_fragment(node.name.value)
                if fragment is not None:  # an unknown one is another rule's error
                    kind = self.context.schema.get_type(fragment.type_condition.name.value)
                    total += self.cost(
                        fragment.selection_set, kind, times, seen | {node.name.value}
                    )
        return total


def cost_limit(max_cost: int) -> type[ValidationRule]:
    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            root = self.context.schema.get_root_type(node.operation)
            cost = _Walk(self.context).cost(node.selection_set, root, 1, frozenset())
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"query cost {cost} is above the limit of {max_cost}: ask for fewer"
                        " items (first, k) or fewer nested fields",
                        node,
                    )
                )

    return CostLimit
