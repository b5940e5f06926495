"""A template as deployed with one set of parameter values: what is known before deployment, resolved.

``apply_conditions``: resources and outputs whose ``Condition`` is false are dropped (the others lose
the attribute, and the template its Conditions: nothing is conditional any more), every ``Fn::If``
becomes the branch its condition chooses, and ``AWS::NoValue`` removes the key or list item it stands for.

``resolve_known`` also does what the ``AWS::LanguageExtensions`` transform does before SAM runs, in
Resources and Outputs (not in SAM's Globals): every ``Ref`` to a parameter (or a given pseudo parameter)
becomes its value, Number parameters as numbers;
``Fn::Sub``, ``Fn::Join``, ``Fn::Split`` and ``Fn::Select`` are evaluated once their arguments are known,
and an ``Fn::Sub`` that still names a resource keeps the rest for CloudFormation.

``failed_rules`` evaluates the template's ``Rules`` the way CloudFormation does before it changes
anything. Pure standard library; ``sam_transform`` runs it before SAM's transform.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_NO_VALUE = {"Ref": "AWS::NoValue"}
Lookup = Callable[[str], Any]
_PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")


class ConditionError(ValueError):
    """A condition cannot be evaluated (unknown name, parameter or function)."""


def evaluate_conditions(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, bool]:
    """Every condition of ``template`` evaluated with ``parameters`` (strings, as CloudFormation has them)."""
    definitions: Mapping[str, Any] = template.get("Conditions") or {}
    evaluator = _Evaluator(definitions, parameters)
    return {name: evaluator.condition(name, ()) for name in definitions}


def failed_rules(template: Mapping[str, Any], parameters: Mapping[str, str]) -> list[str]:
    """The ``AssertDescription`` of every rule assertion ``parameters`` break (empty: all hold)."""
    evaluator = _Evaluator(template.get("Conditions") or {}, parameters)
    failures = []
    for name, rule in (template.get("Rules") or {}).items():
        applies = "RuleCondition" not in rule or evaluator.truth(rule["RuleCondition"], ())
        for assertion in rule.get("Assertions", []) if applies else []:
            if not evaluator.truth(assertion["Assert"], ()):
                failures.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
    return failures


class _Evaluator:
    def __init__(self, definitions: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self._definitions = definitions
        self._parameters = parameters
        self._resolved: dict[str, bool] = {}

    def condition(self, name: str, seen: tuple[str, ...]) -> bool:
        if name in self._resolved:
            return self._resolved[name]
        if name not in self._definitions:
            raise ConditionError(f"unknown condition {name}")
        if name in seen:
            raise ConditionError(f"condition {name} refers to itself")
        self._resolved[name] = self.truth(self._definitions[name], (*seen, name))
        return self._resolved[name]

    def truth(self, expression: Any, seen: tuple[str, ...]) -> bool:
        if not isinstance(expression, Mapping) or len(expression) != 1:
            raise ConditionError(f"not a condition: {expression!r}")
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self.condition(str(argument), seen)
        if function == "Fn::Not":
            return not self.truth(argument[0], seen)
        if function == "Fn::And":
            return all(self.truth(item, seen) for item in argument)
        if function == "Fn::Or":
            return any(self.truth(item, seen) for item in argument)
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return left == right
        if function == "Fn::Contains":  # rules only
            candidates, item = argument
            return self.value(item) in {self.value(candidate) for candidate in candidates}
        raise ConditionError(f"{function} is not a condition function")

    def value(self, expression: Any) -> str:
        if isinstance(expression, Mapping) and set(expression) == {"Ref"}:
            name = expression["Ref"]
            if name not in self._parameters:
                raise ConditionError(f"condition refers to {name}, which has no value")
            return str(self._parameters[name])
        if isinstance(expression, bool):
            return str(expression).lower()
        if isinstance(expression, str | int | float):
            return str(expression)
        raise ConditionError(f"cannot compare {expression!r}")


def apply_conditions(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``template`` as deployed with ``parameters``: see the module docstring."""
    truths = evaluate_conditions(template, parameters)
    applied: dict[str, Any] = {}
    for section, content in template.items():
        if section == "Conditions":
            continue  # every use is resolved below
        if section in ("Resources", "Outputs") and isinstance(content, Mapping):
            applied[section] = {
                name: {key: value for key, value in _resolve(entry, truths).items() if key != "Condition"}
                for name, entry in content.items()
                if truths.get(str(entry.get("Condition")), True)
            }
        elif section == "Globals":
            applied[section] = _resolve(content, truths)
        else:
            applied[section] = content
    return applied


def _resolve(node: Any, truths: Mapping[str, bool]) -> Any:
    if isinstance(node, Mapping):
        if len(node) == 1 and "Fn::If" in node:
            name, when_true, when_false = node["Fn::If"]
            if name not in truths:
                raise ConditionError(f"Fn::If on unknown condition {name}")
            return _resolve(when_true if truths[name] else when_false, truths)
        resolved = {key: _resolve(child, truths) for key, child in node.items()}
        return {key: child for key, child in resolved.items() if child != _NO_VALUE}
    if isinstance(node, list):
        items = [_resolve(child, truths) for child in node]
        return [item for item in items if item != _NO_VALUE]
    return node


def resolve_known(
    template: Mapping[str, Any], parameters: Mapping[str, str], pseudo: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``apply_conditions``, then every intrinsic whose value is known before deployment resolved."""
    known: dict[str, Any] = dict(pseudo or {})
    for name, spec in (template.get("Parameters") or {}).items():
        if name in parameters:
            known[name] = _typed(parameters[name], spec.get("Type"))
    applied = apply_conditions(template, parameters)
    for section in ("Resources", "Outputs"):  # LanguageExtensions leaves Globals (SAM's) alone
        if section in applied:
            applied[section] = resolve_intrinsics(applied[section], known.get)
    return applied


def _typed(value: str, parameter_type: object) -> Any:
    if parameter_type == "Number":
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def resolve_intrinsics(node: Any, lookup: Lookup) -> Any:
    """``node`` with every intrinsic evaluated whose inputs ``lookup`` knows (a name, ``Id.Attribute``
    for ``Fn::GetAtt``; None: unknown); the rest is left for CloudFormation."""
    if isinstance(node, list):
        return [resolve_intrinsics(child, lookup) for child in node]
    if not isinstance(node, Mapping):
        return node
    if len(node) != 1:
        return {key: resolve_intrinsics(child, lookup) for key, child in node.items()}
    ((function, argument),) = node.items()
    if function in ("Ref", "Fn::GetAtt"):
        name = ".".join(map(str, argument)) if isinstance(argument, list) else str(argument)
        value = lookup(name)
        return node if value is None else value
    argument = resolve_intrinsics(argument, lookup)
    if function == "Fn::Sub":
        return _substitute(argument, lookup)
    evaluate = EVALUATED.get(function)
    return evaluate(*argument) if evaluate is not None and is_literal(argument) else {function: argument}


EVALUATED: dict[str, Callable[..., Any]] = {  # the intrinsic functions computed from their arguments
    "Fn::Join": lambda delimiter, items: str(delimiter).join(str(item) for item in items),
    "Fn::Split": lambda delimiter, text: str(text).split(str(delimiter)),
    "Fn::Select": lambda index, items: items[int(index)],
}


def _substitute(argument: Any, lookup: Lookup) -> Any:
    text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
    if not isinstance(text, str) or not is_literal(variables):
        return {"Fn::Sub": argument}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = variables[name] if name in variables else lookup(name)
        return str(value) if value is not None and is_literal(value) else match.group(0)

    result = _PLACEHOLDER.sub(replace, text)
    if _PLACEHOLDER.search(result):  # names a resource: CloudFormation substitutes the rest
        remaining = {name: value for name, value in variables.items() if f"${{{name}}}" in result}
        return {"Fn::Sub": [result, remaining] if remaining else result}
    return result


def is_literal(node: Any) -> bool:
    """True when ``node`` holds no intrinsic function anywhere."""
    if isinstance(node, list):
        return all(is_literal(child) for child in node)
    if isinstance(node, Mapping):
        if (len(node) == 1 and next(iter(node)) in ("Ref", "Condition")) or any(
            key.startswith("Fn::") for key in node
        ):
            return False
        return all(is_literal(child) for child in node.values())
    return True
