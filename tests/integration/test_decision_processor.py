"""The decision processor in-process under moto, fed stream events built from moto's own stream
records of items the receiver wrote, talking to the Flinks sandbox over real HTTP on 127.0.0.1.

Which error each HTTP answer becomes is proven on the client (test_flinks_client.py,
test_flinks_client_outcomes.py, test_flinks_limits.py); what the state machine does with each error
(lost and slow confirms, refusals, outages, crashes, redeliveries, races) on fakes in
tests/unit/test_processor_state_machine.py; a few of them run to a settled ledger in
test_decision_faults.py and test_crash_points.py. This module keeps what needs the handler and the
table: the wiring, the batch's report, the facts as Flinks' JSON carries them, and a refusal's FAILED
record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from testkit.flinks import Scenario
from testkit.lambda_context import LambdaContext
from tests.support.ledger import audit
from tests.support.pipeline import Pipeline


@pytest.mark.parametrize(
    ("preset", "accepted", "rule"),
    [
        ("accept", True, "default"),
        ("high-risk", False, "high-risk"),
        ("shortfall", False, "shortfall"),
        ("no-guarantee", False, "no-guarantee"),
    ],
)
def test_guarantee_is_decided_by_the_default_policy_and_confirmed_once(
    pipeline: Pipeline, preset: str, accepted: bool, rule: str
) -> None:
    # GIVEN a Flinks session in the given scenario and its stored guarantee webhook
    session_id = pipeline.session(preset)
    pipeline.receive(session_id)

    # WHEN the stream delivers the new item to the processor
    answer = pipeline.process()

    # THEN Flinks got exactly one confirm with the policy's decision, and the audit trail says why
    assert answer == {"batchItemFailures": []}
    assert pipeline.confirms(session_id) == [accepted]
    item = pipeline.item(session_id)
    assert item["status"] == "CONFIRMED"
    assert item["decision"] == ("accept" if accepted else "reject")
    assert item["decisionRule"] == rule
    assert item["decisionInputs"]["overallRiskLevel"] in {"Low", "High"}
    assert item["flinksSessionId"] == session_id
    assert item["confirmedAtMs"] >= item["receivedAtMs"]
    assert item["webhookToConfirmMs"] == item["confirmedAtMs"] - item["receivedAtMs"]
    assert "claimId" not in item
    # one token for the session's calls: details and confirm share it
    assert pipeline.sandbox.authorize_count == 1


def test_processor_writes_never_invoke_it_again(pipeline: Pipeline) -> None:
    # GIVEN a guarantee the processor has confirmed
    pipeline.receive(pipeline.session())
    pipeline.process()

    # WHEN the stream is read again: it now holds the processor's own MODIFY records
    event = pipeline.feed.next_event()

    # THEN the template's FilterCriteria lets none of them through
    assert event == {"Records": []}


def test_webhook_carrying_guarantee_details_needs_no_details_call(pipeline: Pipeline) -> None:
    # GIVEN a webhook that carries guaranteeDetails itself
    session_id = pipeline.session()
    details = {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 100, "overallRiskLevel": "High"}
    pipeline.receive(session_id, amount=100, guaranteeDetails=details)

    # WHEN it is processed
    pipeline.process()

    # THEN the decision used the webhook's facts and /details was never called
    assert pipeline.confirms(session_id) == [False]
    assert pipeline.item(session_id)["decisionRule"] == "high-risk"
    assert pipeline.sandbox.calls(path_suffix="/details") == []


@pytest.mark.parametrize(
    ("scenario", "decision", "rule", "inputs"),
    [
        pytest.param(
            Scenario.preset("shortfall", legacy_details_shape=True),
            "reject",
            "shortfall",
            {"shortfall": Decimal("150")},
            id="legacy-details-shape",
        ),
        # a guarantee covering 100.10 of an amount of 100.1: equal as money, not as floats' text
        pytest.param(
            Scenario(amount=Decimal("100.1"), highest_debit_amount_to_guarantee=Decimal("100.10")),
            "accept",
            "default",
            {"shortfall": Decimal("0")},
            id="money-compared-exactly",
        ),
    ],
)
def test_facts_are_read_from_flinks_json_as_documented(
    pipeline: Pipeline, scenario: Scenario, decision: str, rule: str, inputs: dict[str, Decimal]
) -> None:
    session_id = pipeline.sandbox.add_session(scenario=scenario)
    pipeline.receive(session_id)

    pipeline.process()

    item = pipeline.item(session_id)
    assert (item["decision"], item["decisionRule"]) == (decision, rule)
    assert {name: Decimal(item["decisionInputs"][name]) for name in inputs} == inputs


def test_a_flinks_refusal_is_failed_with_its_reason_and_not_retried(pipeline: Pipeline) -> None:
    # GIVEN a session whose /details Flinks refuses with a 400 (permanent: a retry would be refused too)
    session_id, event = pipeline.guarantee(faults={"details": ["400"]})

    # WHEN the processor handles it
    answer = pipeline.process(event)

    # THEN it is FAILED for good with Flinks' reason, not reported for retry, and nothing was confirmed
    assert answer == {"batchItemFailures": []}
    assert audit(pipeline.sandbox, pipeline.items).failed == 1
    item = pipeline.item(session_id)
    assert item["status"] == "FAILED"
    assert item["failureReason"].startswith("Flinks refused: ")
    assert "400" in item["failureReason"]
    assert pipeline.confirms(session_id) == []


def test_batch_of_many_sessions_answers_exactly(pipeline: Pipeline) -> None:
    # GIVEN eight sessions in one batch, one of which cannot learn whether its confirm arrived (a 500)
    good = [pipeline.session(latency_ms=50) for _ in range(7)]
    bad = pipeline.session(faults={"confirm": ["500"]})
    for session_id in [*good, bad]:
        pipeline.receive(session_id)
    event = pipeline.feed.next_event()
    assert len(event["Records"]) == 8

    # WHEN the batch is processed
    answer = pipeline.process(event)

    # THEN only that record is reported, and every other session is confirmed once
    sequence_of = {
        r["dynamodb"]["Keys"]["pk"]["S"]: r["dynamodb"]["SequenceNumber"] for r in event["Records"]
    }
    assert answer == {"batchItemFailures": [{"itemIdentifier": sequence_of[bad]}]}
    assert all(pipeline.confirms(session_id) == [True] for session_id in good)
    assert pipeline.confirms(bad) == []


def test_invalid_policy_fails_the_start_naming_the_rule(configure_processor: Callable[..., object]) -> None:
    from decision_processor import handler
    from geft.errors import PolicyError

    policy = {
        "default": "accept",
        "rules": [{"name": "typo", "when": {"amout": {"gt": 1}}, "decision": "reject"}],
    }
    configure_processor(DECISION_POLICY=json.dumps(policy))

    with pytest.raises(PolicyError, match="typo"):
        handler.lambda_handler({"Records": []}, LambdaContext())
