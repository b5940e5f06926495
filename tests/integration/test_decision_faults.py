"""Faults on the decision path, each run to its end: nothing lost, nothing confirmed twice.

Extends tests/integration/test_decision_processor.py's fault matrix (which checks the first
invocation of 12 faults) with the faults it does not cover, and follows every case through the
stream's retries until it settles: each stored guarantee ends CONFIRMED (one confirm in the Flinks
sandbox's journal) or FAILED with a reason, and no session ever sees a second confirm.
"""

from __future__ import annotations

import json
import socket
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

    @property
    def retried_first(self) -> bool:
        return self.first_status not in ("CONFIRMED", "FAILED")


FAULT_CASES = {
    # The confirm may have been applied: never sent again in the invocation; the stream's retry reads
    # /details first (DECIDING with confirmAttempted) and confirms only if Flinks shows no decision.
    # 502, 504 and a reset end the same way: test_flinks_client.py proves each is "outcome unknown",
    # tests/unit/test_processor_state_machine.py what the processor does with one.
    "confirm-lost": FaultCase("confirm", ["lost"], "DECIDING", "CONFIRMED", [True]),
    "confirm-slow-apply": FaultCase("confirm", ["slow-apply:1.5"], "DECIDING", "CONFIRMED", [True]),
    # Refused before Flinks' handling: sent again within the invocation (a 408 too: test_flinks_client.py).
    "confirm-429-retry-after": FaultCase("confirm", ["429:retry-after=1"], "CONFIRMED", "CONFIRMED", [True]),
    "confirm-500-outage-then-recovery": FaultCase(
        "confirm", ["500"] * 30, "DECIDING", "CONFIRMED", [True], first_timeout=3.0
    ),
    "confirm-409": FaultCase("confirm", ["409"], "FAILED", "FAILED", []),
    "details-502": FaultCase("details", ["502"], "CONFIRMED", "CONFIRMED", [True]),
    "details-503": FaultCase("details", ["503"], "CONFIRMED", "CONFIRMED", [True]),
    "details-504": FaultCase("details", ["504"], "CONFIRMED", "CONFIRMED", [True]),
    "details-429-retry-after": FaultCase("details", ["429:retry-after=1"], "CONFIRMED", "CONFIRMED", [True]),
    "details-read-timeout": FaultCase("details", ["timeout"], "CONFIRMED", "CONFIRMED", [True]),
    "details-reset": FaultCase("details", ["reset"], "CONFIRMED", "CONFIRMED", [True]),
    "details-400": FaultCase("details", ["400"], "FAILED", "FAILED", []),
    # Our credentials refused even after re-authorizing: retried (the secret is re-read), not FAILED.
    "details-401-after-reauthorizing": FaultCase("details", ["401", "401"], "RECEIVED", "CONFIRMED", [True]),
    "details-429-outage-then-recovery": FaultCase(
        "details", ["429"] * 30, "RECEIVED", "CONFIRMED", [True], first_timeout=3.0
    ),
    "authorize-500": FaultCase("authorize", ["500"], "CONFIRMED", "CONFIRMED", [True]),
    "authorize-malformed-200": FaultCase("authorize", ["malformed"], "CONFIRMED", "CONFIRMED", [True]),
    "authorize-read-timeout": FaultCase("authorize", ["timeout"], "CONFIRMED", "CONFIRMED", [True]),
    "authorize-503-outage-then-recovery": FaultCase(
        "authorize", ["503"] * 30, "RECEIVED", "CONFIRMED", [True]
    ),
}


@pytest.mark.parametrize("name", list(FAULT_CASES))
def test_fault_runs_to_a_settled_ledger(pipeline: Pipeline, name: str) -> None:
    case = FAULT_CASES[name]
    # GIVEN an accepted-scenario session whose Flinks endpoint misbehaves as planned
    sandbox = pipeline.sandbox
    if case.endpoint == "authorize":
        sandbox.add_authorize_faults(case.faults)
        session_id, event = pipeline.guarantee()
    else:
        session_id, event = pipeline.guarantee(faults={case.endpoint: case.faults})
    settle = Settle(pipeline.invoke_processor)

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
    if case.final_status == "FAILED":
        assert item["failureReason"].startswith("Flinks refused")
    if "retry-after" in case.faults[0]:
        calls = sandbox.calls(path_suffix="/confirm" if case.endpoint == "confirm" else "/details")
        assert calls[1].at - calls[0].at >= 1.0  # Retry-After honoured
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


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_then_flinks_back(
    pipeline: Pipeline, configure_processor: Callable[..., Invoke]
) -> None:
    # GIVEN a stored guarantee and FLINKS_BASE_URL pointing at a closed port (connection refused)
    session_id, event = pipeline.guarantee()
    unreachable = configure_processor(FLINKS_BASE_URL=f"http://127.0.0.1:{_closed_port()}")

    # WHEN the processor cannot connect for a whole invocation
    first = unreachable(event, timeout_seconds=3.0)

    # THEN the record is reported for retry, released as RECEIVED, and Flinks saw nothing
    assert retried_sessions(event, first) == {session_id}
    assert pipeline.item(session_id)["status"] == "RECEIVED"
    assert pipeline.sandbox.calls() == []

    # WHEN Flinks is reachable again and Lambda retries the record, THEN it is confirmed exactly once
    configure_processor()
    _retry_confirms_once(
        pipeline, event, first, "connection refused (closed port), then recovery", "RECEIVED -> CONFIRMED"
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


def test_token_expired_between_details_and_confirm_is_renewed_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geft.flinks_client import SessionCalls

    # GIVEN Flinks expiring every token right after /details answered (a stale token mid-session)
    sandbox = pipeline.sandbox
    _, event = pipeline.guarantee()
    real_confirm = SessionCalls.confirm

    def confirm_with_stale_token(self: SessionCalls, accepted: bool) -> Any:
        sandbox.expire_tokens()
        return real_confirm(self, accepted)

    monkeypatch.setattr(SessionCalls, "confirm", confirm_with_stale_token)

    # WHEN the processor handles the guarantee
    answer = pipeline.process(event)

    # THEN the confirm's 401 led to one new token and one confirm
    assert answer == {"batchItemFailures": []}
    assert [call.response_status for call in sandbox.calls(path_suffix="/confirm")] == [401, 200]
    assert sandbox.authorize_count == 2
    summary = audit(pipeline.sandbox, pipeline.items)
    assert summary.confirmed == 1
    reliability_report.record(
        AREA, "token expired mid-session (401 on confirm)", tried=1, outcome="re-authorized once, CONFIRMED"
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
