"""Faults on the decision path, each run to its end: nothing lost, nothing confirmed twice.

Each case is followed through the stream's retries until it settles: every stored guarantee ends
CONFIRMED (one confirm in the Flinks sandbox's journal) or FAILED with a reason, and no session ever
sees a second confirm. The Flinks faults here are the few that need the whole pipeline; the rest are
proven in two halves (the client's answer, the state machine's reaction), listed in FAULT_CASES.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from testkit.aws import aws_calls_recorded, is_claim, is_finish, is_release
from testkit.webhooks import guarantee_body, webhook_event
from tests.support import reliability_report
from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.ledger import audit, only_failed, retried_sessions
from tests.support.pipeline import Invoke, Pipeline

AREA = "decision path faults"


@dataclass
class Settle:
    """Runs a batch, then Lambda's retries of the records it reports, until nothing is reported."""

    invoke: Invoke
    answers: list[dict[str, Any]] = field(default_factory=list)

    def first(self, event: dict[str, Any], *, timeout_seconds: float) -> dict[str, Any]:
        answer = self.invoke(event, timeout_seconds=timeout_seconds)
        self.answers.append(answer)
        return answer

    def rest(self, event: dict[str, Any], *, rounds: int = 4) -> dict[str, Any]:
        answer = self.answers[-1]
        for _ in range(rounds):
            retry = only_failed(event, answer)
            if not retry["Records"]:
                break
            answer = self.invoke(retry)
            self.answers.append(answer)
        return answer

    @property
    def invocations(self) -> int:
        return len(self.answers)


@dataclass(frozen=True)
class FaultCase:
    endpoint: str  # "authorize", "details" or "confirm"
    faults: list[str]
    first_status: str  # the item's status after the first invocation
    final_status: str
    confirms: list[bool]
    # The first invocation's budget: generous unless the case is an outage that must exhaust it (a
    # short budget on a loaded machine would turn "finished in the first invocation" into a retry).
    first_timeout: float = 20.0
    processor_env: dict[str, str] = field(default_factory=dict)  # over the tier's PROCESSOR_TIMEOUTS

    @property
    def retried_first(self) -> bool:
        return self.first_status not in ("CONFIRMED", "FAILED")


# What each Flinks answer becomes is proven on the client against the sandbox (test_flinks_client.py,
# test_flinks_client_outcomes.py, test_flinks_limits.py), and what the processor does with each error on
# fakes (tests/unit/test_processor_state_machine.py). Two faults still run end to end, through both
# handlers, moto and the sandbox, to a settled ledger: one the processor must wait out, one it must
# not act on before it settles.
FAULT_CASES = {
    # Flinks unreachable for the whole (short) invocation: nothing sent, the claim released, and the
    # stream's retry confirms once Flinks is back.
    "authorize-503-outage-then-recovery": FaultCase(
        "authorize", ["503"] * 30, "RECEIVED", "CONFIRMED", [True], first_timeout=2.5
    ),
    # Applied 0.8 s after it arrived, so the 0.5 s read timeout gives up first: never sent again in the
    # invocation; the stream's retry waits out the 1.5 s settle delay, reads /details and finds it there.
    "confirm-slow-apply": FaultCase(
        "confirm",
        ["slow-apply:0.8"],
        "DECIDING",
        "CONFIRMED",
        [True],
        processor_env={"HTTP_READ_TIMEOUT_SECONDS": "0.5", "CONFIRM_SETTLE_SECONDS": "1.5"},
    ),
}


@pytest.mark.parametrize("name", list(FAULT_CASES))
def test_fault_runs_to_a_settled_ledger(
    pipeline: Pipeline, configure_processor: Callable[..., Invoke], name: str
) -> None:
    case = FAULT_CASES[name]
    # GIVEN an accepted-scenario session whose Flinks endpoint misbehaves as planned
    sandbox = pipeline.sandbox
    if case.endpoint == "authorize":
        sandbox.add_authorize_faults(case.faults)
        session_id, event = pipeline.guarantee()
    else:
        session_id, event = pipeline.guarantee(faults={case.endpoint: case.faults})
    settle = Settle(
        configure_processor(**case.processor_env) if case.processor_env else pipeline.invoke_processor
    )

    # WHEN the processor handles it (a short invocation, so an outage exhausts its budget)
    first = settle.first(event, timeout_seconds=case.first_timeout)

    # THEN the first invocation ends as expected, reporting the record exactly when it must come back
    assert pipeline.item(session_id)["status"] == case.first_status
    assert bool(first["batchItemFailures"]) is case.retried_first
    audit(pipeline.sandbox, pipeline.items, awaiting_retry=retried_sessions(event, first))

    # WHEN Flinks recovers and Lambda retries what was reported
    sandbox.clear_faults(session_id)
    sandbox.clear_authorize_faults()
    settle.rest(event)

    # THEN the ledger is settled: the expected end, one confirm at most, nothing left behind
    item = pipeline.item(session_id)
    assert item["status"] == case.final_status
    assert pipeline.confirms(session_id) == case.confirms
    summary = audit(pipeline.sandbox, pipeline.items)
    reliability_report.record(
        AREA,
        f"Flinks {name}",
        tried=settle.invocations,
        outcome=f"{case.first_status} -> {case.final_status} in {settle.invocations} invocation(s)",
        lost=summary.lost,
        duplicated=summary.duplicated,
    )


def _retry_confirms_once(
    pipeline: Pipeline, event: dict[str, Any], first: dict[str, Any], scenario: str, outcome: str
) -> None:
    """Lambda retries what ``first`` reported: it must settle with one confirm in all (reported)."""
    assert pipeline.process(only_failed(event, first)) == {"batchItemFailures": []}
    summary = audit(pipeline.sandbox, pipeline.items)
    assert summary.confirmed == 1
    reliability_report.record(
        AREA, scenario, tried=2, outcome=outcome, lost=summary.lost, duplicated=summary.duplicated
    )


@pytest.mark.slow  # waits out a 2 s confirm and the dead invocation's lease: make reliability
def test_slow_confirm_past_the_lambda_deadline_is_recovered_not_resent(
    pipeline: Pipeline, configure_processor: Callable[..., Invoke]
) -> None:
    # GIVEN a Flinks that acts on a confirm only after 2 s, a read timeout longer than the invocation
    # (so only the deadline bounds the call) and a webhook carrying its guaranteeDetails (no /details)
    details = {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 500, "overallRiskLevel": "Low"}
    session_id = pipeline.session(latency_ms=2000)
    pipeline.receive(session_id, guaranteeDetails=details)
    event = pipeline.feed.next_event()
    invoke = configure_processor(HTTP_READ_TIMEOUT_SECONDS="30")

    # WHEN an invocation with 3 s left sends the confirm
    started = time.monotonic()
    first = invoke(event, timeout_seconds=3.0)
    elapsed = time.monotonic() - started  # reported in docs/reliability.md, never asserted

    # THEN it gives up at its deadline (had it waited for the answer the item would be CONFIRMED),
    # reporting the record with the confirm marked as attempted
    assert retried_sessions(event, first) == {session_id}
    item = pipeline.item(session_id)
    assert (item["status"], item.get("confirmAttempted")) == ("DECIDING", True)

    # WHEN Flinks records the slow confirm after all, and Lambda retries the record
    deadline = time.monotonic() + 5
    while pipeline.confirms(session_id) == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.confirms(session_id) == [True]
    second = invoke(only_failed(event, first))

    # THEN the retry reads /details, finds the decision and records it without a second confirm
    assert second == {"batchItemFailures": []}
    item = pipeline.item(session_id)
    assert (item["status"], item["recoveredFromDetails"]) == ("CONFIRMED", True)
    summary = audit(pipeline.sandbox, pipeline.items)
    reliability_report.record(
        AREA,
        "slow confirm answered after the Lambda deadline",
        tried=2,
        outcome=f"DECIDING -> CONFIRMED (recovered from /details), gave up after {elapsed:.1f} s of 3 s",
        lost=summary.lost,
        duplicated=summary.duplicated,
    )


# -- DynamoDB and Secrets Manager faults --------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "when", "first_status"),
    [
        pytest.param("claim", is_claim, "RECEIVED", id="claim-throttled"),
        pytest.param(
            "finish",
            is_finish,
            "DECIDING",
            id="finish-throttled-after-confirm",
            marks=pytest.mark.slow,  # waits out the first invocation's lease: make reliability
        ),
    ],
)
def test_dynamodb_throttling_on_the_decision_path(
    pipeline: Pipeline, step: str, when: Callable[[Any], bool], first_status: str
) -> None:
    # GIVEN a stored guarantee, and DynamoDB throttling the processor's write at the given step
    # (the SDK's own retries already exhausted: the call fails with the throttling error)
    session_id, event = pipeline.guarantee()
    with aws_calls_recorded() as faults:
        faults.fail("dynamodb", "UpdateItem", times=1, when=when)

        # WHEN the processor handles it (a short invocation: a lease held after a crash is short)
        first = pipeline.process(event, timeout_seconds=2.5)

    # THEN the record is reported for retry and nothing was confirmed twice
    assert retried_sessions(event, first) == {session_id}
    assert pipeline.item(session_id)["status"] == first_status
    assert pipeline.confirms(session_id) == ([] if step == "claim" else [True])

    # WHEN Lambda retries it (after the first invocation's lease when the claim was kept)
    second = pipeline.process(only_failed(event, first))

    # THEN it is confirmed exactly once: recovered from /details if the confirm had gone out
    assert second == {"batchItemFailures": []}
    item = pipeline.item(session_id)
    assert item["status"] == "CONFIRMED"
    assert bool(item.get("recoveredFromDetails")) is (step == "finish")
    summary = audit(pipeline.sandbox, pipeline.items)
    reliability_report.record(
        AREA,
        f"DynamoDB ProvisionedThroughputExceeded on {step}",
        tried=2,
        outcome=f"{first_status} -> CONFIRMED",
        lost=summary.lost,
        duplicated=summary.duplicated,
    )


@pytest.mark.slow  # waits out the first invocation's lease: make reliability
def test_dynamodb_throttling_on_release_leaves_the_lease_to_expire(pipeline: Pipeline) -> None:
    # GIVEN a Flinks outage on /details, and DynamoDB throttling the release of the claim
    session_id, event = pipeline.guarantee(faults={"details": ["503"] * 30})
    with aws_calls_recorded() as faults:
        faults.fail("dynamodb", "UpdateItem", times=1, when=is_release)
        first = pipeline.process(event, timeout_seconds=2.5)
        assert [fault.injected for fault in faults._faults] == [1]

    # THEN the record is reported, the claim still held (its lease ends with the invocation)
    assert retried_sessions(event, first) == {session_id}
    assert pipeline.item(session_id)["status"] == "DECIDING"

    # WHEN Flinks recovers and the retry comes (it waits out the lease, then takes over), THEN one confirm
    pipeline.sandbox.clear_faults(session_id)
    _retry_confirms_once(
        pipeline,
        event,
        first,
        "DynamoDB throttled on release after a Flinks outage",
        "DECIDING (lease) -> CONFIRMED",
    )


@pytest.mark.parametrize(
    ("service", "operation", "code", "scenario"),
    [
        pytest.param(
            "dynamodb",
            "PutItem",
            "ProvisionedThroughputExceededException",
            "DynamoDB ProvisionedThroughputExceeded on PutItem",
            id="put-throttled",
        ),
        pytest.param(
            "secretsmanager",
            "GetSecretValue",
            "InternalServiceError",
            "Secrets Manager unavailable at cold start",
            id="secret-unavailable-at-cold-start",
        ),
    ],
)
def test_an_aws_fault_at_the_receiver_is_503_and_the_redelivery_stores_once(
    pipeline: Pipeline, service: str, operation: str, code: str, scenario: str
) -> None:
    # GIVEN a cold receiver and AWS failing the call once
    event = pipeline.stack.webhook()
    with aws_calls_recorded() as faults:
        faults.fail(service, operation, times=1, code=code)

        # WHEN Flinks delivers, and (after the 5xx) delivers again
        first = pipeline.invoke_receiver(event)
        second = pipeline.invoke_receiver(event)

    # THEN the first answer asks for a retry and stored nothing; the redelivery stored it once
    assert first["statusCode"] == 503
    assert json.loads(first["body"])["error"]["code"] == "unavailable"
    assert second["statusCode"] == 200
    assert len(pipeline.items()) == 1
    reliability_report.record(
        "receiver faults", scenario, tried=2, outcome="503 (nothing stored), redelivery 200 stored once"
    )


def test_processor_secrets_manager_unavailable_at_cold_start(pipeline: Pipeline) -> None:
    # GIVEN a stored guarantee, a cold processor, and Secrets Manager failing for a while
    session_id, event = pipeline.guarantee()
    with aws_calls_recorded() as faults:
        faults.fail("secretsmanager", "GetSecretValue", times=50, code="InternalServiceError")

        # WHEN the processor cannot read the Flinks credentials
        first = pipeline.process(event, timeout_seconds=2.5)

    # THEN the record is reported for retry, released, and Flinks saw nothing
    assert retried_sessions(event, first) == {session_id}
    assert pipeline.item(session_id)["status"] == "RECEIVED"
    assert pipeline.sandbox.calls() == []

    # WHEN a later invocation (Secrets Manager back) retries it, THEN it is confirmed once
    _retry_confirms_once(
        pipeline,
        event,
        first,
        "Secrets Manager unavailable at the processor's cold start",
        "RECEIVED (retry) -> CONFIRMED",
    )


# -- absurd numbers ------------------------------------------------------------------------------------


def test_absurd_number_in_guarantee_details_does_not_fail_the_batch(pipeline: Pipeline) -> None:
    # GIVEN two guarantees in one batch, one carrying an absurd number in its guaranteeDetails
    good, poisoned = pipeline.session(), pipeline.session()
    pipeline.receive(good)
    body = guarantee_body(poisoned).replace(b'"amount":250', b'"amount":250,"guaranteeDetails":' + _ABSURD)
    pipeline.invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET))
    event = pipeline.feed.next_event()

    # WHEN the batch is processed
    answer = pipeline.process(event)

    # THEN the good session is confirmed and the poisoned one is settled or reported, alone
    assert pipeline.confirms(good) == [True]
    audit(pipeline.sandbox, pipeline.items, awaiting_retry=retried_sessions(event, answer))


_ABSURD = b'{"guaranteeOffered":true,"highestDebitAmountToGuarantee":1e999999999}'
