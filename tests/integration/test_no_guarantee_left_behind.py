"""No guarantee left behind, under moto with the Flinks sandbox: the sequences an independent review
found that stranded a guarantee, paged the wrong alarm, or let an operator's clock take a live claim.

Each test names the finding it closes (issue 11); on the code before it, each one failed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from geft.models import Actor, GuaranteeRef
from geft.repository import OPERATOR_LEASE_MARGIN_MS, GuaranteeRepository
from geft_local.flinks_sandbox import FlinksSandbox, Scenario
from geft_local.template_resources import CreatedResources
from geft_ops import commands
from geft_ops.cli import main as geft_ops

from testkit.emf import metric_names, metric_values
from tests.support.aws_faults import aws_faults_installed, is_claim
from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.lambda_context import FakeLambdaContext
from tests.support.pipeline import guarantee_item, receive
from tests.support.streams import StreamFeed
from tests.support.webhooks import guarantee_body, webhook_event

Invoke = Callable[..., dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
REVIEW_POLICY = {
    "default": "accept",
    "rules": [{"name": "large-amount", "when": {"amount": {"gt": 1000}}, "decision": "review"}],
}
FAR_FUTURE_MS = int((time.time() + 10 * 86_400) * 1000)


@pytest.fixture
def processor(function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox) -> Iterator[Invoke]:
    from decision_processor import handler

    function_env(
        "DecisionProcessorFunction",
        FLINKS_BASE_URL=sandbox.base_url,
        DECISION_POLICY=json.dumps(REVIEW_POLICY),
        HTTP_READ_TIMEOUT_SECONDS="1.5",
        CONFIRM_SETTLE_SECONDS="3",
        FINISH_RESERVE_SECONDS="0.5",
    )
    handler._dependencies.cache_clear()

    def invoke(event: dict[str, Any], timeout_seconds: float = 8.0) -> dict[str, Any]:
        # A container builds its clients before the first deadline matters; built here, a loaded
        # machine's slow first build cannot eat a test's short invocation budget.
        handler._dependencies()
        answer: dict[str, Any] = handler.lambda_handler(
            event, FakeLambdaContext(timeout_seconds=timeout_seconds)
        )
        return answer

    yield invoke
    handler._dependencies.cache_clear()


@pytest.fixture
def cli(stack: CreatedResources, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    state = tmp_path / "stack.json"
    state.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "endpointUrl": None,
                "outputs": {
                    "GuaranteesTableName": stack.ref("GuaranteesTable"),
                    "DeadLetterQueueUrl": stack.ref("DecisionDeadLetterQueue"),
                },
            }
        )
    )

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = geft_ops([*args, "--local-state", str(state)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _dead_letter(aws: Any, stack: CreatedResources, event: dict[str, Any]) -> None:
    """What Lambda sends to the OnFailure queue once a batch's retries are exhausted."""
    sequences = [int(record["dynamodb"]["SequenceNumber"]) for record in event["Records"]]
    streams = aws.client("dynamodbstreams")
    arn = stack.get_att("GuaranteesTable", "StreamArn")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    message = {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "version": "1.0",
        "timestamp": "2026-12-01T12:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": str(min(sequences)),
            "endSequenceNumber": str(max(sequences)),
            "batchSize": len(event["Records"]),
            "streamArn": arn,
        },
    }
    aws.client("sqs").send_message(
        QueueUrl=stack.ref("DecisionDeadLetterQueue"), MessageBody=json.dumps(message)
    )


def _queue_depth(aws: Any, stack: CreatedResources) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.ref("DecisionDeadLetterQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _stranded_review(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    cli: Callable[..., Any],
) -> tuple[str, dict[str, Any]]:
    """A guarantee an operator decided whose REVIEWED record then failed every claim (throttled)."""
    session_id = sandbox.add_session(scenario=Scenario(amount="2500.00"))
    receive(invoke_receiver, session_id, amount=2500)
    assert processor(feed.next_event()) == {"batchItemFailures": []}
    assert cli("decide", session_id, "accept", "--reason", "verified", "--operator", "dana")[0] == 0
    reviewed = feed.next_event()
    from decision_processor import handler

    with aws_faults_installed() as faults:
        handler._dependencies.cache_clear()  # a new container: its client is created while the faults are on
        faults.fail("dynamodb", "UpdateItem", times=50, when=is_claim)
        for _ in range(3):  # the invocation and its retries: every claim throttled
            assert len(processor(reviewed, timeout_seconds=3)["batchItemFailures"]) == 1
    handler._dependencies.cache_clear()
    return session_id, reviewed


def test_finding_1_a_dead_lettered_review_decision_is_redriven_not_reported_in_progress(
    aws: Any,
    stack: CreatedResources,
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    # GIVEN a decided review whose REVIEWED record was dead-lettered before any claim
    session_id, reviewed = _stranded_review(sandbox, invoke_receiver, processor, feed, cli)
    assert guarantee_item(table_items, session_id)["status"] == "REVIEWED"
    _dead_letter(aws, stack, reviewed)

    # WHEN the operator redrives
    code, out, err = cli("redrive")

    # THEN the guarantee is sent back (not "in-progress"), the message is gone, and the operator's
    # decision is confirmed once
    assert code == 0, err
    assert "redriven" in out
    assert "in-progress" not in out
    assert _queue_depth(aws, stack) == 0
    assert processor(feed.next_event()) == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    item = guarantee_item(table_items, session_id)
    assert (item["status"], item["decisionRule"], item["reviewerNote"]) == (
        "CONFIRMED",
        "manual-review",
        "dana",
    )


def test_finding_1_replay_works_from_reviewed(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    session_id, _ = _stranded_review(sandbox, invoke_receiver, processor, feed, cli)

    code, out, err = cli("replay", session_id)

    assert code == 0, err
    assert "redriven" in out
    assert processor(feed.next_event()) == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]


def test_finding_1_the_sweep_sends_a_stranded_review_decision_back_without_anyone_acting(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
    function_env: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scheduled_jobs import sweeper

    session_id, _ = _stranded_review(sandbox, invoke_receiver, processor, feed, cli)
    function_env("SweeperFunction")
    sweeper._dependencies.cache_clear()
    config, repository = sweeper._dependencies()

    # WHEN the sweep runs now (not stuck yet) and after StuckGuaranteeAgeSeconds
    early = sweeper.sweep(repository, config, now_ms=int(time.time() * 1000))
    late = sweeper.sweep(repository, config, now_ms=FAR_FUTURE_MS)

    # THEN only the late run sends it back, counted as stuck; the processor confirms the decision
    assert early.stuck == 0
    assert late.stuck == 1
    item = guarantee_item(table_items, session_id)
    assert (item["status"], item["changedBy"]) == ("REDRIVE", "function:sweeper")
    assert "stuck in REVIEWED" in item["changeReason"]
    assert processor(feed.next_event()) == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    # and the handler publishes StuckGuarantees every run, 0 included
    capsys.readouterr()
    sweeper.lambda_handler({}, FakeLambdaContext())
    assert metric_values(capsys.readouterr().out, "StuckGuarantees") == [0]
    sweeper._dependencies.cache_clear()


def test_finding_5_an_operator_clock_minutes_ahead_cannot_take_a_live_claim(
    aws: Any,
    stack: CreatedResources,
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a guarantee an invocation holds under a live lease (60 s), and its batch in the DLQ
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id)
    event = feed.next_event()
    repository = GuaranteeRepository(
        stack.ref("GuaranteesTable"),
        retention_days=1,
        actor=Actor.function("p"),
        client=aws.client("dynamodb"),
    )
    now = int(time.time() * 1000)
    ref = GuaranteeRef(session_id, guarantee_item(table_items, session_id)["guaranteeKey"])
    assert repository.claim(ref, claim_id="live", now_ms=now, lease_until_ms=now + 60_000).guarantee
    _dead_letter(aws, stack, event)

    # WHEN an operator whose clock runs 9 minutes ahead redrives
    monkeypatch.setattr(commands, "now_ms", lambda: now + 9 * 60_000)
    code, out, _ = cli("redrive")

    # THEN the claim is left alone, the redrive says so (exit 1) and keeps the message for later
    assert code == 1
    assert "in-progress" in out
    assert guarantee_item(table_items, session_id)["status"] == "DECIDING"
    assert _queue_depth(aws, stack) == 1

    # WHEN the lease has been over for longer than the margin, THEN the redrive takes it
    monkeypatch.setattr(commands, "now_ms", lambda: now + 60_000 + OPERATOR_LEASE_MARGIN_MS + 1)
    code, out, _ = cli("redrive")
    assert (code, "redriven" in out) == (0, True)
    assert _queue_depth(aws, stack) == 0


def test_finding_3c_replay_stores_a_quarantined_second_guarantee_instead_of_redriving_the_first(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    # GIVEN G1 confirmed, then a second guarantee nothing tells apart from it (same amount, no id)
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id)
    processor(feed.next_event())
    second = guarantee_body(session_id, offer="next-best")
    answer = invoke_receiver(webhook_event(second, secret=TEST_WEBHOOK_SECRET))
    # THEN the receiver keeps it for a person instead of answering "duplicate" and dropping it
    assert json.loads(answer["body"]) == {"outcome": "quarantined"}
    [kept] = [item for item in table_items() if item["pk"] == "QUARANTINE"]
    assert kept["reason"] == "same-key-other-content"

    # WHEN the operator replays the session
    code, out, err = cli("replay", session_id)

    # THEN the second guarantee is stored beside the first; the first is left as it is
    assert code == 0, err
    assert "stored-from-quarantine" in out
    assert "already-confirmed" in out
    guarantees = sorted(
        (item["guaranteeKey"], item["status"])
        for item in table_items()
        if item.get("recordType") == "GUARANTEE"
    )
    assert guarantees[0] == ("amount:250.00", "CONFIRMED")
    assert guarantees[1][0].startswith("amount:250.00#")
    assert guarantees[1][1] == "RECEIVED"
    assert sandbox.confirms_for(session_id) == [True]


def test_a_redelivery_with_a_new_when_is_a_duplicate(invoke_receiver: Invoke, table_items: Items) -> None:
    session_id = str(uuid.uuid4())
    first = invoke_receiver(webhook_event(guarantee_body(session_id), secret=TEST_WEBHOOK_SECRET))
    later = guarantee_body(
        session_id, when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    )
    again = invoke_receiver(webhook_event(later, secret=TEST_WEBHOOK_SECRET))

    assert [json.loads(r["body"])["outcome"] for r in (first, again)] == ["stored", "duplicate"]
    assert not [item for item in table_items() if item["pk"] == "QUARANTINE"]


def test_finding_6_unreadable_sessions_are_put_off_with_backoff_and_never_block_the_queue(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    function_env: Callable[..., dict[str, str]],
) -> None:
    from scheduled_jobs import reconciler

    # GIVEN four answered sessions whose /status keeps answering 400, and two readable ones, pages of 2
    failing = [
        sandbox.add_session(scenario=Scenario.preset("accept", faults={"status": ["400"] * 20}))
        for _ in range(4)
    ]
    readable = [sandbox.add_session(scenario=Scenario.preset("accept")) for _ in range(2)]
    for session_id in failing + readable:
        receive(invoke_receiver, session_id)
    processor(feed.next_event())
    function_env("ReconcilerFunction", FLINKS_BASE_URL=sandbox.base_url, RECONCILE_BATCH_LIMIT="2")
    reconciler._dependencies.cache_clear()
    config, repository, flinks = reconciler._dependencies()

    # WHEN one run is due for all of them
    summary = reconciler.reconcile(
        repository, flinks, config, deadline=time.monotonic() + 30, clock=lambda: FAR_FUTURE_MS / 1000
    )

    # THEN the readable ones are reconciled, and each failing one is put off (counted, backed off)
    assert (summary.as_dict()["reconciled"], summary.as_dict()["errors"]) == (2, 4)
    for session_id in failing:
        item = guarantee_item(table_items, session_id)
        assert item["followUpAttempts"] == 1
        assert item["opsDueAtMs"] > FAR_FUTURE_MS
        assert "400" in item["changeReason"]
    reconciler._dependencies.cache_clear()


# -- outcomes are typed end to end: the metrics each disposition emits -----------------------------------


def _disposition_metrics(stdout: str) -> set[str]:
    """The metrics a record's outcome emits: without the per-call Flinks and token-pool family
    (tests/integration/test_flinks_call_metrics.py) and Lambda's cold start."""
    return {
        name
        for name in metric_names(stdout)
        if name != "ColdStart" and not name.startswith(("FlinksCall", "TokenPool"))
    }


@pytest.mark.parametrize(
    ("scenario", "amount", "expected"),
    [
        pytest.param(
            Scenario.preset("accept"),
            250,
            {"Confirmed", "Decided", "DecidedByRule", "WebhookToConfirmLatency"},
            id="confirmed",
        ),
        # decided from the webhook's amount (all the policy reads), then refused: FAILED, not retried
        pytest.param(
            Scenario.preset("not-found"), 250, {"ConfirmFailed", "Decided", "DecidedByRule"}, id="failed"
        ),
        pytest.param(
            Scenario(amount="2500.00"), 2500, {"ReviewRequested", "Decided", "DecidedByRule"}, id="review"
        ),
        pytest.param(
            Scenario.preset("accept", faults={"confirm": ["503"] * 20}),
            250,
            {"DecisionRetried"},  # a decision is counted once, when its guarantee finishes
            id="retry",
        ),
    ],
)
def test_finding_2_each_disposition_emits_its_own_metrics_and_a_review_is_not_a_failed_confirm(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    capsys: pytest.CaptureFixture[str],
    scenario: Scenario,
    amount: int,
    expected: set[str],
) -> None:
    session_id = sandbox.add_session(scenario=scenario)
    receive(invoke_receiver, session_id, amount=amount)
    event = feed.next_event()
    capsys.readouterr()

    processor(event, timeout_seconds=4)

    assert _disposition_metrics(capsys.readouterr().out) == expected
