"""Issue 14's fail-closed cases end to end: the shipped policy (the template's default), the processor as
Lambda runs it, and the sandbox's /details missing or misspelling a fact a reject rule needs. None is
accepted: each goes to REVIEW, no confirm is sent, and the decision names the missing fact."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.flinks import Scenario
from tests.support.pipeline import Pipeline


@pytest.mark.parametrize(
    ("scenario", "webhook_fields", "missing"),
    [
        pytest.param(Scenario(overall_risk_level="HIGH"), {}, {"overallRiskLevel"}, id="risk-spelled-HIGH"),
        pytest.param(Scenario(amount=None), {"amount": None}, {"shortfall"}, id="missing-amount"),
        pytest.param(
            Scenario(amount=None),
            {"amount": None, "guaranteeDetails": {}},
            {"shortfall"},
            id="empty-webhook-guaranteeDetails-and-sparse-details",
        ),
    ],
)
def test_a_missing_or_undocumented_fact_sends_the_guarantee_to_review_never_accept(
    pipeline: Pipeline, scenario: Scenario, webhook_fields: dict[str, Any], missing: set[str]
) -> None:
    session_id = pipeline.sandbox.add_session(scenario=scenario)
    pipeline.receive(session_id, **webhook_fields)

    assert pipeline.process() == {"batchItemFailures": []}

    item = pipeline.item(session_id)
    assert (item["status"], item["decision"], item["decisionRule"]) == ("REVIEW", "review", "missing-facts")
    assert missing <= set(item["missingFacts"])
    assert pipeline.confirms(session_id) == []


def test_an_empty_guarantee_block_in_the_webhook_does_not_replace_details(pipeline: Pipeline) -> None:
    # GIVEN a webhook carrying guaranteeDetails {} (no fact at all) for a high-risk session
    session_id = pipeline.session("high-risk")
    pipeline.receive(session_id, guaranteeDetails={})

    assert pipeline.process() == {"batchItemFailures": []}

    # THEN /details was read and decided it: rejected by high-risk, not accepted on the empty block
    assert len(pipeline.sandbox.calls("/details", session_id=session_id)) == 1
    item = pipeline.item(session_id)
    assert (item["decision"], item["decisionRule"]) == ("reject", "high-risk")
    assert pipeline.confirms(session_id) == [False]
