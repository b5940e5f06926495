"""Operations in-process under moto: manual review, the review timeout, reconciliation, DLQ redrive
and replay, driven through the operator CLI and the scheduled jobs, with the Flinks sandbox."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from geft.signature import compute_signature
from geft_local.flinks_sandbox import FlinksSandbox, Scenario
from geft_local.template_resources import CreatedResources
from geft_ops.cli import main as geft_ops

from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.lambda_context import FakeLambdaContext
from tests.support.pipeline import guarantee_item, receive
from tests.support.streams import StreamFeed
from tests.support.webhooks import status_body, webhook_event

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
REVIEW_POLICY = {
    "default": "accept",
    "rules": [{"name": "large-amount", "when": {"amount": {"gt": 1000}}, "decision": "review"}],
}
FAR_FUTURE_MS = int((time.time() + 10 * 86_400) * 1000)


@pytest.fixture
def processor(
    function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox
) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
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

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext(timeout_seconds=8))
        return answer

    yield invoke
    handler._dependencies.cache_clear()


@pytest.fixture
def cli(stack: CreatedResources, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """The operator CLI against this test's moto stack, through a local-stack state file."""
    state = tmp_path / "stack.json"
    state.write_text(
        json.dumps(
            {
                "pid": os.getpid(),  # "running": this process plays the local stack
                "endpointUrl": None,  # in-process moto intercepts the calls
                "region": "us-east-1",
                "outputs": {
                    "GuaranteesTableName": stack.ref("GuaranteesTable"),
                    "GuaranteesTableStreamArn": stack.get_att("GuaranteesTable", "StreamArn"),
                    "DeadLetterQueueUrl": stack.ref("DecisionDeadLetterQueue"),
                },
            }
        )
    )

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what the functions logged before
        code = geft_ops(["--local-state", str(state), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_review_then_operator_decision_then_confirm(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    # GIVEN a guarantee the policy sends to a person
    session_id = sandbox.add_session(scenario=Scenario(amount="2500.00"))
    receive(invoke_receiver, session_id, amount=2500)
    assert processor(feed.next_event()) == {"batchItemFailures": []}
    held = guarantee_item(table_items, session_id)
    assert (held["status"], held["decision"], held["decisionRule"]) == ("REVIEW", "review", "large-amount")
    assert held["opsQueue"].startswith("REVIEW#")  # a shard of the review queue
    assert sandbox.confirms_for(session_id) == []

    # WHEN an operator accepts it with a reason
    code, out, _ = cli("decide", session_id, "accept", "--reason", "known customer", "--operator", "alice")
    assert code == 0, out
    answer = processor(feed.next_event())

    # THEN the stream path confirms the operator's decision once, and the audit trail says who and why
    assert answer == {"batchItemFailures": []}
    assert sandbox.confirms_for(session_id) == [True]
    item = guarantee_item(table_items, session_id)
    assert (item["status"], item["decision"], item["decisionRule"]) == (
        "CONFIRMED",
        "accept",
        "manual-review",
    )
    # who: the verified AWS identity (moto's STS), with the operator's own name as a note
    assert (item["reviewer"], item["reviewerNote"], item["reviewReason"]) == (
        "operator:arn:aws:sts::123456789012:user/moto",
        "alice",
        "known customer",
    )
    # the audit trail keeps why it went to review and the facts the policy saw
    assert (item["reviewRequestedByRule"], item["decisionInputs"]["amount"]) == ("large-amount", "2500")
    code, out, _ = cli("show", session_id)
    assert code == 0
    assert "review     asked by rule large-amount" in out
    assert "accept by operator:arn:aws:sts::123456789012:user/moto (alice)" in out
    assert "known customer" in out


def test_unanswered_review_falls_back_to_the_configured_decision(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    function_env: Callable[..., dict[str, str]],
) -> None:
    from scheduled_jobs import review_timeout

    # GIVEN a guarantee waiting in review
    session_id = sandbox.add_session(scenario=Scenario(amount="2500.00"))
    receive(invoke_receiver, session_id, amount=2500)
    processor(feed.next_event())

    # WHEN the scheduled job runs after the review deadline
    function_env("ReviewTimeoutFunction")
    review_timeout._dependencies.cache_clear()
    config, repository = review_timeout._dependencies()
    before = review_timeout.apply_fallbacks(repository, config, now_ms=int(time.time() * 1000))
    after = review_timeout.apply_fallbacks(repository, config, now_ms=FAR_FUTURE_MS)
    processor(feed.next_event())

    # THEN nothing happened before the deadline; after it, the fallback (reject) is confirmed once
    assert before["fallbackDecisions"] == 0
    assert (before["waitingForAPerson"], before["oldestReviewAgeSeconds"] < 60) == (1, True)
    assert after["fallbackDecisions"] == 1
    assert sandbox.confirms_for(session_id) == [False]
    item = guarantee_item(table_items, session_id)
    assert (item["status"], item["decision"], item["decisionRule"]) == (
        "CONFIRMED",
        "reject",
        "review-timeout",
    )
    assert item["reviewer"] == "function:review-timeout"
    review_timeout._dependencies.cache_clear()


def test_missed_status_webhook_is_reconciled(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    function_env: Callable[..., dict[str, str]],
) -> None:
    from scheduled_jobs import reconciler

    # GIVEN two confirmed sessions: one whose status webhook arrived, one whose never did
    missed, delivered = (sandbox.add_session(scenario=Scenario.preset("accept")) for _ in range(2))
    for session_id in (missed, delivered):
        receive(invoke_receiver, session_id)
    processor(feed.next_event())
    invoke_receiver(webhook_event(status_body(delivered), secret=TEST_WEBHOOK_SECRET))

    # WHEN the reconciler runs after the delay
    function_env("ReconcilerFunction", FLINKS_BASE_URL=sandbox.base_url)
    reconciler._dependencies.cache_clear()
    config, repository, flinks = reconciler._dependencies()
    summary = reconciler.reconcile(
        repository, flinks, config, deadline=time.monotonic() + 20, clock=lambda: FAR_FUTURE_MS / 1000
    )

    # THEN the missed one is read from /status and recorded; the other needed no call
    assert summary.as_dict() == {
        "reconciled": 1,
        "alreadyKnown": 1,
        "pending": 0,
        "gaveUp": 0,
        "notFound": 0,
        "errors": 0,
    }
    sessions = {i["pk"]: i for i in table_items() if i["sk"] == "SESSION"}
    assert sessions[missed]["finalStatus"] == "Completed"
    assert sessions[missed]["finalStatusSource"] == "reconciliation"
    assert sessions[delivered]["finalStatusSource"] == "webhook"
    assert [c.path for c in sandbox.calls(path_suffix="/status")] == [f"/api/v2/sessions/{missed}/status"]
    assert "opsQueue" not in guarantee_item(table_items, missed)
    reconciler._dependencies.cache_clear()


def test_dead_lettered_batch_is_redriven_and_confirmed_exactly_once(
    aws: Any,
    stack: CreatedResources,
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    # GIVEN two sessions whose batch failed during a Flinks outage and was dead-lettered
    sessions = [
        sandbox.add_session(scenario=Scenario.preset("accept", faults={"confirm": ["503"] * 12}))
        for _ in range(2)
    ]
    for session_id in sessions:
        receive(invoke_receiver, session_id)
    event = feed.next_event()
    answer = processor(event)
    assert len(answer["batchItemFailures"]) == 2
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
    aws.client("sqs").send_message(
        QueueUrl=stack.ref("DecisionDeadLetterQueue"),
        MessageBody=json.dumps(_on_failure_message(stack, event, min(sequences), max(sequences))),
    )

    # WHEN Flinks has recovered and the operator redrives the DLQ
    for session_id in sessions:
        sandbox.clear_faults(session_id)
    sandbox.clear_journal()
    code, out, _ = cli("redrive")
    redriven = processor(feed.next_event())

    # THEN each session is confirmed exactly once and the message is gone
    assert code == 0, out
    assert out.count("redriven") == 2
    assert redriven == {"batchItemFailures": []}
    assert all(sandbox.confirms_for(s) == [True] for s in sessions)
    assert all(guarantee_item(table_items, s)["status"] == "CONFIRMED" for s in sessions)
    queue = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.ref("DecisionDeadLetterQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert queue["Attributes"]["ApproximateNumberOfMessages"] == "0"
    # a second redrive finds nothing to do (exit 1, as documented) and changes nothing
    assert cli("redrive")[:2] == (1, "DLQ is empty: nothing to do\n")
    assert all(sandbox.confirms_for(s) == [True] for s in sessions)


def test_replay_of_a_quarantined_webhook(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    cli: Callable[..., Any],
) -> None:
    # GIVEN a genuine webhook quarantined because its `when` was outside the replay window
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    receive(invoke_receiver, session_id, when="2000-01-01T00:00:00Z")
    assert [i["reason"] for i in table_items() if i["pk"] == "QUARANTINE"] == ["outside-replay-window"]

    # WHEN the operator replays the session
    code, out, _ = cli("replay", session_id)
    processor(feed.next_event())

    # THEN the kept body goes through the decision path and is confirmed once
    assert code == 0, out
    assert "stored-from-quarantine" in out
    assert sandbox.confirms_for(session_id) == [True]
    # replaying a confirmed session again confirms nothing more: nothing to do, exit 1
    code, out, _ = cli("replay", session_id)
    assert (code, "already-confirmed" in out) == (1, True)
    assert feed.next_event() == {"Records": []}


def test_list_and_json_output(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    cli: Callable[..., Any],
) -> None:
    accepted = sandbox.add_session(scenario=Scenario.preset("accept"))
    in_review = sandbox.add_session(scenario=Scenario(amount="2500.00"))
    receive(invoke_receiver, accepted)
    receive(invoke_receiver, in_review, amount=2500)
    processor(feed.next_event())

    code, out, _ = cli("list", "--decision", "review", "--since", "1h", "--json")

    assert code == 0
    rows = json.loads(out)
    assert [(r["sessionId"], r["rule"], r["status"]) for r in rows] == [(in_review, "large-amount", "REVIEW")]
    code, out, _ = cli("list", "--status", "CONFIRMED")
    assert code == 0
    assert accepted in out
    assert in_review not in out
    assert cli("list", "--since", "2000-01-01T00:00:00Z")[1].count("\n") == 3  # header and two rows


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["decide", "not-a-uuid", "accept", "--reason", "x"], 2, "not a session id", id="bad-session"
        ),
        pytest.param(
            ["decide", str(uuid.uuid4()), "maybe", "--reason", "x"], 2, "invalid choice", id="bad-decision"
        ),
        pytest.param(["decide", str(uuid.uuid4()), "accept"], 2, "--reason", id="no-reason"),
        pytest.param(
            ["decide", str(uuid.uuid4()), "accept", "--reason", " "], 2, "must say why", id="blank-reason"
        ),
        pytest.param(
            ["decide", str(uuid.uuid4()), "accept", "--reason", "x"],
            1,
            "no guarantee waiting",
            id="not-in-review",
        ),
        pytest.param(["show", str(uuid.uuid4())], 1, "no record of session", id="unknown-session"),
        pytest.param(["list", "--since", "yesterday"], 2, "use 30m", id="bad-since"),
        pytest.param(["list", "--limit", "0"], 2, "at least 1", id="bad-limit"),
        pytest.param(["frobnicate"], 2, "invalid choice", id="unknown-command"),
    ],
)
def test_cli_bad_arguments(cli: Callable[..., Any], args: list[str], code: int, message: str) -> None:
    result, out, err = cli(*args)

    assert result == code
    assert message in err
    assert len(err.splitlines()) == 1  # one line, as every failure: no usage dump
    assert out == ""


def test_cli_needs_to_know_where_the_stack_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert geft_ops(["list"]) == 2
    assert "--stack NAME" in capsys.readouterr().err


def test_cli_local_without_a_running_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert geft_ops(["--local-state", str(tmp_path / "missing.json"), "list"]) == 1
    assert "is `make local` running?" in capsys.readouterr().err
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({"pid": 999_999_999, "outputs": {"GuaranteesTableName": "t"}}))
    assert geft_ops(["list", "--local-state", str(dead)]) == 1
    assert "is not running" in capsys.readouterr().err


def test_cli_sign_and_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"sessionId": "x"}')
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"default": "maybe", "rules": []}')

    assert geft_ops(["sign", "--secret", "s3cret-for-test", str(body)]) == 0
    assert capsys.readouterr().out.strip() == compute_signature(b'{"sessionId": "x"}', "s3cret-for-test")
    os.environ.pop("WEBHOOK_SECRET", None)
    assert geft_ops(["sign", str(body)]) == 2  # no secret given
    assert "WEBHOOK_SECRET" in capsys.readouterr().err
    assert geft_ops(["sign", "--secret", "s", str(tmp_path / "nope")]) == 2
    assert geft_ops(["policy", "check", "policies/default.json"]) == 0
    assert geft_ops(["policy", "check", str(bad_policy)]) == 1


def _on_failure_message(
    stack: CreatedResources, event: dict[str, Any], start: int, end: int
) -> dict[str, Any]:
    """What Lambda sends to a stream's OnFailure destination once a batch's retries are exhausted."""
    return {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "functionError": None},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": _shard_id(event),
            "startSequenceNumber": str(start),
            "endSequenceNumber": str(end),
            "batchSize": len(event["Records"]),
            "streamArn": stack.get_att("GuaranteesTable", "StreamArn"),
        },
    }


def _shard_id(event: dict[str, Any]) -> str:
    import boto3
    from botocore.config import Config

    arn = event["Records"][0]["eventSourceARN"]
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    return str(streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"])


def test_reconciler_drains_the_whole_due_queue_in_one_run(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    function_env: Callable[..., dict[str, str]],
) -> None:
    from scheduled_jobs import reconciler

    # GIVEN five answered sessions, spread over the queue's shards, and pages of two
    sessions = [sandbox.add_session(scenario=Scenario.preset("accept")) for _ in range(5)]
    for session_id in sessions:
        receive(invoke_receiver, session_id)
    processor(feed.next_event())
    queued = [guarantee_item(table_items, s)["opsQueue"] for s in sessions]
    assert all(key.startswith("RECONCILE#") for key in queued)

    # WHEN one run of the reconciler is due
    function_env("ReconcilerFunction", FLINKS_BASE_URL=sandbox.base_url, RECONCILE_BATCH_LIMIT="2")
    reconciler._dependencies.cache_clear()
    config, repository, flinks = reconciler._dependencies()
    summary = reconciler.reconcile(
        repository, flinks, config, deadline=time.monotonic() + 30, clock=lambda: FAR_FUTURE_MS / 1000
    )

    # THEN it pages until the queue is empty, asking Flinks once per session
    assert (summary.as_dict()["reconciled"], summary.errors) == (5, [])
    assert len(sandbox.calls(path_suffix="/status")) == 5
    assert all("opsQueue" not in guarantee_item(table_items, s) for s in sessions)
    reconciler._dependencies.cache_clear()


# -- policy check (the offline checker) ---------------------------------------------------------------


def test_policy_check_accepts_the_shipped_policy_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    from geft.policy import DEFAULT_POLICY_JSON, DecisionPolicy

    assert geft_ops(["policy", "check", "policies/default.json"]) == 0

    identity = DecisionPolicy.from_json(DEFAULT_POLICY_JSON).identity
    assert capsys.readouterr() == (f"OK: {identity.label()}: 4 rules, default accept\n", "")


def test_policy_check_reports_every_problem_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"default": "accept", "rules": [{"name": "t", "when": {"amout": {"gt": 0}}, "decision": "no"}]}
        )
    )
    warned = tmp_path / "warned.json"
    warned.write_text(
        json.dumps(
            {
                "default": "accept",
                "rules": [{"name": "r", "when": {"overallRiskLevel": {"eq": "HIGH"}}, "decision": "reject"}],
            }
        )
    )

    assert geft_ops(["policy", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "rule 't' (rules[0]): when: unknown field 'amout'" in err
    assert "rule 't' (rules[0]): unknown decision \"no\"" in err
    assert geft_ops(["policy", "check", str(warned)]) == 0
    assert (
        "warning: rule 'r' (rules[0]): when.overallRiskLevel.eq: [\"HIGH\"] is not a value Flinks sends"
        in (capsys.readouterr().out)
    )


def test_policy_check_decides_facts(capsys: pytest.CaptureFixture[str]) -> None:
    facts = '{"amount": 100.10, "shortfall": 0.01, "guaranteeOffered": true}'

    assert geft_ops(["policy", "check", "policies/default.json", "--facts", facts]) == 0

    _, decision = capsys.readouterr().out.splitlines()
    assert json.loads(decision) == {
        "decision": "reject",
        "rule": "shortfall",
        "reason": "SHORTFALL",
        "missingFacts": [],
        "inputs": {"amount": "100.10", "guaranteeOffered": True, "shortfall": "0.01"},
    }


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["policy"], id="no-action"),
        pytest.param(["policy", "check"], id="no-file"),
        pytest.param(["policy", "lint", "policies/default.json"], id="unknown-action"),
        pytest.param(["policy", "check", "does/not/exist.json"], id="unreadable-file"),
        pytest.param(["policy", "check", "policies/default.json", "--facts", "{oops"], id="facts-not-json"),
        pytest.param(["policy", "check", "policies/default.json", "--facts", "[1]"], id="facts-not-object"),
    ],
)
def test_policy_check_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert geft_ops(args) == 2
    assert capsys.readouterr().err
