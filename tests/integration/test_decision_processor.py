"""The decision processor in-process under moto, fed stream events built from moto's own stream
records of items the receiver wrote, talking to the Flinks sandbox over real HTTP on 127.0.0.1.

What the state machine does with each answer (lost and slow confirms, crashes, redeliveries, races) is
proven on fakes in tests/unit/test_processor_state_machine.py, and run to a settled ledger here in
test_decision_faults.py and test_crash_points.py. This module keeps what needs the handler, the HTTP
client or the table: the wiring, the error each HTTP answer becomes, the batch's report, the facts as
Flinks' JSON carries them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from testkit.flinks import Scenario
from testkit.lambda_context import LambdaContext
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


@pytest.mark.parametrize(
    ("endpoint", "faults", "status", "confirms", "retry"),
    [
        # 500 and a read timeout: the confirm may have been applied, so it is not sent again in this
        # invocation; the claim is released with the confirm marked as attempted
        pytest.param("confirm", ["500"], "DECIDING", [], True, id="confirm-500-once"),
        pytest.param(
            "confirm", ["503:retry-after=1"], "CONFIRMED", [True], False, id="confirm-503-retry-after"
        ),
        pytest.param("confirm", ["timeout"], "DECIDING", [], True, id="confirm-timeout-once"),
        pytest.param("confirm", ["401"], "CONFIRMED", [True], False, id="confirm-401-then-reauthorized"),
        pytest.param("confirm", ["404"], "FAILED", [], False, id="confirm-404"),
        pytest.param("confirm", ["400"], "FAILED", [], False, id="confirm-400"),
        pytest.param("confirm", ["malformed"], "CONFIRMED", [True], False, id="confirm-malformed-200"),
        pytest.param("details", ["500"], "CONFIRMED", [True], False, id="details-500-once"),
        pytest.param("details", ["malformed"], "CONFIRMED", [True], False, id="details-malformed-once"),
        pytest.param("details", ["404"], "FAILED", [], False, id="details-404"),
        pytest.param("details", ["503"] * 20, "RECEIVED", [], True, id="details-outage"),
        # a 300 MB /details is refused at the 1 MiB cap (transient: the stream retries, then the DLQ)
        pytest.param("details", ["oversize-chunked:300000000"], "RECEIVED", [], True, id="details-oversized"),
        # 503s: Flinks did not act on them, so the claim goes back as "no confirm reached Flinks"
        pytest.param("confirm", ["503"] * 20, "RECEIVED", [], True, id="confirm-outage"),
    ],
)
def test_fault_matrix(
    pipeline: Pipeline, endpoint: str, faults: list[str], status: str, confirms: list[bool], retry: bool
) -> None:
    # GIVEN an accepted-scenario session whose endpoint misbehaves as planned
    session_id, event = pipeline.guarantee(faults={endpoint: faults})

    # WHEN the processor handles it (a short invocation so outages exhaust the budget quickly)
    answer = pipeline.process(event, timeout_seconds=6.0)

    # THEN the outcome is the expected one, nothing is confirmed twice, and a retry is reported
    # exactly when the record must come back
    item = pipeline.item(session_id)
    assert item["status"] == status
    assert pipeline.confirms(session_id) == confirms
    failures = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    expected_failures = [event["Records"][0]["dynamodb"]["SequenceNumber"]] if retry else []
    assert failures == expected_failures
    if status == "FAILED":
        assert item["failureReason"].startswith("Flinks refused")
    if retry:
        # the claim was released: the stream's retry can take it at once
        assert item["leaseExpiresAtMs"] == 0
        # marked attempted only when the confirm's outcome is unknown (DECIDING); a 503 reached nothing
        assert item.get("confirmAttempted", False) is (status == "DECIDING")


def test_a_dribbling_details_is_cut_at_its_deadline_and_read_again(pipeline: Pipeline) -> None:
    # GIVEN a /details whose body dribbles a byte every 0.5 s (about 12 minutes in all), once
    session_id, event = pipeline.guarantee(faults={"details": ["dribble-body:0.5"]})

    # WHEN the processor handles it (exchange budget: connect 1 s + read 1 s)
    answer = pipeline.process(event, timeout_seconds=12.0)

    # THEN the dribble was cut at the exchange's deadline, /details read again, and the guarantee confirmed
    assert answer == {"batchItemFailures": []}
    calls = pipeline.sandbox.calls(path_suffix="/details")
    assert [entry.fault for entry in calls] == ["dribble-body:0.5", None]
    assert pipeline.confirms(session_id) == [True]
    assert pipeline.item(session_id)["status"] == "CONFIRMED"


def test_batch_of_many_sessions_answers_exactly(pipeline: Pipeline) -> None:
    # GIVEN eight sessions in one batch, one of which cannot reach Flinks' details
    good = [pipeline.session(latency_ms=50) for _ in range(7)]
    bad = pipeline.session(faults={"details": ["503"] * 30})
    for session_id in [*good, bad]:
        pipeline.receive(session_id)
    event = pipeline.feed.next_event()
    assert len(event["Records"]) == 8

    # WHEN the batch is processed
    answer = pipeline.process(event, timeout_seconds=6.0)

    # THEN only the failing record is reported, and every other session is confirmed once
    sequence_of = {
        r["dynamodb"]["Keys"]["pk"]["S"]: r["dynamodb"]["SequenceNumber"] for r in event["Records"]
    }
    assert answer == {"batchItemFailures": [{"itemIdentifier": sequence_of[bad]}]}
    assert all(pipeline.confirms(session_id) == [True] for session_id in good)
    assert pipeline.confirms(bad) == []


def test_unknown_session_is_failed_not_retried(pipeline: Pipeline) -> None:
    session_id = str(uuid.uuid4())  # Flinks has never heard of it
    pipeline.receive(session_id)

    answer = pipeline.process()

    assert answer == {"batchItemFailures": []}
    item = pipeline.item(session_id)
    assert item["status"] == "FAILED"
    assert "404" in item["failureReason"] or "not found" in item["failureReason"].lower()


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
