"""The decision processor in-process under moto, fed stream events built from moto's own stream
records of items the receiver wrote, talking to the Flinks sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from geft_local.flinks_sandbox import FlinksSandbox, Scenario

from tests.support.lambda_context import FakeLambdaContext
from tests.support.ledger import only_failed, retried_sessions
from tests.support.pipeline import guarantee_item, receive
from tests.support.streams import StreamFeed

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]


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
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
    preset: str,
    accepted: bool,
    rule: str,
) -> None:
    # GIVEN a Flinks session in the given scenario and its stored guarantee webhook
    session_id = sandbox.add_session(scenario=Scenario.preset(preset))
    receive(invoke_receiver, session_id)

    # WHEN the stream delivers the new item to the processor
    answer = invoke_processor(feed.next_event())

    # THEN Flinks got exactly one confirm with the policy's decision, and the audit trail says why
    assert answer == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [accepted]
    item = guarantee_item(table_items, session_id)
    assert item["status"] == "CONFIRMED"
    assert item["decision"] == ("accept" if accepted else "reject")
    assert item["decisionRule"] == rule
    assert item["decisionInputs"]["overallRiskLevel"] in {"Low", "High"}
    assert item["flinksSessionId"] == session_id
    assert item["confirmedAtMs"] >= item["receivedAtMs"]
    assert item["webhookToConfirmMs"] == item["confirmedAtMs"] - item["receivedAtMs"]
    assert "claimId" not in item
    # one token for the session's calls: details and confirm share it
    assert sandbox.authorize_count == 1


def test_processor_writes_never_invoke_it_again(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
) -> None:
    # GIVEN a guarantee the processor has confirmed
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id)
    invoke_processor(feed.next_event())

    # WHEN the stream is read again: it now holds the processor's own MODIFY records
    event = feed.next_event()

    # THEN the template's FilterCriteria lets none of them through
    assert event == {"Records": []}


def test_webhook_carrying_guarantee_details_needs_no_details_call(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a webhook that carries guaranteeDetails itself
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    details = {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 100, "overallRiskLevel": "High"}
    receive(invoke_receiver, session_id, amount=100, guaranteeDetails=details)

    # WHEN it is processed
    invoke_processor(feed.next_event())

    # THEN the decision used the webhook's facts and /details was never called
    assert sandbox.confirms_for(session_id) == [False]
    assert guarantee_item(table_items, session_id)["decisionRule"] == "high-risk"
    assert sandbox.calls(path_suffix="/details") == []


def test_legacy_details_shape_is_understood(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    session_id = sandbox.add_session(scenario=Scenario.preset("shortfall", legacy_details_shape=True))
    receive(invoke_receiver, session_id)

    invoke_processor(feed.next_event())

    item = guarantee_item(table_items, session_id)
    assert (item["decision"], item["decisionRule"]) == ("reject", "shortfall")
    assert Decimal(item["decisionInputs"]["shortfall"]) == Decimal("150")


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
        pytest.param("confirm", ["408"], "CONFIRMED", [True], False, id="confirm-408-once"),
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
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
    endpoint: str,
    faults: list[str],
    status: str,
    confirms: list[bool],
    retry: bool,
) -> None:
    # GIVEN an accepted-scenario session whose endpoint misbehaves as planned
    session_id = sandbox.add_session(scenario=Scenario.preset("accept", faults={endpoint: faults}))
    receive(invoke_receiver, session_id)
    event = feed.next_event()

    # WHEN the processor handles it (a short invocation so outages exhaust the budget quickly)
    answer = invoke_processor(event, timeout_seconds=6.0)

    # THEN the outcome is the expected one, nothing is confirmed twice, and a retry is reported
    # exactly when the record must come back
    item = guarantee_item(table_items, session_id)
    assert item["status"] == status
    assert sandbox.confirms_for(session_id) == confirms
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


def test_a_dribbling_details_is_cut_at_its_deadline_and_read_again(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a /details whose body dribbles a byte every 0.5 s (about 12 minutes in all), once
    scenario = Scenario.preset("accept", faults={"details": ["dribble-body:0.5"]})
    session_id = sandbox.add_session(scenario=scenario)
    receive(invoke_receiver, session_id)

    # WHEN the processor handles it (exchange budget: connect 1 s + read 1.5 s)
    answer = invoke_processor(feed.next_event(), timeout_seconds=12.0)

    # THEN the dribble was cut at the exchange's deadline, /details read again, and the guarantee confirmed
    assert answer == {"batchItemFailures": []}
    assert [entry.fault for entry in sandbox.calls(path_suffix="/details")] == ["dribble-body:0.5", None]
    assert sandbox.confirms_for(session_id) == [True]
    assert guarantee_item(table_items, session_id)["status"] == "CONFIRMED"


def test_outage_then_recovery_confirms_once_on_the_stream_retry(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a confirm that failed for the whole of one invocation (Flinks was down)
    session_id = sandbox.add_session(scenario=Scenario.preset("accept", faults={"confirm": ["503"] * 6}))
    receive(invoke_receiver, session_id)
    event = feed.next_event()
    first = invoke_processor(event, timeout_seconds=3.0)
    assert first["batchItemFailures"]

    # WHEN the stream retries the same record after Flinks recovered
    sandbox.clear_faults(session_id)
    second = invoke_processor(event)

    # THEN the retry reads /details first (a confirm may have gone out) and confirms exactly once
    assert second == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    assert guarantee_item(table_items, session_id)["status"] == "CONFIRMED"


def test_lost_confirm_answer_is_recovered_from_details_not_resent(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a confirm that Flinks records but whose answer never comes back
    session_id = sandbox.add_session(scenario=Scenario.preset("accept", faults={"confirm": ["lost"]}))
    receive(invoke_receiver, session_id)
    event = feed.next_event()

    # WHEN the processor handles it
    first = invoke_processor(event)

    # THEN it does not send the confirm again: the record is retried with the confirm marked attempted
    assert retried_sessions(event, first) == {session_id}
    item = guarantee_item(table_items, session_id)
    assert (item["status"], item["confirmAttempted"]) == ("DECIDING", True)
    assert len(sandbox.calls(path_suffix="/details", session_id=session_id)) == 1  # the one before deciding

    # WHEN the stream retries it
    second = invoke_processor(only_failed(event, first))

    # THEN the retry reads /details first, sees the decision recorded and does not confirm again
    assert second == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    item = guarantee_item(table_items, session_id)
    assert item["status"] == "CONFIRMED"
    assert item["recoveredFromDetails"] is True
    assert item["decisionRule"] == "recovered-from-flinks"


def test_same_record_delivered_twice_confirms_once(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
) -> None:
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id)
    event = feed.next_event()

    answers = [invoke_processor(event), invoke_processor(event)]

    assert answers == [{"batchItemFailures": []}] * 2
    assert sandbox.confirms_for(session_id) == [True]


def test_two_concurrent_invocations_confirm_once(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a slow Flinks, so two invocations overlap on the same record
    session_id = sandbox.add_session(scenario=Scenario.preset("accept", latency_ms=200))
    receive(invoke_receiver, session_id)
    event = feed.next_event()
    answers: list[dict[str, Any]] = []

    # WHEN both run at once
    threads = [threading.Thread(target=lambda: answers.append(invoke_processor(event))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN one confirmed, the other waited for its lease and found the work done
    assert answers == [{"batchItemFailures": []}] * 2
    assert sandbox.confirms_for(session_id) == [True]
    assert guarantee_item(table_items, session_id)["status"] == "CONFIRMED"


def test_crash_between_confirm_and_record_never_confirms_twice(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geft.repository import GuaranteeRepository

    # GIVEN an invocation that dies right after Flinks accepted the confirm, before recording it
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id)
    event = feed.next_event()

    def crash(*_args: Any, **_kwargs: Any) -> bool:
        raise SystemExit("container died")

    with monkeypatch.context() as patch:
        patch.setattr(GuaranteeRepository, "finish", crash)
        with pytest.raises(SystemExit):
            invoke_processor(event, timeout_seconds=3.0)
    assert guarantee_item(table_items, session_id)["status"] == "DECIDING"

    # WHEN Lambda retries the batch (the dead invocation's lease runs out during the retry)
    answer = invoke_processor(event)

    # THEN the retry reads /details, sees the decision and records it without a second confirm
    assert answer == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    item = guarantee_item(table_items, session_id)
    assert item["status"] == "CONFIRMED"
    assert item["recoveredFromDetails"] is True
    assert item["decisionRule"] == "recovered-from-flinks"


def test_batch_of_many_sessions_answers_exactly(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN eight sessions in one batch, one of which cannot reach Flinks' details
    good = [sandbox.add_session(scenario=Scenario.preset("accept", latency_ms=50)) for _ in range(7)]
    bad = sandbox.add_session(scenario=Scenario.preset("accept", faults={"details": ["503"] * 30}))
    for session_id in [*good, bad]:
        receive(invoke_receiver, session_id)
    event = feed.next_event()
    assert len(event["Records"]) == 8

    # WHEN the batch is processed
    answer = invoke_processor(event, timeout_seconds=6.0)

    # THEN only the failing record is reported, and every other session is confirmed once
    sequence_of = {
        r["dynamodb"]["Keys"]["pk"]["S"]: r["dynamodb"]["SequenceNumber"] for r in event["Records"]
    }
    assert answer == {"batchItemFailures": [{"itemIdentifier": sequence_of[bad]}]}
    assert all(sandbox.confirms_for(session_id) == [True] for session_id in good)
    assert sandbox.confirms_for(bad) == []


def test_unknown_session_is_failed_not_retried(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    session_id = str(uuid.uuid4())  # Flinks has never heard of it
    receive(invoke_receiver, session_id)

    answer = invoke_processor(feed.next_event())

    assert answer == {"batchItemFailures": []}
    item = guarantee_item(table_items, session_id)
    assert item["status"] == "FAILED"
    assert "404" in item["failureReason"] or "not found" in item["failureReason"].lower()


def test_invalid_policy_fails_the_start_naming_the_rule(
    function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox
) -> None:
    from decision_processor import handler
    from geft.errors import PolicyError

    policy = {
        "default": "accept",
        "rules": [{"name": "typo", "when": {"amout": {"gt": 1}}, "decision": "reject"}],
    }
    function_env(
        "DecisionProcessorFunction", FLINKS_BASE_URL=sandbox.base_url, DECISION_POLICY=json.dumps(policy)
    )
    handler._dependencies.cache_clear()

    with pytest.raises(PolicyError, match="typo"):
        handler.lambda_handler({"Records": []}, FakeLambdaContext())
    handler._dependencies.cache_clear()


def test_money_is_compared_exactly(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Callable[..., dict[str, Any]],
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a guarantee covering 100.10 of an amount of 100.1 (equal as money, not as floats' text)
    scenario = Scenario(amount=Decimal("100.1"), highest_debit_amount_to_guarantee=Decimal("100.10"))
    session_id = sandbox.add_session(scenario=scenario)
    receive(invoke_receiver, session_id)

    invoke_processor(feed.next_event())

    item = guarantee_item(table_items, session_id)
    assert (item["decision"], item["decisionRule"]) == ("accept", "default")
