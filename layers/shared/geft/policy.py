"""The declarative decision policy: ordered rules over session facts; the first rule that matches decides.

Document (JSON)::

    {"default": "accept" | "reject",
     "rules": [{"name": str, "when": {FIELD: {OP: VALUE, ...}, ...}, "decision": "accept" | "reject"}]}

Semantics, in full:

* Rules are tried in order; the first rule whose every condition holds decides; otherwise ``default``
  decides. All conditions of a rule (every field, every operator on a field) must hold: there is no OR,
  write two rules.
* A condition on a fact that is absent, null or of the wrong type for its field never holds, whatever the
  operator (``ne`` and ``not_in`` included). To fail closed on a missing fact, use ``"default": "reject"``
  and an accept rule that requires the fact.
* Number fields compare as exact ``Decimal`` (0.1 + 0.2 == 0.3, 100.10 == 100.1). Policy numbers are read
  like ``json.loads(text, parse_float=Decimal)``; int, Decimal and JSON-syntax numeral strings are accepted,
  a float given in Python is converted through ``str`` (0.1 -> Decimal("0.1")). ``true``/``false`` are
  never numbers. ``lt``/``lte``/``gt``/``gte`` are valid on number fields only.
* String fields compare exactly: case-sensitive, no trimming ("High" != "high").
* Boolean fields compare strictly: ``true`` never equals ``1``.
* ``in``/``not_in`` take a non-empty list of values of the field's type.

Validation collects every problem in the document and raises one ``PolicyError`` listing each on its own
line, naming the rule (``rule 'name' (rules[i])``, or ``rules[i] (unnamed)``) and what is wrong.

Offline checker: ``python -m geft.policy check FILE [--facts JSON]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import operator
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from geft.errors import PolicyError

# Adding "review" later is this one line (plus the processor's handling of the new outcome).
DECISIONS: Final[frozenset[str]] = frozenset({"accept", "reject", "review"})

DEFAULT_RULE: Final = "default"
"""``Decision.rule`` when no rule matched; reserved, so no rule may take this name."""

DEFAULT_POLICY_JSON: Final = (
    '{"default": "accept", "rules": ['
    '{"name": "no-guarantee", "when": {"guaranteeOffered": {"eq": false}}, "decision": "reject"}, '
    '{"name": "shortfall", "when": {"shortfall": {"gt": 0}}, "decision": "reject"}, '
    '{"name": "high-risk", "when": {"overallRiskLevel": {"in": ["High"]}}, "decision": "reject"}]}'
)


class FieldKind(Enum):
    """The type of a fact; it decides which operands and operators a condition on it may use."""

    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"


FIELDS: Final[Mapping[str, FieldKind]] = MappingProxyType(
    {
        "amount": FieldKind.NUMBER,
        "currency": FieldKind.STRING,
        "referenceId": FieldKind.STRING,
        "guaranteeOffered": FieldKind.BOOLEAN,
        "highestDebitAmountToGuarantee": FieldKind.NUMBER,
        "overallRiskLevel": FieldKind.STRING,
        "transactionRiskLevel": FieldKind.STRING,
        "userRiskLevel": FieldKind.STRING,
        "otherRiskLevel": FieldKind.STRING,
        "availableBalance": FieldKind.NUMBER,
        "shortfall": FieldKind.NUMBER,
    }
)

_COMPARISONS: Final[Mapping[str, Callable[[Any, Any], bool]]] = MappingProxyType(
    {
        "eq": operator.eq,
        "ne": operator.ne,
        "in": lambda fact, operand: fact in operand,
        "not_in": lambda fact, operand: fact not in operand,
        "lt": operator.lt,
        "lte": operator.le,
        "gt": operator.gt,
        "gte": operator.ge,
    }
)
OPERATORS: Final[frozenset[str]] = frozenset(_COMPARISONS)
ORDERING_OPERATORS: Final = frozenset({"lt", "lte", "gt", "gte"})
LIST_OPERATORS: Final = frozenset({"in", "not_in"})

_TOP_LEVEL_KEYS: Final = ("default", "rules")
_RULE_KEYS: Final = ("name", "when", "decision")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")

Scalar = Decimal | str | bool
Operand = Scalar | tuple[Scalar, ...]


def as_decimal(value: object) -> Decimal | None:
    """The exact Decimal of a number, or None when ``value`` is not one.

    Accepts int, finite Decimal, str in JSON number syntax ("100.10", "-1", "1e3") and float (through
    ``str``, so 0.1 -> Decimal("0.1")). ``bool`` is never a number; NaN and infinities are not numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float):
        value = str(value)
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        return Decimal(value)
    return None


def _typed(kind: FieldKind, value: object) -> Scalar | None:
    """``value`` as the field kind's type, or None when it is not of that type."""
    if kind is FieldKind.NUMBER:
        return as_decimal(value)
    if kind is FieldKind.BOOLEAN:
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Decision:
    """What the policy decided, which rule decided it, and the facts it saw (JSON-safe: Decimal -> str)."""

    outcome: str
    rule: str
    inputs: dict[str, object]


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    operand: Operand

    def holds(self, facts: Mapping[str, object]) -> bool:
        fact = _typed(FIELDS[self.field], facts.get(self.field))
        return fact is not None and _COMPARISONS[self.op](fact, self.operand)


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    decision: str

    def matches(self, facts: Mapping[str, object]) -> bool:
        return all(condition.holds(facts) for condition in self.conditions)

    def to_document(self) -> dict[str, object]:
        when: dict[str, dict[str, object]] = {}
        for condition in self.conditions:
            when.setdefault(condition.field, {})[condition.op] = _document_value(condition.operand)
        return {"name": self.name, "when": when, "decision": self.decision}


@dataclass(frozen=True)
class DecisionPolicy:
    """A validated policy. Build it with ``from_json`` or ``from_document``, never directly."""

    default: str
    rules: tuple[Rule, ...]

    @classmethod
    def from_json(
        cls, text: str | bytes, *, allowed_decisions: Collection[str] = DECISIONS
    ) -> DecisionPolicy:
        """Parse and validate a policy; numbers are read as exact Decimals, duplicate keys are errors."""
        try:
            document = json.loads(
                text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
            )
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN/Infinity, duplicate keys
            raise _policy_error([f"policy: not valid JSON: {exc}"]) from exc
        return cls.from_document(document, allowed_decisions=allowed_decisions)

    @classmethod
    def from_document(
        cls, document: object, *, allowed_decisions: Collection[str] = DECISIONS
    ) -> DecisionPolicy:
        """Validate a parsed document; raises one PolicyError naming every problem found."""
        problems: list[str] = []
        policy = _parse_policy(document, frozenset(allowed_decisions), problems)
        if policy is None or problems:
            raise _policy_error(problems)
        return policy

    def decide(self, facts: Mapping[str, object]) -> Decision:
        inputs = _inputs(facts)
        for rule in self.rules:
            if rule.matches(facts):
                return Decision(outcome=rule.decision, rule=rule.name, inputs=inputs)
        return Decision(outcome=self.default, rule=DEFAULT_RULE, inputs=inputs)

    def to_document(self) -> dict[str, object]:
        """The policy as a document ``from_document`` accepts; numbers as json.loads(parse_float=Decimal)."""
        return {"default": self.default, "rules": [rule.to_document() for rule in self.rules]}

    def to_json(self) -> str:
        """The policy as JSON text, numbers written exactly (``from_json(p.to_json()) == p``)."""
        return _encode(self.to_document())


# --- validation --------------------------------------------------------------------------------------------


def _parse_policy(document: object, allowed: frozenset[str], problems: list[str]) -> DecisionPolicy | None:
    if not isinstance(document, Mapping):
        problems.append(f"policy: expected a JSON object, got {_show(document)}")
        return None
    problems.extend(
        f"policy: unknown top-level key {key!r} (expected: default, rules)"
        for key in document
        if key not in _TOP_LEVEL_KEYS
    )
    problems.extend(
        f"policy: missing top-level key {key!r}" for key in _TOP_LEVEL_KEYS if key not in document
    )
    default = (
        _parse_decision(document["default"], "policy: default", allowed, problems)
        if "default" in document
        else None
    )
    rules = _parse_rules(document["rules"], allowed, problems) if "rules" in document else ()
    return DecisionPolicy(default=default, rules=rules) if default is not None else None


def _parse_rules(rules: object, allowed: frozenset[str], problems: list[str]) -> tuple[Rule, ...]:
    if not isinstance(rules, list | tuple):
        problems.append(f"policy: rules: expected a list of rules, got {_show(rules)}")
        return ()
    parsed: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(rules):
        rule = _parse_rule(index, raw, allowed, problems)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name in first_index:
            problems.append(
                f"{_rule_label(index, raw)}: duplicate rule name (first used by rules[{first_index[name]}])"
            )
        elif isinstance(name, str):
            first_index[name] = index
        if rule is not None:
            parsed.append(rule)
    return tuple(parsed)


def _parse_rule(index: int, raw: object, allowed: frozenset[str], problems: list[str]) -> Rule | None:
    label = _rule_label(index, raw)
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: expected a JSON object, got {_show(raw)}")
        return None
    before = len(problems)
    problems.extend(
        f"{label}: unknown key {key!r} (expected: name, when, decision)"
        for key in raw
        if key not in _RULE_KEYS
    )
    problems.extend(f"{label}: missing key {key!r}" for key in _RULE_KEYS if key not in raw)
    name = raw.get("name")
    if "name" in raw and not (isinstance(name, str) and name.strip()):
        problems.append(f"{label}: name must be a non-empty string, got {_show(name)}")
    elif name == DEFAULT_RULE:
        problems.append(f"{label}: the name {DEFAULT_RULE!r} is reserved for the policy default")
    conditions = _parse_when(raw["when"], label, problems) if "when" in raw else ()
    decision = _parse_decision(raw["decision"], label, allowed, problems) if "decision" in raw else None
    if len(problems) > before or not isinstance(name, str) or decision is None:
        return None
    return Rule(name=name, conditions=conditions, decision=decision)


def _parse_when(when: object, label: str, problems: list[str]) -> tuple[Condition, ...]:
    if not isinstance(when, Mapping):
        problems.append(f"{label}: when: expected an object of field conditions, got {_show(when)}")
        return ()
    if not when:
        problems.append(f"{label}: when: is empty; a rule needs at least one condition")
    conditions: list[Condition] = []
    for field, operators in when.items():
        if field not in FIELDS:
            problems.append(f"{label}: when: unknown field {field!r}{_did_you_mean(field, FIELDS)}")
        elif not isinstance(operators, Mapping) or not operators:
            problems.append(
                f'{label}: when.{field}: expected a non-empty object of operators like {{"eq": ...}}, '
                f"got {_show(operators)}"
            )
        else:
            conditions.extend(_parse_conditions(field, operators, label, problems))
    return tuple(conditions)


def _parse_conditions(
    field: str, operators: Mapping[Any, object], label: str, problems: list[str]
) -> Iterable[Condition]:
    kind = FIELDS[field]
    for op, raw in operators.items():
        where = f"{label}: when.{field}.{op}"
        if op not in OPERATORS:
            expected = ", ".join(_COMPARISONS)
            problems.append(
                f"{where}: unknown operator {op!r}{_did_you_mean(op, OPERATORS)} (one of: {expected})"
            )
        elif op in ORDERING_OPERATORS and kind is not FieldKind.NUMBER:
            problems.append(f"{where}: operator {op!r} needs a number field; {field!r} is a {kind.value}")
        elif op in LIST_OPERATORS:
            items = tuple(_typed(kind, item) for item in raw) if isinstance(raw, list | tuple) else ()
            if not items or any(item is None for item in items):
                problems.append(f"{where}: expected a non-empty list of {kind.value}s, got {_show(raw)}")
            else:
                yield Condition(field=field, op=op, operand=tuple(item for item in items if item is not None))
        elif (operand := _typed(kind, raw)) is None:
            problems.append(f"{where}: expected a {kind.value}, got {_show(raw)}")
        else:
            yield Condition(field=field, op=op, operand=operand)


def _parse_decision(value: object, where: str, allowed: frozenset[str], problems: list[str]) -> str | None:
    if isinstance(value, str) and value in allowed:
        return value
    problems.append(f"{where}: unknown decision {_show(value)} (one of: {', '.join(sorted(allowed))})")
    return None


def _rule_label(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if isinstance(name, str) and name.strip():
        return f"rule {name!r} (rules[{index}])"
    return f"rules[{index}] (unnamed)"


def _did_you_mean(word: object, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _policy_error(problems: Sequence[str]) -> PolicyError:
    count = len(problems)
    header = f"invalid decision policy ({count} problem{'' if count == 1 else 's'}):"
    return PolicyError("\n".join([header, *(f"  - {problem}" for problem in problems)]))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


# --- output ------------------------------------------------------------------------------------------------


def _inputs(facts: Mapping[str, object]) -> dict[str, object]:
    """The facts for the policy's fields, JSON-safe; replaying them through ``decide`` decides the same."""
    inputs: dict[str, object] = {}
    for field, kind in FIELDS.items():
        value = facts.get(field)
        number = as_decimal(value) if kind is FieldKind.NUMBER else None
        if number is not None:
            inputs[field] = str(number)
        elif isinstance(value, str | int):  # bool is an int
            inputs[field] = value
        elif value is not None:
            inputs[field] = repr(value)
    return inputs


def _document_value(operand: Operand) -> object:
    if isinstance(operand, tuple):
        return [_document_value(item) for item in operand]
    if isinstance(operand, Decimal) and operand.as_tuple().exponent == 0:
        return int(operand)
    return operand


def _encode(value: object) -> str:
    """JSON text that writes Decimals as exact numerals (``json.dumps`` cannot)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(str(key))}: {_encode(item)}" for key, item in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_encode(item) for item in value) + "]"
    return json.dumps(value, default=repr)


def _show(value: object, limit: int = 60) -> str:
    text = _encode(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- offline checker ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geft.policy check FILE [--facts JSON]``: 0 valid, 1 invalid, 2 usage or I/O error."""
    parser = argparse.ArgumentParser(
        prog="python -m geft.policy", description="Check a G-EFT decision policy."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a policy file; optionally decide one facts document")
    check.add_argument("file", type=Path, help="policy JSON file")
    check.add_argument("--facts", metavar="JSON", help='facts to decide, e.g. \'{"amount": "100.00"}\'')
    args = parser.parse_args(argv)

    facts: object = None
    if args.facts is not None:
        try:
            facts = json.loads(args.facts, parse_float=Decimal)
        except ValueError as exc:
            parser.error(f"--facts is not valid JSON: {exc}")
        if not isinstance(facts, dict):
            parser.error("--facts must be a JSON object")
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        policy = DecisionPolicy.from_json(text)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"OK: {len(policy.rules)} rules, default {policy.default}")
    if isinstance(facts, dict):
        print(json.dumps(dataclasses.asdict(policy.decide(facts))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
