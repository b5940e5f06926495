"""Policy facts from both documented /details shapes and from a webhook that carried guaranteeDetails."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from geft.policy import DEFAULT_POLICY_JSON, DecisionPolicy
from geft.session_facts import (
    GuaranteeIdentity,
    RecordedDecision,
    ReportedStatus,
    decision_at_flinks,
    facts_from_session,
    reported_status,
)


def _loads(text: str) -> dict[str, Any]:
    """Parse like the Flinks adapter should: exact decimals."""
    parsed: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return parsed


CURRENT = _loads(
    """{
      "sessionId": "s-1", "status": "Pending", "step": {"current": "GuaranteeOffer"},
      "referenceId": "order-42", "amount": 100.10, "type": "EFT", "direction": "DEBIT", "currency": "CAD",
      "payor": {"firstName": "Ada", "account": {"institutionCode": "001", "accountNumber": "1234567",
                                                "availableBalance": 2500.5}},
      "guaranteeDetails": {"guaranteeOffered": true, "guaranteeAccepted": null,
                           "highestDebitAmountToGuarantee": 100.1, "overallRiskLevel": "Low",
                           "transactionRiskLevel": "Unknown", "userRiskLevel": "Low",
                           "otherRiskLevel": "Medium"}
    }"""
)

LEGACY = _loads(
    """{
      "sessionId": "s-2", "status": "Pending", "referenceId": "order-43", "amount": 250, "currency": "CAD",
      "payor": {"verifiedAccount": {"institutionName": "Bank", "accountType": "Chequing",
                                    "accountNumber": "7654321", "transitNumber": "00011",
                                    "institutionCode": "001"}},
      "guarantee": {"status": "Approved", "approvedAt": "2024-05-01T12:00:00Z", "coverage": 200.00},
      "created_at": "2024-05-01T11:59:00Z"
    }"""
)


CURRENT_FACTS = {  # every field read, money exactly, and 100.10 - 100.1 is a zero shortfall
    "amount": Decimal("100.10"),
    "currency": "CAD",
    "referenceId": "order-42",
    "guaranteeOffered": True,
    "highestDebitAmountToGuarantee": Decimal("100.1"),
    "overallRiskLevel": "Low",
    "transactionRiskLevel": "Unknown",
    "userRiskLevel": "Low",
    "otherRiskLevel": "Medium",
    "availableBalance": Decimal("2500.5"),
    "shortfall": Decimal("0.00"),
}
LEGACY_FACTS = {  # status and coverage map onto the current fields; no balance and no risk level
    "amount": Decimal("250"),
    "currency": "CAD",
    "referenceId": "order-43",
    "guaranteeOffered": True,
    "highestDebitAmountToGuarantee": Decimal("200.00"),
    "shortfall": Decimal("50.00"),
}


@pytest.mark.parametrize(
    ("details", "expected"),
    [pytest.param(CURRENT, CURRENT_FACTS, id="current"), pytest.param(LEGACY, LEGACY_FACTS, id="legacy")],
)
def test_documented_shape(details: dict[str, Any], expected: dict[str, Any]) -> None:
    # GIVEN a /details answer in one of the documented shapes
    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN each fact is read from where that shape keeps it
    assert facts == expected


def test_current_shape_is_accepted_by_the_default_policy() -> None:
    # GIVEN the facts of a current-shape answer
    facts = facts_from_session(CURRENT)

    # WHEN the default policy decides THEN it accepts
    assert DecisionPolicy.from_json(DEFAULT_POLICY_JSON).decide(facts).verdict == "accept"


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        ("Approved", True),
        ("offered", True),
        (" GRANTED ", True),
        ("Declined", False),
        ("rejected", False),
        ("Refused", False),
        ("Pending", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_legacy_status(status: object, offered: bool | None) -> None:
    # GIVEN a legacy guarantee with the status
    details = {**LEGACY, "guarantee": {"status": status}}

    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN known statuses map case-insensitively; anything else leaves guaranteeOffered absent
    assert facts.get("guaranteeOffered", None) is offered
    assert ("guaranteeOffered" in facts) is (offered is not None)


@pytest.mark.parametrize(
    ("coverage", "highest"),
    [
        (200, Decimal("200")),
        (Decimal("199.99"), Decimal("199.99")),
        ("199.99", Decimal("199.99")),
        ({"amount": Decimal("150.50"), "currency": "CAD"}, Decimal("150.50")),
        ({"currency": "CAD"}, None),
        (None, None),
        (True, None),
        ("all of it", None),
    ],
)
def test_legacy_coverage(coverage: object, highest: Decimal | None) -> None:
    # GIVEN a legacy guarantee with the coverage
    details = {**LEGACY, "guarantee": {"status": "Approved", "coverage": coverage}}

    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN a number (or coverage.amount) is the highest guaranteed debit; shortfall exists only with it
    assert facts.get("highestDebitAmountToGuarantee") == highest
    assert facts.get("shortfall") == (None if highest is None else Decimal("250") - highest)


@pytest.mark.parametrize(
    ("details", "webhook_guarantee_details", "webhook_body", "expected"),
    [
        pytest.param(
            None,
            {"guaranteeOffered": False, "highestDebitAmountToGuarantee": 0, "overallRiskLevel": "High"},
            {"amount": 10, "currency": "CAD"},
            {
                "amount": Decimal("10"),
                "currency": "CAD",
                "guaranteeOffered": False,
                "highestDebitAmountToGuarantee": Decimal("0"),
                "overallRiskLevel": "High",
                "shortfall": Decimal("10"),
            },
            id="explicit-webhook-block",
        ),
        pytest.param(
            None,
            None,
            {"referenceId": "r", "amount": "10.00", "guaranteeDetails": {"guaranteeOffered": True}},
            {"referenceId": "r", "amount": Decimal("10.00"), "guaranteeOffered": True},
            id="block-inside-webhook-body",
        ),
        pytest.param(
            {"amount": 20, "currency": "CAD", "guaranteeDetails": {"guaranteeOffered": True}},
            {"guaranteeOffered": False, "highestDebitAmountToGuarantee": 5},
            {"amount": 30, "currency": "USD", "referenceId": "from-webhook"},
            {
                "amount": Decimal("20"),
                "currency": "CAD",
                "referenceId": "from-webhook",
                "guaranteeOffered": True,
            },
            id="details-win-webhook-fills-gaps",
        ),
        pytest.param(
            {"amount": 20, "guaranteeDetails": None},
            {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 15},
            None,
            {
                "amount": Decimal("20"),
                "guaranteeOffered": True,
                "highestDebitAmountToGuarantee": Decimal("15"),
                "shortfall": Decimal("5"),
            },
            id="details-without-block-uses-webhook-block",
        ),
        pytest.param(None, None, None, {}, id="nothing-known"),
    ],
)
def test_webhook_carried_guarantee_details(
    details: dict[str, Any] | None,
    webhook_guarantee_details: dict[str, Any] | None,
    webhook_body: dict[str, Any] | None,
    expected: dict[str, object],
) -> None:
    # GIVEN what /details and the webhook carried
    # WHEN facts are built
    facts = facts_from_session(details, webhook_guarantee_details, webhook_body)

    # THEN /details wins, the webhook fills what it lacks, and the guarantee block is never mixed
    assert facts == expected


@pytest.mark.parametrize(
    ("changes", "absent"),
    [
        ({"amount": None}, {"amount", "shortfall"}),
        ({"currency": None}, {"currency"}),
        ({"referenceId": 42}, {"referenceId"}),
        ({"payor": {}}, {"availableBalance"}),
        ({"payor": {"account": {"availableBalance": None}}}, {"availableBalance"}),
        ({"payor": None}, {"availableBalance"}),
        (
            {"guaranteeDetails": {}},
            {
                "guaranteeOffered",
                "highestDebitAmountToGuarantee",
                "shortfall",
                "overallRiskLevel",
                "transactionRiskLevel",
                "userRiskLevel",
                "otherRiskLevel",
            },
        ),
        (
            {"guaranteeDetails": {**CURRENT["guaranteeDetails"], "overallRiskLevel": None}},
            {"overallRiskLevel"},
        ),
        (
            {"guaranteeDetails": {**CURRENT["guaranteeDetails"], "guaranteeOffered": "yes"}},
            {"guaranteeOffered"},
        ),
    ],
)
def test_missing_fields_are_absent(changes: dict[str, Any], absent: set[str]) -> None:
    # GIVEN a current-shape answer with some fields null, missing or of the wrong type
    details = {**CURRENT, **changes}

    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN exactly those facts are absent (not None) and the rest are still there
    assert absent.isdisjoint(facts)
    assert None not in facts.values()
    assert set(facts) == set(facts_from_session(CURRENT)) - absent


@pytest.mark.parametrize(
    ("amount", "highest", "shortfall"),
    [
        (Decimal("100.10"), Decimal("100.1"), Decimal("0")),
        (100, Decimal("99.99"), Decimal("0.01")),
        ("0.3", 0.1, Decimal("0.2")),
        (0.3, Decimal("0.1") + Decimal("0.2"), Decimal("0")),
        (50, 80, Decimal("-30")),
        (50, None, None),
        (None, 80, None),
    ],
)
def test_shortfall(amount: object, highest: object, shortfall: Decimal | None) -> None:
    # GIVEN an amount and a highest guaranteed debit (int, Decimal, str or float)
    details = {"amount": amount, "guaranteeDetails": {"highestDebitAmountToGuarantee": highest}}

    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN shortfall is their exact difference, present only when both are known
    assert facts.get("shortfall") == shortfall
    assert ("shortfall" in facts) is (shortfall is not None)


@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_not_money(flag: bool) -> None:
    # GIVEN booleans where money is expected
    details = {
        "amount": flag,
        "payor": {"account": {"availableBalance": flag}},
        "guaranteeDetails": {"highestDebitAmountToGuarantee": flag, "guaranteeOffered": 1},
    }

    # WHEN facts are built
    facts = facts_from_session(details)

    # THEN none of them is a fact, and 1 is not a boolean either
    assert facts == {}


ONLY = GuaranteeIdentity(guarantee_id=None, amount=Decimal("250"))


@pytest.mark.parametrize(
    ("details", "decided"),
    [
        ({"amount": 250, "guaranteeDetails": {"guaranteeAccepted": True}}, True),
        ({"amount": 250, "guaranteeDetails": {"guaranteeAccepted": False}}, False),
        ({"guaranteeDetails": {"guaranteeAccepted": None}}, None),
        ({"guaranteeDetails": {"guaranteeAccepted": "true"}}, None),
        ({"guaranteeDetails": {"guaranteeAccepted": "false"}}, None),
        ({"guaranteeDetails": {"guaranteeAccepted": 1}}, None),
        ({"guaranteeDetails": {"guaranteeAccepted": 0}}, None),
        ({"guaranteeDetails": {}}, None),
        ({"guaranteeDetails": None}, None),
        (LEGACY, None),
        (None, None),
    ],
)
def test_only_a_json_boolean_is_a_recorded_decision(
    details: dict[str, Any] | None, decided: bool | None
) -> None:
    # GIVEN / WHEN the session's only guarantee is looked up in /details
    result = decision_at_flinks(details, ONLY)

    # THEN only a real boolean counts as a decision Flinks recorded
    if decided is None:
        assert result.recorded is RecordedDecision.NONE
    else:
        assert (result.recorded, result.accepted) == (RecordedDecision.OURS, decided)


def test_an_amount_that_does_not_match_is_not_this_guarantees_decision() -> None:
    details = {
        "amount": 200,
        "guaranteeDetails": {"guaranteeAccepted": True, "highestDebitAmountToGuarantee": 200},
    }

    result = decision_at_flinks(details, ONLY)

    assert result.recorded is RecordedDecision.UNATTRIBUTABLE
    assert "200" in result.evidence
    assert "250" in result.evidence


def test_another_answered_guarantee_of_the_session_makes_the_decision_unattributable() -> None:
    details = {"amount": 250, "guaranteeDetails": {"guaranteeAccepted": True}}
    first_offer = GuaranteeIdentity(guarantee_id=None, amount=Decimal("300"))

    result = decision_at_flinks(details, ONLY, [first_offer])

    assert result.recorded is RecordedDecision.UNATTRIBUTABLE


@pytest.mark.parametrize(
    ("shown", "recorded"), [("g-2", RecordedDecision.OURS), ("g-1", RecordedDecision.UNATTRIBUTABLE)]
)
def test_guarantee_ids_decide_attribution_when_both_sides_have_one(
    shown: str, recorded: RecordedDecision
) -> None:
    details = {"amount": 999, "guaranteeDetails": {"guaranteeAccepted": False, "guaranteeId": shown}}
    second = GuaranteeIdentity(guarantee_id="g-2", amount=Decimal("200"))

    result = decision_at_flinks(details, second, [GuaranteeIdentity("g-1", Decimal("250"))])

    assert result.recorded is recorded


def test_identity_of_a_webhook_reads_the_key_and_the_amount() -> None:
    assert GuaranteeIdentity.of_webhook("id:g-7", {"amount": 12.5}) == GuaranteeIdentity(
        "g-7", Decimal("12.5")
    )
    assert GuaranteeIdentity.of_webhook("amount:250.00", {"data": {"amount": 250}}) == ONLY
    assert GuaranteeIdentity.of_webhook("single", {}) == GuaranteeIdentity(None, None)


@pytest.mark.parametrize(
    ("answer", "expected", "final"),
    [
        ({"status": "Completed", "statusDetails": "EFT0301"}, ReportedStatus("Completed", "EFT0301"), True),
        ({"status": "InProgress", "statusDetails": None}, ReportedStatus("InProgress", None), False),
        ({"status": 3, "statusDetails": 301}, ReportedStatus(None, None), False),
        ({}, ReportedStatus(None, None), False),
    ],
)
def test_reported_status_reads_strings_only(
    answer: dict[str, Any], expected: ReportedStatus, final: bool
) -> None:
    reported = reported_status(answer)
    assert reported == expected
    assert reported.final is final
