"""No guarantee left behind, under moto with the Flinks sandbox: the sequences an independent review
found that stranded a guarantee, paged the wrong alarm, or let an operator's clock take a live claim.

Each test names the finding it closes (issue 11); on the code before it, each one failed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from geft.models import Actor, GuaranteeRef
from geft.repository import OPERATOR_LEASE_MARGIN_MS, GuaranteeRepository
from geft_ops import commands

from testkit.aws import aws_calls_recorded, is_claim
from testkit.emf import metric_names, metric_values
from testkit.flinks import Scenario
from testkit.lambda_context import LambdaContext
from tests.support.pipeline import (
    FAR_FUTURE_MS,
    REVIEW_POLICY_ENV,
    Cli,
    Pipeline,
    Scheduled,
    reconcile_when_due,
)

PROCESSOR_ENV = REVIEW_POLICY_ENV


def _stranded_review(pipeline: Pipeline, cli: Cli) -> tuple[str, dict[str, Any]]:
    """A guarantee an operator decided whose REVIEWED record then failed every claim (throttled)."""
    session_id = pipeline.in_review()
    assert cli("decide", session_id, "accept", "--reason", "verified", "--operator", "dana")[0] == 0
    reviewed = pipeline.feed.next_event()
    with aws_calls_recorded() as faults:
        pipeline.stack.processor._dependencies.cache_clear()  # a new container: its client sees the faults
        faults.fail("dynamodb", "UpdateItem", times=50, when=is_claim)
        for _ in range(3):  # the invocation and its retries: every claim throttled
            assert len(pipeline.process(reviewed, timeout_seconds=3)["batchItemFailures"]) == 1
    pipeline.stack.processor._dependencies.cache_clear()
    return session_id, reviewed


def test_finding_1_a_dead_lettered_review_decision_is_redriven_not_reported_in_progress(
    pipeline: Pipeline, cli: Cli
) -> None:
    # GIVEN a decided review whose REVIEWED record was dead-lettered before any claim
    session_id, reviewed = _stranded_review(pipeline, cli)
    assert pipeline.item(session_id)["status"] == "REVIEWED"
    pipeline.dead_letter(reviewed)

    # WHEN the operator redrives
    code, out, err = cli("redrive")

    # THEN the guarantee is sent back (not "in-progress"), the message is gone, and the operator's
    # decision is confirmed once
    assert code == 0, err
    assert "redriven" in out
    assert "in-progress" not in out
    assert pipeline.dead_letters() == 0
    assert pipeline.process() == {"batchItemFailures": []}
    assert pipeline.confirms(session_id) == [True]
    assert pipeline.outcome(session_id) == ("CONFIRMED", "accept", "manual-review")
    assert pipeline.item(session_id)["reviewerNote"] == "dana"


def test_finding_1_replay_works_from_reviewed(pipeline: Pipeline, cli: Cli) -> None:
    session_id, _ = _stranded_review(pipeline, cli)

    code, out, err = cli("replay", session_id)

    assert code == 0, err
    assert "redriven" in out
    assert pipeline.process() == {"batchItemFailures": []}
    assert pipeline.confirms(session_id) == [True]


def test_finding_1_the_sweep_sends_a_stranded_review_decision_back_without_anyone_acting(
    pipeline: Pipeline, cli: Cli, scheduled: Scheduled, capsys: pytest.CaptureFixture[str]
) -> None:
    from scheduled_jobs import sweeper

    session_id, _ = _stranded_review(pipeline, cli)
    config, repository = scheduled(sweeper, "SweeperFunction")

    # WHEN the sweep runs now (not stuck yet) and after StuckGuaranteeAgeSeconds
    early = sweeper.sweep(repository, config, now_ms=int(time.time() * 1000))
    late = sweeper.sweep(repository, config, now_ms=FAR_FUTURE_MS)

    # THEN only the late run sends it back, counted as stuck; the processor confirms the decision
    assert early.stuck == 0
    assert late.stuck == 1
    item = pipeline.item(session_id)
    assert (item["status"], item["changedBy"]) == ("REDRIVE", "function:sweeper")
    assert "stuck in REVIEWED" in item["changeReason"]
    assert pipeline.process() == {"batchItemFailures": []}
    assert pipeline.confirms(session_id) == [True]
    # and the handler publishes StuckGuarantees every run, 0 included
    capsys.readouterr()
    sweeper.lambda_handler({}, LambdaContext())
    assert metric_values(capsys.readouterr().out, "StuckGuarantees") == [0]


def test_finding_5_an_operator_clock_minutes_ahead_cannot_take_a_live_claim(
    pipeline: Pipeline, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a guarantee an invocation holds under a live lease (60 s), and its batch in the DLQ
    session_id, event = pipeline.guarantee()
    repository = GuaranteeRepository(
        pipeline.stack.ref("GuaranteesTable"),
        retention_days=1,
        actor=Actor.function("p"),
        client=pipeline.stack.session.client("dynamodb"),
    )
    now = int(time.time() * 1000)
    ref = GuaranteeRef(session_id, pipeline.item(session_id)["guaranteeKey"])
    assert repository.claim(ref, claim_id="live", now_ms=now, lease_until_ms=now + 60_000).guarantee
    pipeline.dead_letter(event)

    # WHEN an operator whose clock runs 9 minutes ahead redrives
    monkeypatch.setattr(commands, "now_ms", lambda: now + 9 * 60_000)
    code, out, _ = cli("redrive")

    # THEN the claim is left alone, the redrive says so once (exit 1) and keeps the message for later
    assert code == 1
    assert out.count("in-progress") == 1
    assert pipeline.item(session_id)["status"] == "DECIDING"
    assert pipeline.dead_letters() == 1

    # WHEN the lease has been over for longer than the margin, THEN the redrive takes it
    monkeypatch.setattr(commands, "now_ms", lambda: now + 60_000 + OPERATOR_LEASE_MARGIN_MS + 1)
    code, out, _ = cli("redrive")
    assert (code, "redriven" in out) == (0, True)
    assert pipeline.dead_letters() == 0


def test_finding_3c_replay_stores_a_quarantined_second_guarantee_instead_of_redriving_the_first(
    pipeline: Pipeline, cli: Cli
) -> None:
    # GIVEN G1 confirmed, then a second guarantee nothing tells apart from it (same amount, no id)
    session_id = pipeline.session()
    pipeline.receive(session_id)
    pipeline.process()
    answer = pipeline.invoke_receiver(pipeline.stack.webhook(session_id, offer="next-best"))
    # THEN the receiver keeps it for a person instead of answering "duplicate" and dropping it
    assert json.loads(answer["body"]) == {"outcome": "quarantined"}
    [kept] = [item for item in pipeline.items() if item["pk"] == "QUARANTINE"]
    assert kept["reason"] == "same-key-other-content"

    # WHEN the operator replays the session
    code, out, err = cli("replay", session_id)

    # THEN the second guarantee is stored beside the first; the first is left as it is
    assert code == 0, err
    assert "stored-from-quarantine" in out
    assert "already-confirmed" in out
    guarantees = sorted(
        (item["guaranteeKey"], item["status"])
        for item in pipeline.items()
        if item.get("recordType") == "GUARANTEE"
    )
    assert guarantees[0] == ("amount:250.00", "CONFIRMED")
    assert guarantees[1][0].startswith("amount:250.00#")
    assert guarantees[1][1] == "RECEIVED"
    assert pipeline.confirms(session_id) == [True]


def test_a_redelivery_with_a_new_when_is_a_duplicate(pipeline: Pipeline) -> None:
    session_id = str(uuid.uuid4())
    first = pipeline.invoke_receiver(pipeline.stack.webhook(session_id))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    again = pipeline.invoke_receiver(pipeline.stack.webhook(session_id, when=later))

    assert [json.loads(r["body"])["outcome"] for r in (first, again)] == ["stored", "duplicate"]
    assert not [item for item in pipeline.items() if item["pk"] == "QUARANTINE"]


def test_finding_6_unreadable_sessions_are_put_off_with_backoff_and_never_block_the_queue(
    pipeline: Pipeline, scheduled: Scheduled
) -> None:
    # GIVEN four answered sessions whose /status keeps answering 400, and two readable ones, pages of 2
    failing = [pipeline.session(faults={"status": ["400"] * 20}) for _ in range(4)]
    readable = [pipeline.session() for _ in range(2)]
    for session_id in failing + readable:
        pipeline.receive(session_id)
    pipeline.process()

    # WHEN one run is due for all of them
    summary = reconcile_when_due(scheduled, RECONCILE_BATCH_LIMIT="2")

    # THEN the readable ones are reconciled, and each failing one is put off (counted, backed off)
    assert (summary.as_dict()["reconciled"], summary.as_dict()["errors"]) == (2, 4)
    for session_id in failing:
        item = pipeline.item(session_id)
        assert item["followUpAttempts"] == 1
        assert item["opsDueAtMs"] > FAR_FUTURE_MS
        assert "400" in item["changeReason"]


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
            Scenario.preset("accept", faults={"confirm": ["500"]}),  # outcome unknown: retried at once
            250,
            {"DecisionRetried"},  # a decision is counted once, when its guarantee finishes
            id="retry",
        ),
    ],
)
def test_finding_2_each_disposition_emits_its_own_metrics_and_a_review_is_not_a_failed_confirm(
    pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    scenario: Scenario,
    amount: int,
    expected: set[str],
) -> None:
    session_id = pipeline.sandbox.add_session(scenario=scenario)
    pipeline.receive(session_id, amount=amount)
    event = pipeline.feed.next_event()
    capsys.readouterr()

    pipeline.process(event, timeout_seconds=4)

    assert _disposition_metrics(capsys.readouterr().out) == expected
