"""What ``make contract`` expects is learnt from the code's own parsers, and its verdicts follow them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from geft.policy import DEFAULT_POLICY_JSON, FIELDS, DecisionPolicy
from geft_checks.contract import render
from geft_checks.shapes import (
    Reader,
    Verdict,
    compare,
    expected_fields,
    shape_of,
)

MISSING_RISK = (
    "/details guaranteeDetails.overallRiskLevel: missing (the code reads string; needed for overallRiskLevel)"
)
POLICY_READS = DecisionPolicy.from_json(DEFAULT_POLICY_JSON).fields_read


def _details(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "sessionId": "7f3c2a8e-1d2b-4c5d-9e8f-0a1b2c3d4e5f",
        "amount": Decimal("250.00"),
        "currency": "CAD",
        "referenceId": "USER12345",
        "payor": {
            "firstName": "Jean-Claude",
            "account": {"accountNumber": "1234567890", "availableBalance": 5000},
        },
        "guaranteeDetails": {
            "guaranteeOffered": True,
            "guaranteeAccepted": None,
            "highestDebitAmountToGuarantee": Decimal("250.00"),
            "overallRiskLevel": "Low",
            "transactionRiskLevel": "Low",
            "userRiskLevel": "Low",
            "otherRiskLevel": "Low",
        },
    }
    document.update(changes)
    return document


def test_every_policy_fact_is_found_where_the_parser_reads_it() -> None:
    # WHEN the expectation is learnt from the parsers
    expectation = expected_fields()
    details = {field.name: field for field in expectation.fields if field.purpose == "policy fact"}

    # THEN each fact the policy knows is fed by one field of /details, with the fact's JSON type, or
    # computed from others (shortfall)
    fed = {output for field in details.values() for output in field.feeds}
    computed = {item.output: item for item in expectation.computed}
    assert fed | set(computed) == set(FIELDS)
    assert details["payor.account.availableBalance"].types == {"number"}
    assert details["guaranteeDetails.guaranteeOffered"].types == {"boolean"}
    assert details["guaranteeDetails.overallRiskLevel"].documented_values == FIELDS["overallRiskLevel"].values
    assert computed["shortfall"].inputs == (
        ("amount",),
        ("guaranteeDetails", "highestDebitAmountToGuarantee"),
    )
    # AND the reconciler's and the confirm recovery's readings are there too
    names = {(field.endpoint, field.name): field for field in expectation.fields}
    assert names[("status", "status")].types == {"string"}
    assert names[("details", "guaranteeDetails.guaranteeAccepted")].types == {"boolean"}


def test_the_expectation_follows_the_parser_not_a_list() -> None:
    # GIVEN a parser that reads a number at data.total and a flag at data.ok
    def parse(document: Mapping[str, Any]) -> dict[str, object]:
        data = document.get("data")
        if not isinstance(data, Mapping):
            return {}
        total, ok = data.get("total"), data.get("ok")
        found: dict[str, object] = {}
        if isinstance(total, Decimal):
            found["total"] = total
        if ok is True:
            found["ok"] = ok
        return found

    reader = Reader("status", "test", parse, lambda _: frozenset({"total"}))

    # WHEN learnt
    expectation = expected_fields([reader])

    # THEN exactly those two fields, with the types the parser uses
    assert {(field.name, tuple(sorted(field.types))) for field in expectation.fields} == {
        ("data.total", ("number",)),
        ("data.ok", ("boolean",)),
    }
    report = compare(
        "status", {"data": {"total": "12"}}, expectation, policy_reads=frozenset(), readers=[reader]
    )
    assert report.failures == ["/status data.total: sent as string, the code reads number"]


def _report(document: dict[str, Any], policy_reads: frozenset[str] = POLICY_READS) -> Any:
    return compare("details", document, expected_fields(), policy_reads=policy_reads)


def _verdicts(report: Any) -> dict[str, Verdict]:
    return {item.expected.name: item.verdict for item in report.fields}


def test_the_documented_shape_meets_the_code() -> None:
    report = _report(_details())
    assert report.failures == []
    verdicts = _verdicts(report)
    assert verdicts["guaranteeDetails.overallRiskLevel"] is Verdict.OK
    assert verdicts["guaranteeDetails.guaranteeAccepted"] is Verdict.NULL  # not decided yet: fine


def test_a_missing_fact_fails_only_when_the_policy_reads_it() -> None:
    document = _details()
    del document["guaranteeDetails"]["overallRiskLevel"]
    assert _report(document).failures == [MISSING_RISK]
    assert _report(document, policy_reads=frozenset({"amount"})).failures == []


def test_a_read_field_of_another_type_fails_even_when_nothing_needs_it() -> None:
    document = _details(currency=124)
    assert _report(document).failures == ["/details currency: sent as number, the code reads string"]


def test_a_numeral_string_is_read_as_a_number() -> None:
    report = _report(_details(amount="250.00"))
    assert report.failures == []
    assert _verdicts(report)["amount"] is Verdict.CONVERTED


def test_the_older_shape_is_read_where_it_is() -> None:
    document = _details(guarantee={"status": "Approved", "coverage": 250})
    del document["guaranteeDetails"]
    report = _report(document)
    assert _verdicts(report)["guaranteeDetails.guaranteeOffered"] is Verdict.OTHER_SHAPE
    assert ("guarantee", "status") in report.read_elsewhere
    assert report.failures == [MISSING_RISK]


def test_what_is_printed_carries_no_value_but_documented_words() -> None:
    # GIVEN an answer with a name, an account number, a balance and a reference
    report = _report(_details())

    # WHEN printed
    text = render(report)

    # THEN the shape and the table carry types only, and the risk level (a documented word)
    for value in ("Jean-Claude", "1234567890", "5000", "USER12345", "250.00", "7f3c2a8e"):
        assert value not in text
    assert "'Low'" in text
    assert shape_of({"a": {"b": [1]}, "c": None}) == {"a": {"b": ["number"]}, "c": "null"}
