"""Operations end to end on the local stack: manual review, the review timeout, reconciliation of a
missed status webhook, DLQ redrive after an outage, and the operator CLI (a real subprocess, as an
operator runs it) including bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from geft_local.stack import LocalStack, poll_until

from testkit.flinks import Scenario
from tests.e2e.conftest import StartStack
from tests.e2e.helpers import console_dump
from tests.support.constants import TEST_WEBHOOK_SECRET

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
REVIEW_POLICY = {
    "default": "accept",
    "rules": [{"name": "large-amount", "when": {"amount": {"gt": 1000}}, "decision": "review"}],
}
WAIT_S = 20.0


@pytest.fixture(scope="module")
def ops_stack(start_stack: StartStack) -> LocalStack:
    return start_stack(
        "operations",
        compressed_time=True,
        DecisionPolicy=json.dumps(REVIEW_POLICY),
        ReviewTimeoutSeconds="1",
        ReconcileDelaySeconds="0",
        StreamMaximumRetryAttempts="1",
    )


def geft_ops(stack: LocalStack, *args: str, local: bool = True) -> subprocess.CompletedProcess[str]:
    """bin/geft-ops as README shows it (``bin/geft-ops --local COMMAND``), finding this running stack
    the way it finds any: under LOCAL_RUN_DIR, the variable make local uses too."""
    where = ["--local"] if local else []
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment["LOCAL_RUN_DIR"] = str(stack.config.run_dir)
    return subprocess.run(
        [str(REPO / "bin" / "geft-ops"), *where, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def _story(stack: LocalStack, session_id: str, *, until_change: str) -> dict[str, object]:
    """``show --json``, once the audit trail has caught up with ``until_change``."""

    def caught_up() -> dict[str, object] | None:
        shown = geft_ops(stack, "show", session_id, "--json")
        story = json.loads(shown.stdout) if shown.returncode == 0 else None
        changes = [e["change"] for g in (story or {}).get("guarantees", []) for e in g["history"]]
        return story if until_change in changes else None

    story = poll_until(caught_up, timeout=WAIT_S, interval=0.3)
    assert story is not None, console_dump(stack)
    return story


def _deliver(stack: LocalStack, session_id: str) -> None:
    assert stack.sandbox is not None
    assert stack.sandbox.emit_guarantee_webhook(stack.webhook_url, TEST_WEBHOOK_SECRET, session_id).delivered


def _wait_status(stack: LocalStack, session_id: str, status: str) -> dict[str, object]:
    item = stack.wait_for_guarantee(session_id, timeout=WAIT_S, statuses=frozenset({status}))
    assert item is not None, console_dump(stack)
    return item


def test_review_then_operator_decision_then_confirm(ops_stack: LocalStack) -> None:
    stack = ops_stack
    assert stack.sandbox is not None
    # GIVEN a guarantee the policy sends to a person
    session_id = stack.sandbox.add_session(scenario=Scenario(amount="2500.00"))
    _deliver(stack, session_id)
    held = _wait_status(stack, session_id, "REVIEW")
    assert held["decisionRule"] == "large-amount"
    listed = geft_ops(stack, "list", "--status", "REVIEW", "--json")  # options after the command, as shown
    assert session_id in [row["sessionId"] for row in json.loads(listed.stdout)]
    # and the review team was told at once, with the command to decide
    notice = stack.console.wait_for(f"bin/geft-ops --local decide {session_id} reject", timeout=WAIT_S)
    assert notice is not None, console_dump(stack)

    # WHEN an operator decides with the CLI
    decided = geft_ops(
        stack, "decide", session_id, "reject", "--reason", "income not verified", "--operator", "bob"
    )

    # THEN the stream path confirms that decision once, recorded with the verified identity and the note
    assert decided.returncode == 0, decided.stderr
    item = _wait_status(stack, session_id, "CONFIRMED")
    moto_identity = "operator:arn:aws:sts::123456789012:user/moto"
    assert (item["decision"], item["decisionRule"]) == ("reject", "manual-review")
    assert (item["reviewer"], item["reviewerNote"]) == (moto_identity, "bob")
    assert stack.sandbox.confirms_for(session_id) == [False]
    story = _story(stack, session_id, until_change="confirmed")
    [guarantee] = story["guarantees"]  # type: ignore[index]
    assert [entry["change"] for entry in guarantee["history"]] == [
        "received",
        "claimed",
        "review-requested",
        "reviewed",
        "claimed",
        "confirmed",
    ]
    reviewed = guarantee["history"][3]
    assert (reviewed["by"], reviewed["note"], reviewed["from"], reviewed["to"]) == (
        moto_identity,
        "bob",
        "REVIEW",
        "REVIEWED",
    )
    shown = geft_ops(stack, "show", session_id)
    assert f"reject by {moto_identity} (bob)" in shown.stdout
    assert "income not verified" in shown.stdout


def test_review_timeout_falls_back(ops_stack: LocalStack) -> None:
    stack = ops_stack
    assert stack.sandbox is not None
    assert stack.scheduler is not None
    # GIVEN a guarantee in review whose 1 s deadline has passed
    session_id = stack.sandbox.add_session(scenario=Scenario(amount="5000.00"))
    _deliver(stack, session_id)
    _wait_status(stack, session_id, "REVIEW")
    time.sleep(1.1)

    # WHEN the scheduled job runs (as EventBridge would fire it)
    result = stack.scheduler.fire_now("ReviewTimeoutFunction")

    # THEN the fallback decision (reject) is confirmed, recorded as the timeout's
    assert not result.function_error, result.error_message
    item = _wait_status(stack, session_id, "CONFIRMED")
    assert (item["decision"], item["decisionRule"]) == ("reject", "review-timeout")
    assert item["reviewer"] == f"function:{stack.config.stack_name}-ReviewTimeoutFunction"
    assert stack.sandbox.confirms_for(session_id) == [False]


def test_missed_status_webhook_is_reconciled(ops_stack: LocalStack) -> None:
    stack = ops_stack
    assert stack.sandbox is not None
    assert stack.scheduler is not None
    # GIVEN a confirmed session whose SessionSetupStatusChanged webhook never arrived
    session_id = stack.sandbox.add_session(scenario=Scenario.preset("accept"))
    _deliver(stack, session_id)
    _wait_status(stack, session_id, "CONFIRMED")

    # WHEN the reconciler runs
    result = stack.scheduler.fire_now("ReconcilerFunction")

    # THEN it read /status and recorded the final status on the session
    assert not result.function_error, result.error_message
    session = poll_until(
        lambda: next((i for i in stack.items(session_id) if i["sk"] == "SESSION"), None), timeout=WAIT_S
    )
    assert session is not None, console_dump(stack)
    assert (session["finalStatus"], session["finalStatusDetails"]) == ("Completed", "EFT0301")
    assert session["finalStatusSource"] == "reconciliation"
    assert "final status: Completed EFT0301 (reconciliation" in geft_ops(stack, "show", session_id).stdout


def test_dead_letters_are_redriven_and_confirmed_exactly_once(ops_stack: LocalStack) -> None:
    stack = ops_stack
    sandbox = stack.sandbox
    assert sandbox is not None
    queue_url = stack.on_failure_queue_url()
    assert queue_url is not None
    # GIVEN two sessions dead-lettered during a Flinks outage (every confirm answered 503)
    sessions = [
        sandbox.add_session(scenario=Scenario.preset("accept", faults={"confirm": ["503"] * 100}))
        for _ in range(2)
    ]
    for session_id in sessions:
        _deliver(stack, session_id)
    sqs = stack.aws.client("sqs")

    def dead_lettered() -> int | None:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        count = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        return count if count >= 1 and all(not sandbox.confirms_for(s) for s in sessions) else None

    assert poll_until(dead_lettered, timeout=60, interval=0.5), console_dump(stack)
    assert poll_until(
        lambda: all(g["leaseExpiresAtMs"] == 0 for s in sessions for g in stack.guarantees(s)) or None,
        timeout=WAIT_S,
    )

    # WHEN Flinks recovers and the operator redrives the DLQ
    for session_id in sessions:
        sandbox.clear_faults(session_id)
    dry_run = geft_ops(stack, "redrive", "--dry-run")
    redrive = geft_ops(stack, "redrive", "--operator", "carol")

    # THEN every session is confirmed exactly once and the queue is empty
    assert dry_run.returncode == 0, dry_run.stderr
    assert "would-redrive" in dry_run.stdout
    assert redrive.returncode == 0, redrive.stderr
    for session_id in sessions:
        _wait_status(stack, session_id, "CONFIRMED")
        assert sandbox.confirms_for(session_id) == [True]
    again = geft_ops(stack, "redrive")
    assert (again.returncode, again.stdout.strip()) == (1, "DLQ is empty: nothing to do")
    assert all(sandbox.confirms_for(session_id) == [True] for session_id in sessions)
    # and each guarantee's history tells the outage, the dead letter and the redrive, record by record
    story = _story(stack, sessions[0], until_change="confirmed")
    [guarantee] = story["guarantees"]  # type: ignore[index]
    history = guarantee["history"]
    assert [entry["change"] for entry in history] == [
        "received",
        "claimed",
        "released",
        "claimed",
        "released",
        "redriven",
        "claimed",
        "confirmed",
    ]
    assert all("503" in entry["reason"] for entry in history if entry["change"] == "released")
    [redriven] = [entry for entry in history if entry["change"] == "redriven"]
    assert redriven["by"] == "operator:arn:aws:sts::123456789012:user/moto"
    assert redriven["note"] == "carol"
    assert "dead-letter redrive" in redriven["reason"]
    assert "RetryAttemptsExhausted" in redriven["reason"]
    assert (history[-1]["from"], history[-1]["to"]) == ("DECIDING", "CONFIRMED")


@pytest.mark.parametrize(
    ("args", "local", "code", "message"),
    [
        pytest.param(["list"], False, 2, "--stack NAME", id="where-is-the-stack"),
        pytest.param(["show", "12345"], True, 2, "not a session id", id="bad-session-id"),
        pytest.param(["decide", str(uuid.uuid4()), "accept"], True, 2, "--reason", id="missing-reason"),
        pytest.param(
            ["decide", str(uuid.uuid4()), "accept", "--reason", "ok"],
            True,
            1,
            "no guarantee waiting",
            id="not-in-review",
        ),
        pytest.param(["replay", str(uuid.uuid4())], True, 1, "no stored webhook", id="nothing-to-replay"),
        pytest.param(["list", "--status", "DONE"], True, 2, "invalid choice", id="bad-status"),
        pytest.param(["--stack", "s", "--local", "list"], False, 2, "not both", id="two-places"),
        pytest.param(["quarantine", "show", "abc"], True, 1, "at least 8 characters", id="short-digest"),
    ],
)
def test_cli_bad_arguments(
    ops_stack: LocalStack, args: list[str], local: bool, code: int, message: str
) -> None:
    result = geft_ops(ops_stack, *args, local=local)

    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_cli_sign_matches_what_the_receiver_accepts(ops_stack: LocalStack, tmp_path: Path) -> None:
    import requests

    body = tmp_path / "guarantee.json"
    body.write_bytes(json.dumps({"sessionId": str(uuid.uuid4()), "amount": 12}).encode())
    signature = geft_ops(ops_stack, "sign", str(body))  # --local: the running stack's own secret

    response = requests.post(
        ops_stack.webhook_url,
        data=body.read_bytes(),
        headers={"x-webhook-signature": signature.stdout.strip(), "content-type": "application/json"},
        timeout=5,
    )

    assert signature.returncode == 0, signature.stderr
    assert response.status_code == 200, response.text


def test_an_unreachable_aws_is_one_line_and_exit_1(ops_stack: LocalStack, tmp_path: Path) -> None:
    # GIVEN a state file whose moto endpoint does not answer
    state = json.loads(ops_stack.state_path.read_text())
    state["endpointUrl"] = "http://127.0.0.1:9"
    broken = tmp_path / "stack.json"
    broken.write_text(json.dumps(state))

    # WHEN the operator lists
    result = geft_ops(ops_stack, "--local-state", str(broken), "list", local=False)

    # THEN one line says AWS is unreachable; no traceback
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr == "geft-ops: DynamoDB scan failed: EndpointConnectionError\n"
    assert "Traceback" not in result.stderr


def test_quarantine_is_listed_and_shown_with_account_numbers_masked(ops_stack: LocalStack) -> None:
    import requests
    from geft.signature import compute_signature

    # GIVEN a signed body that is not a guarantee (no session id), carrying an account number
    body = json.dumps({"payor": {"account": {"accountNumber": "1234567890"}}, "note": "\u001b[2Jhi"}).encode()
    response = requests.post(
        ops_stack.webhook_url,
        data=body,
        headers={"x-webhook-signature": compute_signature(body, TEST_WEBHOOK_SECRET)},
        timeout=5,
    )
    assert response.json() == {"outcome": "quarantined"}

    # WHEN the operator lists and shows the quarantine
    listed = geft_ops(ops_stack, "quarantine", "list", "--json")
    [entry] = [row for row in json.loads(listed.stdout) if row["reason"] == "no-uuid-session-id"]
    shown = geft_ops(ops_stack, "quarantine", "show", entry["digest"][:12])

    # THEN the body is shown masked, and its escape sequence cannot reach the terminal
    assert shown.returncode == 0, shown.stderr
    assert "******7890" in shown.stdout
    assert "1234567890" not in shown.stdout
    assert "\x1b" not in shown.stdout
