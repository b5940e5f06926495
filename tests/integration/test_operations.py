"""Operations in-process under moto: manual review, the review timeout, reconciliation, DLQ redrive
and replay, driven through the operator CLI and the scheduled jobs, with the Flinks sandbox."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from geft.signature import compute_signature
from geft_ops import commands
from geft_ops.cli import main as geft_ops

from tests.support.pipeline import (
    FAR_FUTURE_MS,
    REVIEW_POLICY_ENV,
    Cli,
    Pipeline,
    Scheduled,
    reconcile_when_due,
)

PROCESSOR_ENV = REVIEW_POLICY_ENV


def test_review_then_operator_decision_then_confirm(pipeline: Pipeline, cli: Cli) -> None:
    # GIVEN a guarantee the policy sends to a person
    session_id = pipeline.in_review()
    held = pipeline.item(session_id)
    assert pipeline.outcome(session_id) == ("REVIEW", "review", "large-amount")
    assert held["opsQueue"].startswith("REVIEW#")  # a shard of the review queue
    assert pipeline.confirms(session_id) == []

    # WHEN an operator accepts it with a reason
    code, out, _ = cli("decide", session_id, "accept", "--reason", "known customer", "--operator", "alice")
    assert code == 0, out
    answer = pipeline.process()

    # THEN the stream path confirms the operator's decision once, and the audit trail says who and why
    assert answer == {"batchItemFailures": []}
    assert pipeline.confirms(session_id) == [True]
    assert pipeline.outcome(session_id) == ("CONFIRMED", "accept", "manual-review")
    item = pipeline.item(session_id)
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
    pipeline: Pipeline, scheduled: Scheduled
) -> None:
    from scheduled_jobs import review_timeout

    # GIVEN a guarantee waiting in review
    session_id = pipeline.in_review()

    # WHEN the scheduled job runs after the review deadline
    config, repository = scheduled(review_timeout, "ReviewTimeoutFunction")
    before = review_timeout.apply_fallbacks(repository, config, now_ms=int(time.time() * 1000))
    after = review_timeout.apply_fallbacks(repository, config, now_ms=FAR_FUTURE_MS)
    pipeline.process()

    # THEN nothing happened before the deadline; after it, the fallback (reject) is confirmed once
    assert before["fallbackDecisions"] == 0
    assert (before["waitingForAPerson"], before["oldestReviewAgeSeconds"] < 60) == (1, True)
    assert after["fallbackDecisions"] == 1
    assert pipeline.confirms(session_id) == [False]
    assert pipeline.outcome(session_id) == ("CONFIRMED", "reject", "review-timeout")
    assert pipeline.item(session_id)["reviewer"] == "function:review-timeout"


def test_missed_status_webhook_is_reconciled(pipeline: Pipeline, scheduled: Scheduled) -> None:
    # GIVEN two confirmed sessions: one whose status webhook arrived, one whose never did
    missed, delivered = pipeline.session(), pipeline.session()
    for session_id in (missed, delivered):
        pipeline.receive(session_id)
    pipeline.process()
    pipeline.invoke_receiver(pipeline.stack.webhook(delivered, status="Completed"))

    # WHEN the reconciler runs after the delay
    summary = reconcile_when_due(scheduled)

    # THEN the missed one is read from /status and recorded; the other needed no call
    assert summary.as_dict() == {
        "reconciled": 1,
        "alreadyKnown": 1,
        "pending": 0,
        "gaveUp": 0,
        "notFound": 0,
        "errors": 0,
    }
    sessions = {i["pk"]: i for i in pipeline.items() if i["sk"] == "SESSION"}
    assert sessions[missed]["finalStatus"] == "Completed"
    assert sessions[missed]["finalStatusSource"] == "reconciliation"
    assert sessions[delivered]["finalStatusSource"] == "webhook"
    status_calls = pipeline.sandbox.calls(path_suffix="/status")
    assert [c.path for c in status_calls] == [f"/api/v2/sessions/{missed}/status"]
    assert "opsQueue" not in pipeline.item(missed)


def test_dead_lettered_batch_is_redriven_and_confirmed_exactly_once(pipeline: Pipeline, cli: Cli) -> None:
    # GIVEN two sessions whose batch failed during a Flinks outage (a short invocation gave up on it)
    # and was dead-lettered
    sessions = [pipeline.session(faults={"confirm": ["503"] * 12}) for _ in range(2)]
    for session_id in sessions:
        pipeline.receive(session_id)
    event = pipeline.feed.next_event()
    answer = pipeline.process(event, timeout_seconds=2.5)
    assert len(answer["batchItemFailures"]) == 2
    pipeline.dead_letter(event)

    # WHEN Flinks has recovered and the operator redrives the DLQ
    for session_id in sessions:
        pipeline.sandbox.clear_faults(session_id)
    pipeline.sandbox.clear_journal()
    code, out, _ = cli("redrive")
    redriven = pipeline.process()

    # THEN each session is confirmed exactly once and the message is gone
    assert code == 0, out
    assert out.count("redriven") == 2
    assert redriven == {"batchItemFailures": []}
    assert all(pipeline.confirms(s) == [True] for s in sessions)
    assert all(pipeline.item(s)["status"] == "CONFIRMED" for s in sessions)
    assert pipeline.dead_letters() == 0
    # a second redrive finds nothing to do (exit 1, as documented) and changes nothing
    assert cli("redrive")[:2] == (1, "DLQ is empty: nothing to do\n")
    assert all(pipeline.confirms(s) == [True] for s in sessions)


def test_a_message_that_is_not_a_stream_failure_record_does_not_block_the_redrive(
    pipeline: Pipeline, cli: Cli
) -> None:
    # GIVEN someone's stray message in the DLQ, ahead of a real dead-lettered batch
    sqs = pipeline.stack.session.client("sqs")
    queue_url = pipeline.stack.ref("DecisionDeadLetterQueue")
    stray = sqs.send_message(QueueUrl=queue_url, MessageBody='{"hello": "world"}')["MessageId"]
    session_id, event = pipeline.guarantee()
    pipeline.dead_letter(event)

    # WHEN the operator redrives
    code, out, _ = cli("redrive")

    # THEN the real batch is sent back, the stray one is listed unreadable and kept for a person (exit 1)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert code == 1, out
    assert sorted(rows) == sorted(
        [[session_id, "amount:250.00", "redriven"], ["-", f"message:{stray}", "unreadable"]]
    )
    assert pipeline.item(session_id)["status"] == "REDRIVE"
    assert pipeline.dead_letters() == 1


def test_a_dry_run_lists_every_dead_letter_once_and_leaves_them_all_visible(
    pipeline: Pipeline, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN twelve dead-lettered batches (more than one receive, 10 at most, hands back) in a queue
    # whose own visibility timeout is shorter than the run, and a stream that went on after them (so
    # each read of a batch ends at its last record, not after the empty pages of the stream's tail)
    session_id, event = pipeline.guarantee()
    for _ in range(12):
        pipeline.dead_letter(event)
    pipeline.receive(pipeline.session())
    sqs = pipeline.stack.session.client("sqs")
    queue_url = pipeline.stack.ref("DecisionDeadLetterQueue")
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    read_batch = commands._refs_of_dead_letter

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.15)  # ten messages outlast the queue's 1 s
        return read_batch(*args, **kwargs)

    monkeypatch.setattr(commands, "_refs_of_dead_letter", slow_read)

    # WHEN the operator looks first
    code, out, _ = cli("redrive", "--dry-run")

    # THEN each message is listed once, none is deleted, and all are visible again for the redrive
    assert code == 0, out
    assert out.count(session_id) == 12
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "12"


def test_replay_of_a_quarantined_webhook(pipeline: Pipeline, cli: Cli) -> None:
    # GIVEN a genuine webhook quarantined because its `when` was outside the replay window
    session_id = pipeline.session()
    pipeline.receive(session_id, when="2000-01-01T00:00:00Z")
    assert [i["reason"] for i in pipeline.items() if i["pk"] == "QUARANTINE"] == ["outside-replay-window"]

    # WHEN the operator replays the session
    code, out, _ = cli("replay", session_id)
    pipeline.process()

    # THEN the kept body goes through the decision path and is confirmed once
    assert code == 0, out
    assert "stored-from-quarantine" in out
    assert pipeline.confirms(session_id) == [True]
    # replaying a confirmed session again confirms nothing more: nothing to do, exit 1
    code, out, _ = cli("replay", session_id)
    assert (code, "already-confirmed" in out) == (1, True)
    assert pipeline.feed.next_event() == {"Records": []}


def test_list_and_json_output(pipeline: Pipeline, cli: Cli) -> None:
    accepted = pipeline.session()
    pipeline.receive(accepted)
    in_review = pipeline.in_review()

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
def test_cli_bad_arguments(cli: Cli, args: list[str], code: int, message: str) -> None:
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


def test_reconciler_drains_the_whole_due_queue_in_one_run(pipeline: Pipeline, scheduled: Scheduled) -> None:
    # GIVEN five answered sessions, spread over the queue's shards, and pages of two
    sessions = [pipeline.session() for _ in range(5)]
    for session_id in sessions:
        pipeline.receive(session_id)
    pipeline.process()
    queued = [pipeline.item(s)["opsQueue"] for s in sessions]
    assert all(key.startswith("RECONCILE#") for key in queued)

    # WHEN one run of the reconciler is due
    summary = reconcile_when_due(scheduled, RECONCILE_BATCH_LIMIT="2")

    # THEN it pages until the queue is empty, asking Flinks once per session
    assert (summary.as_dict()["reconciled"], summary.errors) == (5, [])
    assert len(pipeline.sandbox.calls(path_suffix="/status")) == 5
    assert all("opsQueue" not in pipeline.item(s) for s in sessions)


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
