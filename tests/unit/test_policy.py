"""The decision policy: operators, ordering, exact numbers, validation and the offline checker."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from geft.errors import PolicyError
from geft.models import Decision, Verdict
from geft.policy import (
    DEFAULT_POLICY_JSON,
    DEFAULT_RULE,
    MISSING_FACTS_RULE,
    DecisionPolicy,
    as_decimal,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = DecisionPolicy.from_json(DEFAULT_POLICY_JSON)


def _one_rule(field: str, op: str, operand: object) -> DecisionPolicy:
    return DecisionPolicy.from_document(
        {"default": "accept", "rules": [{"name": "r", "when": {field: {op: operand}}, "decision": "reject"}]}
    )


def _rule(name: object = "r", **overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": name, "when": {"amount": {"gt": 0}}, "decision": "reject"}
    rule.update(overrides)
    return {key: value for key, value in rule.items() if value is not None}


def _problems(document: object) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        DecisionPolicy.from_document(document)
    header, *problems = str(caught.value).splitlines()
    assert header.startswith("invalid decision policy (")
    return [problem.removeprefix("  - ") for problem in problems]


# --- operators ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "op", "operand", "facts", "holds"),
    [
        # eq / ne on numbers, strings, booleans
        ("amount", "eq", 100, {"amount": Decimal("100.00")}, True),
        ("amount", "eq", 100, {"amount": Decimal("100.01")}, False),
        ("amount", "eq", 100, {}, None),
        ("amount", "ne", 100, {"amount": Decimal("99")}, True),
        ("amount", "ne", 100, {"amount": 100}, False),
        ("amount", "ne", 100, {}, None),
        ("amount", "ne", 100, {"amount": None}, None),
        ("currency", "eq", "CAD", {"currency": "CAD"}, True),
        ("currency", "eq", "CAD", {"currency": "cad"}, False),
        ("currency", "ne", "CAD", {"currency": "USD"}, True),
        ("currency", "ne", "CAD", {"currency": "CAD"}, False),
        ("currency", "ne", "CAD", {}, None),
        ("guaranteeOffered", "eq", False, {"guaranteeOffered": False}, True),
        ("guaranteeOffered", "eq", False, {"guaranteeOffered": True}, False),
        ("guaranteeOffered", "eq", False, {}, None),
        ("guaranteeOffered", "ne", True, {"guaranteeOffered": False}, True),
        ("guaranteeOffered", "ne", True, {"guaranteeOffered": True}, False),
        # in / not_in
        ("overallRiskLevel", "in", ["Medium", "High"], {"overallRiskLevel": "High"}, True),
        ("overallRiskLevel", "in", ["Medium", "High"], {"overallRiskLevel": "Low"}, False),
        ("overallRiskLevel", "in", ["Medium", "High"], {}, None),
        ("overallRiskLevel", "not_in", ["Low"], {"overallRiskLevel": "High"}, True),
        ("overallRiskLevel", "not_in", ["Low"], {"overallRiskLevel": "Low"}, False),
        ("overallRiskLevel", "not_in", ["Low"], {}, None),
        ("amount", "in", [10, "20.5"], {"amount": Decimal("20.50")}, True),
        ("amount", "not_in", [10], {"amount": Decimal("10.0")}, False),
        # ordering
        ("amount", "lt", 100, {"amount": Decimal("99.99")}, True),
        ("amount", "lt", 100, {"amount": Decimal("100")}, False),
        ("amount", "lt", 100, {}, None),
        ("amount", "lte", 100, {"amount": Decimal("100.00")}, True),
        ("amount", "lte", 100, {"amount": Decimal("100.01")}, False),
        ("amount", "lte", 100, {}, None),
        ("amount", "gt", 100, {"amount": Decimal("100.01")}, True),
        ("amount", "gt", 100, {"amount": Decimal("100")}, False),
        ("amount", "gt", 100, {}, None),
        ("amount", "gte", 100, {"amount": 100}, True),
        ("amount", "gte", 100, {"amount": Decimal("99.99")}, False),
        ("amount", "gte", 100, {}, None),
        # facts absent or of the wrong type are unknown, whatever the operator: the rule is undetermined
        ("amount", "gt", 0, {"amount": "lots"}, None),
        ("amount", "gt", 0, {"amount": True}, None),
        ("amount", "ne", 0, {"amount": True}, None),
        ("guaranteeOffered", "eq", True, {"guaranteeOffered": 1}, None),
        ("guaranteeOffered", "ne", True, {"guaranteeOffered": 1}, None),
        ("guaranteeOffered", "eq", False, {"guaranteeOffered": 0}, None),
        ("currency", "ne", "CAD", {"currency": 124}, None),
        # facts given as numeral strings or floats are numbers
        ("amount", "gt", 0, {"amount": "0.01"}, True),
        ("amount", "eq", "0.1", {"amount": 0.1}, True),
    ],
)
def test_condition_holds(
    field: str, op: str, operand: object, facts: dict[str, object], holds: bool | None
) -> None:
    # GIVEN a policy whose only rule rejects on one condition, accepting by default
    policy = _one_rule(field, op, operand)

    # WHEN it decides the facts
    decision = policy.decide(facts)

    # THEN the rule decides exactly when the condition holds; an unknown fact never lets it accept
    expected = {
        True: (Verdict.REJECT, "r"),
        False: (Verdict.ACCEPT, DEFAULT_RULE),
        None: (Verdict.REVIEW, MISSING_FACTS_RULE),
    }[holds]
    assert (decision.verdict, decision.rule) == expected
    assert decision.missing_facts == ((field,) if holds is None else ())


def test_all_conditions_of_a_rule_must_hold() -> None:
    # GIVEN a rule with two fields and two operators on one field
    policy = DecisionPolicy.from_document(
        {
            "default": "accept",
            "rules": [
                {
                    "name": "mid-cad",
                    "when": {"currency": {"eq": "CAD"}, "amount": {"gte": 10, "lt": 100}},
                    "decision": "reject",
                }
            ],
        }
    )

    # WHEN / THEN it matches only when every condition holds
    assert policy.decide({"currency": "CAD", "amount": 50}).rule == "mid-cad"
    assert policy.decide({"currency": "CAD", "amount": 100}).rule == DEFAULT_RULE
    assert policy.decide({"currency": "USD", "amount": 50}).rule == DEFAULT_RULE
    # one known condition failing settles it, whatever is unknown; otherwise an unknown fact stops it
    assert policy.decide({"amount": 500}).rule == DEFAULT_RULE
    assert policy.decide({"amount": 50}).rule == MISSING_FACTS_RULE


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"amount": 5}, ("accept", "small")),
        ({"amount": 50}, ("reject", "medium")),
        ({"amount": 500}, ("reject", "any-positive")),
        ({"amount": 0}, ("review", DEFAULT_RULE)),
        ({}, ("review", MISSING_FACTS_RULE)),
    ],
)
def test_first_matching_rule_decides_else_default(
    facts: dict[str, object], expected: tuple[str, str]
) -> None:
    # GIVEN overlapping rules and a review default
    policy = DecisionPolicy.from_document(
        {
            "default": "review",
            "rules": [
                {"name": "small", "when": {"amount": {"gt": 0, "lt": 10}}, "decision": "accept"},
                {"name": "medium", "when": {"amount": {"gt": 0, "lt": 100}}, "decision": "reject"},
                {"name": "any-positive", "when": {"amount": {"gt": 0}}, "decision": "reject"},
            ],
        }
    )

    # WHEN it decides
    decision = policy.decide(facts)

    # THEN the first match in document order wins, else the default
    assert (decision.verdict.value, decision.rule) == expected


# --- the shipped default policy ----------------------------------------------------------------------------

GOOD = {
    "amount": Decimal("100.00"),
    "currency": "CAD",
    "guaranteeOffered": True,
    "highestDebitAmountToGuarantee": Decimal("150"),
    "shortfall": Decimal("-50.00"),
    "overallRiskLevel": "Low",
}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (GOOD, ("accept", DEFAULT_RULE)),
        ({**GOOD, "guaranteeOffered": False}, ("reject", "no-guarantee")),
        ({**GOOD, "shortfall": Decimal("0.01")}, ("reject", "shortfall")),
        ({**GOOD, "shortfall": Decimal("0.00")}, ("accept", DEFAULT_RULE)),
        ({**GOOD, "overallRiskLevel": "High"}, ("reject", "high-risk")),
        ({**GOOD, "overallRiskLevel": "Medium"}, ("accept", DEFAULT_RULE)),
        ({**GOOD, "overallRiskLevel": "Unknown"}, ("review", "unknown-risk")),
        # a value Flinks does not send is an unknown fact, never a near miss: "high" is not High
        ({**GOOD, "overallRiskLevel": "high"}, ("review", MISSING_FACTS_RULE)),
        ({**GOOD, "overallRiskLevel": "HIGH"}, ("review", MISSING_FACTS_RULE)),
        ({**GOOD, "guaranteeOffered": False, "overallRiskLevel": "High"}, ("reject", "no-guarantee")),
        # partial facts: a missing fact a reject rule needs sends the guarantee to review, never accept
        ({}, ("review", MISSING_FACTS_RULE)),
        ({"amount": Decimal("100")}, ("review", MISSING_FACTS_RULE)),
        ({**GOOD, "shortfall": None}, ("review", MISSING_FACTS_RULE)),
        ({"guaranteeOffered": False}, ("reject", "no-guarantee")),
    ],
)
def test_default_policy(facts: dict[str, object], expected: tuple[str, str]) -> None:
    # GIVEN the shipped default policy
    # WHEN it decides
    decision = DEFAULT_POLICY.decide(facts)

    # THEN
    assert (decision.verdict.value, decision.rule) == expected


def test_default_policy_text_and_file_agree() -> None:
    # GIVEN the constant and the pretty-printed file
    shipped = (REPO / "policies" / "default.json").read_text(encoding="utf-8")

    # WHEN / THEN they are the same policy, with the same content hash, and the constant re-reads as itself
    assert DecisionPolicy.from_json(shipped) == DEFAULT_POLICY
    assert DecisionPolicy.from_json(shipped).identity == DEFAULT_POLICY.identity
    assert DEFAULT_POLICY.to_document() == json.loads(DEFAULT_POLICY_JSON)


def test_example_policy_is_valid() -> None:
    # GIVEN the README's conservative example
    text = (REPO / "policies" / "examples" / "conservative.json").read_text(encoding="utf-8")

    # WHEN it is loaded
    policy = DecisionPolicy.from_json(text)

    # THEN it rejects by default and accepts only a fully known, low-risk, covered CAD debit
    assert policy.decide({}).verdict is Verdict.REJECT
    low_risk = {
        **GOOD,
        "overallRiskLevel": "Low",
        "transactionRiskLevel": "Low",
        "userRiskLevel": "Low",
        "otherRiskLevel": "Low",
        "availableBalance": Decimal("200"),
    }
    assert policy.decide(low_risk) == Decision(
        Verdict.ACCEPT, "guaranteed-low-risk", policy.decide(low_risk).inputs, "LOW_RISK", (), policy.identity
    )
    assert policy.decide({**low_risk, "userRiskLevel": "Medium"}).rule == "user-risk"
    assert policy.decide({**low_risk, "availableBalance": Decimal("0")}).rule == "overdrawn"


# --- exact numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy_text", "facts", "expected_rule"),
    [
        # 100.10 - 100.1 is exactly 0: no shortfall
        ('{"shortfall": {"gt": 0}}', {"shortfall": Decimal("100.10") - Decimal("100.1")}, DEFAULT_RULE),
        ('{"amount": {"eq": 0.3}}', {"amount": Decimal("0.1") + Decimal("0.2")}, "r"),
        ('{"amount": {"eq": 0.30}}', {"amount": "0.3"}, "r"),
        ('{"amount": {"gt": 0.1}}', {"amount": "0.10"}, DEFAULT_RULE),
        ('{"amount": {"lte": 1e3}}', {"amount": 1000}, "r"),
        ('{"amount": {"gt": 99999999999999999.99}}', {"amount": "100000000000000000.00"}, "r"),
        # float arithmetic done by a caller is not undone: 0.1 + 0.2 is 0.30000000000000004
        ('{"amount": {"eq": 0.3}}', {"amount": 0.1 + 0.2}, DEFAULT_RULE),
    ],
)
def test_numbers_compare_exactly(policy_text: str, facts: dict[str, object], expected_rule: str) -> None:
    # GIVEN a policy written as JSON text with one rule
    text = f'{{"default": "accept", "rules": [{{"name": "r", "when": {policy_text}, "decision": "reject"}}]}}'
    policy = DecisionPolicy.from_json(text)

    # WHEN it decides
    decision = policy.decide(facts)

    # THEN numbers compared as exact decimals
    assert decision.rule == expected_rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (100, Decimal("100")),
        (Decimal("100.10"), Decimal("100.10")),
        ("100.10", Decimal("100.10")),
        ("-1e3", Decimal("-1000")),
        (0.1, Decimal("0.1")),
        (True, None),
        (False, None),
        (None, None),
        ("", None),
        (" 1", None),
        ("1_000", None),
        ("NaN", None),
        (Decimal("NaN"), None),
        (float("inf"), None),
        ([1], None),
    ],
)
def test_as_decimal(value: object, expected: Decimal | None) -> None:
    # GIVEN / WHEN
    result = as_decimal(value)

    # THEN numbers become exact Decimals; booleans, non-numerals and non-finite values are not numbers
    assert result == expected


def test_decision_inputs_are_json_safe_and_replay() -> None:
    # GIVEN facts with Decimals, a float, a field the policy does not know and a null
    facts: dict[str, object] = {
        "amount": Decimal("100.10"),
        "shortfall": 0.5,
        "guaranteeOffered": True,
        "overallRiskLevel": "Low",
        "currency": None,
        "unrelated": "ignored",
    }

    # WHEN the policy decides
    decision = DEFAULT_POLICY.decide(facts)

    # THEN the inputs are the policy's fields as JSON, numbers as exact strings, and replaying them agrees
    assert decision.inputs == {
        "amount": "100.10",
        "guaranteeOffered": True,
        "overallRiskLevel": "Low",
        "shortfall": "0.5",
    }
    assert json.loads(json.dumps(decision.inputs)) == decision.inputs
    assert DEFAULT_POLICY.decide(decision.inputs) == decision
    assert decision.rule == "shortfall"


@pytest.mark.parametrize(
    "document",
    [
        {"default": "reject", "rules": []},
        {
            "default": "accept",
            "rules": [
                {
                    "name": "mixed",
                    "when": {
                        "amount": {"gte": Decimal("10.50"), "lt": 1000},
                        "currency": {"in": ["CAD", "USD"]},
                        "guaranteeOffered": {"ne": False},
                    },
                    "decision": "reject",
                }
            ],
        },
    ],
)
def test_round_trip(document: dict[str, Any]) -> None:
    # GIVEN a valid policy
    policy = DecisionPolicy.from_document(document)

    # WHEN it is written out and read back
    # THEN nothing changes (the written document spells out the onMissingFacts default)
    assert policy.to_document() == {**document, "onMissingFacts": "review"}
    assert DecisionPolicy.from_document(policy.to_document()) == policy
    assert DecisionPolicy.from_document(policy.to_document()).identity == policy.identity


def test_programmatic_floats_and_numeral_strings_are_accepted_as_operands() -> None:
    # GIVEN operands as a float and as a numeral string
    policy = DecisionPolicy.from_document(
        {
            "default": "accept",
            "rules": [{"name": "r", "when": {"amount": {"gt": 0.1, "lt": "0.3"}}, "decision": "reject"}],
        }
    )

    # WHEN / THEN the float means its decimal string, not its binary value
    assert policy.decide({"amount": "0.2"}).rule == "r"
    assert policy.decide({"amount": "0.1"}).rule == DEFAULT_RULE
    assert policy.rules[0].conditions[0].operand == Decimal("0.1")


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (["not", "an", "object"], 'policy: expected a JSON object, got ["not", "an", "object"]'),
        ({"rules": []}, "policy: missing top-level key 'default'"),
        ({"default": "accept"}, "policy: missing top-level key 'rules'"),
        ({"default": "accept", "rules": [], "priority": 2}, "policy: unknown top-level key 'priority'"),
        (
            {"default": "accept", "rules": [], "version": 2},
            "policy: version must be a printable string of 1-64 characters, got 2",
        ),
        (
            {"default": "accept", "rules": [], "onMissingFacts": "accept"},
            'policy: onMissingFacts: unknown decision "accept" (one of: reject, review)',
        ),
        (
            {"default": "accept", "rules": [_rule("big", reason="too big")]},
            "rule 'big' (rules[0]): reason must be a code like SHORTFALL",
        ),
        (
            {"default": "maybe", "rules": []},
            'policy: default: unknown decision "maybe" (one of: accept, reject, review)',
        ),
        ({"default": None, "rules": []}, "policy: default: unknown decision null"),
        ({"default": "accept", "rules": {}}, "policy: rules: expected a list of rules, got {}"),
        ({"default": "accept", "rules": ["r"]}, 'rules[0] (unnamed): expected a JSON object, got "r"'),
        ({"default": "accept", "rules": [_rule(None)]}, "rules[0] (unnamed): missing key 'name'"),
        (
            {"default": "accept", "rules": [_rule("  ")]},
            "rules[0] (unnamed): name must be a non-empty string",
        ),
        (
            {"default": "accept", "rules": [_rule(7)]},
            "rules[0] (unnamed): name must be a non-empty string, got 7",
        ),
        (
            {"default": "accept", "rules": [_rule("default")]},
            "rule 'default' (rules[0]): the name 'default' is reserved for the policy's own decisions",
        ),
        (
            {"default": "accept", "rules": [_rule("missing-facts")]},
            "rule 'missing-facts' (rules[0]): the name 'missing-facts' is reserved",
        ),
        (
            {"default": "accept", "rules": [_rule("big", priority=1)]},
            "rule 'big' (rules[0]): unknown key 'priority'",
        ),
        (
            {"default": "accept", "rules": [{"name": "big", "when": {"amount": {"gt": 0}}}]},
            "rule 'big' (rules[0]): missing key 'decision'",
        ),
        (
            {"default": "accept", "rules": [{"name": "big", "decision": "reject"}]},
            "rule 'big' (rules[0]): missing key 'when'",
        ),
        (
            {"default": "accept", "rules": [_rule("big", decision="escalate")]},
            "rule 'big' (rules[0]): unknown decision \"escalate\" (one of: accept, reject, review)",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={})]},
            "rule 'big' (rules[0]): when: is empty; a rule needs at least one condition",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when=[])]},
            "rule 'big' (rules[0]): when: expected an object of field conditions, got []",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amout": {"gt": 0}})]},
            "rule 'big' (rules[0]): when: unknown field 'amout' (did you mean 'amount'?)",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": {}})]},
            "rule 'big' (rules[0]): when.amount: expected a non-empty object of operators",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": 5})]},
            "rule 'big' (rules[0]): when.amount: expected a non-empty object of operators",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": {"gtt": 0}})]},
            "rule 'big' (rules[0]): when.amount.gtt: unknown operator 'gtt' (did you mean 'gt'?)",
        ),
        (
            {"default": "accept", "rules": [_rule("risky", when={"overallRiskLevel": {"gt": "Low"}})]},
            "rule 'risky' (rules[0]): when.overallRiskLevel.gt: operator 'gt' needs a number field; "
            "'overallRiskLevel' is a string",
        ),
        (
            {"default": "accept", "rules": [_rule("flag", when={"guaranteeOffered": {"lte": 1}})]},
            "rule 'flag' (rules[0]): when.guaranteeOffered.lte: operator 'lte' needs a number field",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": {"gt": "ten"}})]},
            "rule 'big' (rules[0]): when.amount.gt: expected a number, got \"ten\"",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": {"gt": True}})]},
            "rule 'big' (rules[0]): when.amount.gt: expected a number, got true",
        ),
        (
            {"default": "accept", "rules": [_rule("flag", when={"guaranteeOffered": {"eq": 1}})]},
            "rule 'flag' (rules[0]): when.guaranteeOffered.eq: expected a boolean, got 1",
        ),
        (
            {"default": "accept", "rules": [_rule("cur", when={"currency": {"eq": 124}})]},
            "rule 'cur' (rules[0]): when.currency.eq: expected a string, got 124",
        ),
        (
            {"default": "accept", "rules": [_rule("cur", when={"currency": {"in": []}})]},
            "rule 'cur' (rules[0]): when.currency.in: expected a non-empty list of strings, got []",
        ),
        (
            {"default": "accept", "rules": [_rule("cur", when={"currency": {"not_in": "CAD"}})]},
            "rule 'cur' (rules[0]): when.currency.not_in: expected a non-empty list of strings, got \"CAD\"",
        ),
        (
            {"default": "accept", "rules": [_rule("big", when={"amount": {"in": [1, "x"]}})]},
            "rule 'big' (rules[0]): when.amount.in: expected a non-empty list of numbers, got [1, \"x\"]",
        ),
        (
            {"default": "accept", "rules": [_rule("dup"), _rule("other"), _rule("dup")]},
            "rule 'dup' (rules[2]): duplicate rule name (first used by rules[0])",
        ),
    ],
)
def test_validation_names_the_problem(document: object, expected: str) -> None:
    # GIVEN an invalid document
    # WHEN it is loaded
    problems = _problems(document)

    # THEN exactly one problem is reported, naming the rule and what is wrong
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_validation_reports_every_problem_at_once() -> None:
    # GIVEN a document with problems at the top level and in several rules
    document = {
        "default": "maybe",
        "rules": [
            {"name": "ok", "when": {"amount": {"gt": 0}}, "decision": "reject"},
            {"name": "typo", "when": {"amout": {"gt": 0}, "currency": {"lt": 5}}, "decision": "reject"},
            {"when": {"shortfall": {"gt": "x"}}, "decision": "nope"},
        ],
        "extra": True,
    }

    # WHEN it is loaded
    problems = _problems(document)

    # THEN every problem is listed, one per line
    assert problems == [
        "policy: unknown top-level key 'extra' (expected: name, version, default, onMissingFacts, rules)",
        'policy: default: unknown decision "maybe" (one of: accept, reject, review)',
        "rule 'typo' (rules[1]): when: unknown field 'amout' (did you mean 'amount'?)",
        "rule 'typo' (rules[1]): when.currency.lt: operator 'lt' needs a number field; "
        "'currency' is a string",
        "rules[2] (unnamed): missing key 'name'",
        'rules[2] (unnamed): when.shortfall.gt: expected a number, got "x"',
        'rules[2] (unnamed): unknown decision "nope" (one of: accept, reject, review)',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "policy: not valid JSON: Expecting property name"),
        ("", "policy: not valid JSON: Expecting value"),
        (
            '{"default": "accept", "rules": [], "default": "reject"}',
            "policy: not valid JSON: duplicate key 'default'",
        ),
        (
            '{"default": "accept", "rules": '
            '[{"name": "n", "when": {"amount": {"gt": NaN}}, "decision": "reject"}]}',
            "policy: not valid JSON: NaN is not a number",
        ),
    ],
)
def test_from_json_rejects_text_that_is_not_a_policy_json_document(text: str, expected: str) -> None:
    # GIVEN / WHEN
    with pytest.raises(PolicyError) as caught:
        DecisionPolicy.from_json(text)

    # THEN
    assert str(caught.value).splitlines()[1].removeprefix("  - ").startswith(expected)


# --- fail closed, identity, reasons and warnings ------------------------------------------------------------


def test_an_accept_rule_that_cannot_be_checked_accepts_nothing() -> None:
    # GIVEN a fail-closed policy: reject by default, accept only what a rule proves
    policy = DecisionPolicy.from_document(
        {
            "default": "reject",
            "rules": [{"name": "covered", "when": {"shortfall": {"lte": 0}}, "decision": "accept"}],
        }
    )

    # WHEN the fact the accept rule needs is missing
    decision = policy.decide({"amount": 100})

    # THEN the default decides, and the decision records what could not be checked
    assert (decision.verdict, decision.rule, decision.missing_facts) == (
        Verdict.REJECT,
        DEFAULT_RULE,
        ("shortfall",),
    )


def test_on_missing_facts_can_reject_instead_of_review() -> None:
    policy = DecisionPolicy.from_document(
        {"default": "accept", "onMissingFacts": "reject", "rules": [_rule("big")]}
    )

    decision = policy.decide({})

    assert (decision.verdict, decision.rule, decision.reason) == (
        Verdict.REJECT,
        MISSING_FACTS_RULE,
        "MISSING_FACTS",
    )


def test_every_decision_names_its_policy_and_its_rule_reason() -> None:
    policy = DecisionPolicy.from_document(
        {
            "name": "tight",
            "version": "2026-12",
            "default": "accept",
            "rules": [_rule("big", reason="TOO_BIG")],
        }
    )

    decision = policy.decide({"amount": 5})

    assert decision.reason == "TOO_BIG"
    assert decision.policy is not None
    assert (decision.policy.name, decision.policy.version) == ("tight", "2026-12")
    assert decision.policy.content_hash.startswith("sha256:")
    assert decision.policy.label() == f"tight 2026-12 ({decision.policy.content_hash})"


def test_the_content_hash_ignores_spelling_and_changes_with_content() -> None:
    spelled = DecisionPolicy.from_json(
        '{"rules": [{"decision": "reject", "when": {"amount": {"gt": 10.0}}, "name": "r"}], '
        '"default": "accept"}'
    )
    same = DecisionPolicy.from_json(
        '{"default": "accept", "rules": '
        '[{"name": "r", "when": {"amount": {"gt": 10}}, "decision": "reject"}]}'
    )
    different = DecisionPolicy.from_json(
        '{"default": "accept", "rules": '
        '[{"name": "r", "when": {"amount": {"gt": 11}}, "decision": "reject"}]}'
    )

    assert spelled.identity.content_hash == same.identity.content_hash
    assert different.identity.content_hash != same.identity.content_hash


@pytest.mark.parametrize("value", ["HIGH", "high", "Critical"])
def test_a_comparison_with_a_value_flinks_does_not_send_is_a_warning(value: str) -> None:
    policy = DecisionPolicy.from_document(
        {
            "default": "accept",
            "rules": [{"name": "risky", "when": {"overallRiskLevel": {"in": [value]}}, "decision": "reject"}],
        }
    )

    assert len(policy.warnings) == 1
    assert f'"{value}"' in policy.warnings[0]
    assert "can never hold" in policy.warnings[0]
    assert DEFAULT_POLICY.warnings == ()


def test_fields_read_are_every_field_a_rule_names() -> None:
    assert DEFAULT_POLICY.fields_read == frozenset({"guaranteeOffered", "shortfall", "overallRiskLevel"})


def test_the_templates_default_policy_is_the_shipped_one(template: dict[str, Any]) -> None:
    # GIVEN the DecisionPolicy parameter's default, which a stack deployed without overrides runs
    deployed = template["Parameters"]["DecisionPolicy"]["Default"]

    # THEN it is policies/default.json, name, version and content hash included
    assert DecisionPolicy.from_json(deployed).identity == DEFAULT_POLICY.identity
