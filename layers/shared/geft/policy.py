"""The declarative decision policy: ordered rules over session facts; the first rule that matches decides.

Document (JSON)::

    {"name": str, "version": str,                    (optional; recorded with every decision)
     "default": "accept" | "reject" | "review",
     "onMissingFacts": "review" | "reject",          (optional; default "review")
     "rules": [{"name": str, "when": {FIELD: {OP: VALUE, ...}, ...},
                "decision": "accept" | "reject" | "review", "reason": "CODE"}]}   (reason optional)

Semantics, in full:

* Rules are tried in order; the first rule whose every condition holds decides; otherwise ``default``
  decides. All conditions of a rule (every field, every operator on a field) must hold: there is no OR,
  write two rules.
* **Fail closed.** A fact is *unknown* when it is absent, null, of the wrong type for its field, or outside
  the field's documented values (the risk levels: ``Low``, ``Medium``, ``High``, ``Unknown``; so ``"HIGH"``
  is unknown, never ``High``). A rule whose conditions cannot be checked because of an unknown fact, and
  none of whose known conditions already fails, is *undetermined*. An undetermined ``reject`` or ``review``
  rule stops the evaluation: the guarantee gets ``onMissingFacts`` (rule ``missing-facts``, reason
  ``MISSING_FACTS``) and the decision records which facts were missing. An undetermined ``accept`` rule
  accepts nothing (evaluation goes on). So no guarantee is accepted while a fact that could have rejected
  it is missing.
* Number fields compare as exact ``Decimal`` (0.1 + 0.2 == 0.3, 100.10 == 100.1). Policy numbers are read
  like ``json.loads(text, parse_float=Decimal)``; int, Decimal and JSON-syntax numeral strings are accepted,
  a float given in Python is converted through ``str`` (0.1 -> Decimal("0.1")). ``true``/``false`` are
  never numbers. ``lt``/``lte``/``gt``/``gte`` are valid on number fields only.
* String fields compare exactly: case-sensitive, no trimming. A rule comparing a field with documented
  values against anything else (``"high"``, ``"Critical"``) can never hold: validation warns about it.
* Boolean fields compare strictly: ``true`` never equals ``1``.
* ``in``/``not_in`` take a non-empty list of values of the field's type.

Validation collects every problem in the document and raises one ``PolicyError`` listing each on its own
line, naming the rule (``rule 'name' (rules[i])``, or ``rules[i] (unnamed)``) and what is wrong. Warnings
(``DecisionPolicy.warnings``) never stop a policy. Check a file offline: ``geft-ops policy check FILE``.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from geft.canonical import sha256_of
from geft.errors import PolicyError
from geft.models import Decision, PolicyIdentity, Verdict

DEFAULT_RULE: Final = "default"
"""``Decision.rule`` when no rule matched; reserved, so no rule may take this name."""
MISSING_FACTS_RULE: Final = "missing-facts"
"""``Decision.rule`` when an undetermined reject/review rule stopped the evaluation; reserved."""
MISSING_FACTS_REASON: Final = "MISSING_FACTS"
_RESERVED_RULES: Final = frozenset({DEFAULT_RULE, MISSING_FACTS_RULE})
_MISSING_FACTS_VERDICTS: Final = frozenset({Verdict.REVIEW, Verdict.REJECT})

DEFAULT_POLICY_JSON: Final = (
    '{"name": "default", "version": "2", "default": "accept", "onMissingFacts": "review", "rules": ['
    '{"name": "no-guarantee", "when": {"guaranteeOffered": {"eq": false}}, "decision": "reject", '
    '"reason": "NO_GUARANTEE"}, '
    '{"name": "shortfall", "when": {"shortfall": {"gt": 0}}, "decision": "reject", "reason": "SHORTFALL"}, '
    '{"name": "high-risk", "when": {"overallRiskLevel": {"in": ["High"]}}, "decision": "reject", '
    '"reason": "HIGH_RISK"}, '
    '{"name": "unknown-risk", "when": {"overallRiskLevel": {"in": ["Unknown"]}}, "decision": "review", '
    '"reason": "RISK_UNKNOWN"}]}'
)
"""The shipped policy (also policies/default.json and the template's DecisionPolicy default)."""

RISK_LEVELS: Final = frozenset({"Low", "Medium", "High", "Unknown"})
"""The risk-level values this service knows (flinks-geft.md §5.4: "Unknown" documented, the rest inferred)."""


class FieldKind(Enum):
    """The type of a fact; it decides which operands and operators a condition on it may use."""

    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class FieldSpec:
    kind: FieldKind
    values: frozenset[str] | None = None  # the documented values; anything else is an unknown fact


FIELDS: Final[Mapping[str, FieldSpec]] = MappingProxyType(
    {
        "amount": FieldSpec(FieldKind.NUMBER),
        "currency": FieldSpec(FieldKind.STRING),
        "referenceId": FieldSpec(FieldKind.STRING),
        "guaranteeOffered": FieldSpec(FieldKind.BOOLEAN),
        "highestDebitAmountToGuarantee": FieldSpec(FieldKind.NUMBER),
        "overallRiskLevel": FieldSpec(FieldKind.STRING, RISK_LEVELS),
        "transactionRiskLevel": FieldSpec(FieldKind.STRING, RISK_LEVELS),
        "userRiskLevel": FieldSpec(FieldKind.STRING, RISK_LEVELS),
        "otherRiskLevel": FieldSpec(FieldKind.STRING, RISK_LEVELS),
        "availableBalance": FieldSpec(FieldKind.NUMBER),
        "shortfall": FieldSpec(FieldKind.NUMBER),
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

_TOP_LEVEL_KEYS: Final = ("name", "version", "default", "onMissingFacts", "rules")
_REQUIRED_TOP_LEVEL_KEYS: Final = ("default", "rules")
_RULE_KEYS: Final = ("name", "when", "decision", "reason")
_REQUIRED_RULE_KEYS: Final = ("name", "when", "decision")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_REASON_CODE: Final = re.compile(r"[A-Z][A-Z0-9_]{1,39}")
_LABEL_MAX_CHARS: Final = 64

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


def known_fact(name: str, value: object) -> Scalar | None:
    """The fact as its field's type, or None when it is unknown (absent, wrong type, undocumented value)."""
    spec = FIELDS[name]
    typed = _typed(spec.kind, value)
    if spec.values is not None and typed not in spec.values:
        return None
    return typed


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    operand: Operand

    def holds(self, facts: Mapping[str, object]) -> bool | None:
        """True or False, or None when the fact is unknown."""
        fact = known_fact(self.field, facts.get(self.field))
        return None if fact is None else _COMPARISONS[self.op](fact, self.operand)


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    decision: Verdict
    reason: str | None = None

    def evaluate(self, facts: Mapping[str, object]) -> tuple[bool | None, tuple[str, ...]]:
        """(True, ()) matched; (False, ()) a known condition fails; (None, missing) undetermined."""
        missing: list[str] = []
        for condition in self.conditions:
            held = condition.holds(facts)
            if held is False:
                return False, ()
            if held is None and condition.field not in missing:
                missing.append(condition.field)
        return (None, tuple(missing)) if missing else (True, ())

    def to_document(self) -> dict[str, object]:
        when: dict[str, dict[str, object]] = {}
        for condition in self.conditions:
            when.setdefault(condition.field, {})[condition.op] = _document_value(condition.operand)
        document: dict[str, object] = {"name": self.name, "when": when, "decision": self.decision.value}
        if self.reason:
            document["reason"] = self.reason
        return document


@dataclass(frozen=True)
class DecisionPolicy:
    """A validated policy. Build it with ``from_json`` or ``from_document``, never directly."""

    default: Verdict
    rules: tuple[Rule, ...]
    name: str | None = None
    version: str | None = None
    on_missing_facts: Verdict = Verdict.REVIEW
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> DecisionPolicy:
        """Parse and validate a policy; numbers are read as exact Decimals, duplicate keys are errors."""
        try:
            document = json.loads(
                text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
            )
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN/Infinity, duplicate keys
            raise _policy_error([f"policy: not valid JSON: {exc}"]) from exc
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: object) -> DecisionPolicy:
        """Validate a parsed document; raises one PolicyError naming every problem found."""
        problems: list[str] = []
        warnings: list[str] = []
        policy = _parse_policy(document, problems, warnings)
        if policy is None or problems:
            raise _policy_error(problems)
        return replace(policy, warnings=tuple(warnings))

    @property
    def fields_read(self) -> frozenset[str]:
        """Every fact a rule of this policy reads."""
        return frozenset(condition.field for rule in self.rules for condition in rule.conditions)

    @property
    def identity(self) -> PolicyIdentity:
        return PolicyIdentity(self.name, self.version, _content_hash(self.to_document()))

    def decide(self, facts: Mapping[str, object]) -> Decision:
        inputs = _inputs(facts)
        identity = self.identity
        unresolved: list[str] = []
        for rule in self.rules:
            matched, missing = rule.evaluate(facts)
            if matched:
                return Decision(rule.decision, rule.name, inputs, rule.reason, tuple(unresolved), identity)
            if matched is None:
                if rule.decision is not Verdict.ACCEPT:
                    return Decision(
                        self.on_missing_facts,
                        MISSING_FACTS_RULE,
                        inputs,
                        MISSING_FACTS_REASON,
                        _merged(unresolved, missing),
                        identity,
                    )
                unresolved = list(_merged(unresolved, missing))  # an unverifiable accept accepts nothing
        return Decision(self.default, DEFAULT_RULE, inputs, None, tuple(unresolved), identity)

    def to_document(self) -> dict[str, object]:
        """The policy as a document ``from_document`` accepts; numbers as json.loads(parse_float=Decimal)."""
        document: dict[str, object] = {}
        if self.name is not None:
            document["name"] = self.name
        if self.version is not None:
            document["version"] = self.version
        document["default"] = self.default.value
        document["onMissingFacts"] = self.on_missing_facts.value
        document["rules"] = [rule.to_document() for rule in self.rules]
        return document


def _merged(first: Sequence[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def _content_hash(document: Mapping[str, object]) -> str:
    """sha256 of the canonical document (sorted keys, exact numbers): two spellings of one policy agree."""
    return "sha256:" + sha256_of(document)[:16]


# --- validation --------------------------------------------------------------------------------------------


def _parse_policy(document: object, problems: list[str], warnings: list[str]) -> DecisionPolicy | None:
    if not isinstance(document, Mapping):
        problems.append(f"policy: expected a JSON object, got {_show(document)}")
        return None
    problems.extend(
        f"policy: unknown top-level key {key!r} (expected: {', '.join(_TOP_LEVEL_KEYS)})"
        for key in document
        if key not in _TOP_LEVEL_KEYS
    )
    problems.extend(
        f"policy: missing top-level key {key!r}" for key in _REQUIRED_TOP_LEVEL_KEYS if key not in document
    )
    name = _parse_label(document, "name", problems)
    version = _parse_label(document, "version", problems)
    default = (
        _parse_verdict(document["default"], "policy: default", frozenset(Verdict), problems)
        if "default" in document
        else None
    )
    on_missing = Verdict.REVIEW
    if "onMissingFacts" in document:
        parsed = _parse_verdict(
            document["onMissingFacts"], "policy: onMissingFacts", _MISSING_FACTS_VERDICTS, problems
        )
        on_missing = parsed or on_missing
    rules = _parse_rules(document["rules"], problems, warnings) if "rules" in document else ()
    if default is None:
        return None
    return DecisionPolicy(
        default=default, rules=rules, name=name, version=version, on_missing_facts=on_missing
    )


def _parse_label(document: Mapping[str, object], key: str, problems: list[str]) -> str | None:
    if key not in document:
        return None
    value = document[key]
    if isinstance(value, str) and value.strip() and len(value) <= _LABEL_MAX_CHARS and value.isprintable():
        return value
    problems.append(
        f"policy: {key} must be a printable string of 1-{_LABEL_MAX_CHARS} characters, got {_show(value)}"
    )
    return None


def _parse_rules(rules: object, problems: list[str], warnings: list[str]) -> tuple[Rule, ...]:
    if not isinstance(rules, list | tuple):
        problems.append(f"policy: rules: expected a list of rules, got {_show(rules)}")
        return ()
    parsed: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(rules):
        rule = _parse_rule(index, raw, problems, warnings)
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


def _parse_rule(index: int, raw: object, problems: list[str], warnings: list[str]) -> Rule | None:
    label = _rule_label(index, raw)
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: expected a JSON object, got {_show(raw)}")
        return None
    before = len(problems)
    problems.extend(
        f"{label}: unknown key {key!r} (expected: {', '.join(_RULE_KEYS)})"
        for key in raw
        if key not in _RULE_KEYS
    )
    problems.extend(f"{label}: missing key {key!r}" for key in _REQUIRED_RULE_KEYS if key not in raw)
    name = raw.get("name")
    if "name" in raw and not (isinstance(name, str) and name.strip()):
        problems.append(f"{label}: name must be a non-empty string, got {_show(name)}")
    elif name in _RESERVED_RULES:
        problems.append(f"{label}: the name {name!r} is reserved for the policy's own decisions")
    reason = raw.get("reason")
    if "reason" in raw and not (isinstance(reason, str) and _REASON_CODE.fullmatch(reason)):
        problems.append(
            f"{label}: reason must be a code like SHORTFALL (A-Z, 0-9, _; 2-40 characters), "
            f"got {_show(reason)}"
        )
    conditions = _parse_when(raw["when"], label, problems, warnings) if "when" in raw else ()
    decision = (
        _parse_verdict(raw["decision"], label, frozenset(Verdict), problems) if "decision" in raw else None
    )
    if len(problems) > before or not isinstance(name, str) or decision is None:
        return None
    return Rule(
        name=name,
        conditions=conditions,
        decision=decision,
        reason=reason if isinstance(reason, str) else None,
    )


def _parse_when(when: object, label: str, problems: list[str], warnings: list[str]) -> tuple[Condition, ...]:
    if not isinstance(when, Mapping):
        problems.append(f"{label}: when: expected an object of field conditions, got {_show(when)}")
        return ()
    if not when:
        problems.append(f"{label}: when: is empty; a rule needs at least one condition")
    conditions: list[Condition] = []
    for field_name, operators in when.items():
        if field_name not in FIELDS:
            problems.append(f"{label}: when: unknown field {field_name!r}{_did_you_mean(field_name, FIELDS)}")
        elif not isinstance(operators, Mapping) or not operators:
            problems.append(
                f'{label}: when.{field_name}: expected a non-empty object of operators like {{"eq": ...}}, '
                f"got {_show(operators)}"
            )
        else:
            conditions.extend(_parse_conditions(field_name, operators, label, problems, warnings))
    return tuple(conditions)


def _parse_conditions(
    field_name: str, operators: Mapping[Any, object], label: str, problems: list[str], warnings: list[str]
) -> Iterable[Condition]:
    spec = FIELDS[field_name]
    kind = spec.kind
    for op, raw in operators.items():
        where = f"{label}: when.{field_name}.{op}"
        if op not in OPERATORS:
            expected = ", ".join(_COMPARISONS)
            problems.append(
                f"{where}: unknown operator {op!r}{_did_you_mean(op, OPERATORS)} (one of: {expected})"
            )
            continue
        if op in ORDERING_OPERATORS and kind is not FieldKind.NUMBER:
            problems.append(
                f"{where}: operator {op!r} needs a number field; {field_name!r} is a {kind.value}"
            )
            continue
        if op in LIST_OPERATORS:
            items = tuple(_typed(kind, item) for item in raw) if isinstance(raw, list | tuple) else ()
            if not items or any(item is None for item in items):
                problems.append(f"{where}: expected a non-empty list of {kind.value}s, got {_show(raw)}")
                continue
            listed = tuple(item for item in items if item is not None)
            operand: Operand = listed
            values: tuple[Scalar, ...] = listed
        else:
            single = _typed(kind, raw)
            if single is None:
                problems.append(f"{where}: expected a {kind.value}, got {_show(raw)}")
                continue
            operand, values = single, (single,)
        if spec.values is not None:
            strangers = [value for value in values if value not in spec.values]
            if strangers:
                warnings.append(
                    f"{where}: {_show(list(strangers))} is not a value Flinks sends for {field_name} "
                    f"({', '.join(sorted(spec.values))}): this comparison can never hold"
                )
        yield Condition(field=field_name, op=op, operand=operand)


def _parse_verdict(
    value: object, where: str, allowed: frozenset[Verdict], problems: list[str]
) -> Verdict | None:
    if isinstance(value, str) and value in {verdict.value for verdict in allowed}:
        return Verdict(value)
    choices = ", ".join(sorted(verdict.value for verdict in allowed))
    problems.append(f"{where}: unknown decision {_show(value)} (one of: {choices})")
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
    for name, spec in FIELDS.items():
        value = facts.get(name)
        number = as_decimal(value) if spec.kind is FieldKind.NUMBER else None
        if number is not None:
            inputs[name] = str(number)
        elif isinstance(value, str | int):  # bool is an int
            inputs[name] = value
        elif value is not None:
            inputs[name] = repr(value)
    return inputs


def _document_value(operand: Operand) -> object:
    if isinstance(operand, tuple):
        return [_document_value(item) for item in operand]
    if isinstance(operand, Decimal) and operand.as_tuple().exponent == 0:
        return int(operand)
    return operand


def encode_json(value: object) -> str:
    """JSON text that writes Decimals as exact numerals (``json.dumps`` cannot)."""
    return _encode(value)


def _encode(value: object) -> str:
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
