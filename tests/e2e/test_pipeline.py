"""The whole path over real HTTP on 127.0.0.1: gateway -> receiver container -> moto table -> stream
pump -> processor container -> Flinks sandbox, as ``make local`` runs it."""

from __future__ import annotations

import json
import os
import signal
import uuid

import pytest
import requests
from geft_local.stack import LocalStack

from testkit.flinks import Scenario
from testkit.webhooks import guarantee_body
from tests.e2e.helpers import TIMEOUT_S, console_dump, post_webhook, stream_images
from tests.support.constants import TEST_WEBHOOK_SECRET

pytestmark = pytest.mark.e2e

END_STATE_WAIT_S = 15.0


def test_webhook_in_confirm_out(stack: LocalStack) -> None:
    # GIVEN a Flinks session that the default policy accepts
    assert stack.sandbox is not None
    session_id = stack.sandbox.add_session(scenario=Scenario.preset("accept"))

    # WHEN Flinks delivers its signed guarantee webhook
    delivery = stack.sandbox.emit_guarantee_webhook(stack.webhook_url, TEST_WEBHOOK_SECRET, session_id)

    # THEN it is acknowledged at once, decided and confirmed exactly once with guaranteeAccepted=true
    assert delivery.delivered
    assert [status for status, _ in delivery.attempts] == [200]
    item = stack.wait_for_guarantee(session_id, timeout=END_STATE_WAIT_S)
    assert item is not None, console_dump(stack)
    assert stack.sandbox.confirms_for(session_id) == [True]
    assert item["status"] == "CONFIRMED"
    assert (item["decision"], item["decisionRule"]) == ("accept", "default")
    assert item["webhookToConfirmMs"] == item["confirmedAtMs"] - item["receivedAtMs"]
    assert "claimId" not in item
    # and the item went RECEIVED -> DECIDING -> CONFIRMED, each a stream record
    statuses = [image["status"]["S"] for _, image in stream_images(stack, session_id)]
    assert statuses == ["RECEIVED", "DECIDING", "CONFIRMED"]
    # and the console told the story
    assert stack.console.wait_for(f"{session_id} guarantee received", timeout=2.0)
    line = stack.console.wait_for(f"{session_id} decided accept (rule default)", timeout=2.0)
    assert line is not None
    assert "CONFIRMED, webhook-to-confirm" in line


def test_policy_rejection_is_confirmed_as_false(stack: LocalStack) -> None:
    assert stack.sandbox is not None
    session_id = stack.sandbox.add_session(scenario=Scenario.preset("high-risk"))

    stack.sandbox.emit_guarantee_webhook(stack.webhook_url, TEST_WEBHOOK_SECRET, session_id)

    item = stack.wait_for_guarantee(session_id, timeout=END_STATE_WAIT_S)
    assert item is not None, console_dump(stack)
    assert (item["status"], item["decision"], item["decisionRule"]) == ("CONFIRMED", "reject", "high-risk")
    assert stack.sandbox.confirms_for(session_id) == [False]


def test_duplicate_delivery_stores_nothing_new(stack: LocalStack) -> None:
    # GIVEN a guarantee that was delivered, stored and confirmed
    assert stack.sandbox is not None
    session_id = stack.sandbox.add_session(scenario=Scenario.preset("accept"))
    body = guarantee_body(session_id)
    first = post_webhook(stack, body)
    assert first.json() == {"outcome": "stored"}
    assert stack.wait_for_guarantee(session_id, timeout=END_STATE_WAIT_S) is not None, console_dump(stack)
    records_before = stream_images(stack, session_id)

    # WHEN Flinks delivers the same bytes again
    again = post_webhook(stack, body)

    # THEN it is acknowledged as a duplicate and nothing is written or confirmed again
    assert again.status_code == 200
    assert again.json() == {"outcome": "duplicate"}
    assert len(stack.guarantees(session_id)) == 1
    assert stream_images(stack, session_id) == records_before
    assert [name for name, _ in records_before].count("INSERT") == 1
    assert stack.sandbox.confirms_for(session_id) == [True]


def test_bad_signature_is_401_and_stores_nothing(stack: LocalStack) -> None:
    # GIVEN a body signed with the wrong secret
    session_id = str(uuid.uuid4())
    body = guarantee_body(session_id)

    # WHEN it is delivered
    response = post_webhook(stack, body, secret="not-the-secret")

    # THEN the gateway answers 401 from the function, and nothing reached the table or Flinks
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert stack.items(session_id) == []
    assert stream_images(stack, session_id) == []
    assert stack.sandbox is not None
    assert stack.sandbox.calls(session_id=session_id) == []
    assert stack.console.wait_for("POST /webhooks/flinks -> 401", timeout=2.0)


def test_gateway_answers_like_api_gateway(stack: LocalStack) -> None:
    # an unknown route: API Gateway's own 404
    missing = requests.post(stack.gateway_url + "/webhooks/other", data=b"{}", timeout=TIMEOUT_S)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    # the route is POST only: another method is API Gateway's own 404, the function never runs
    get = requests.get(stack.webhook_url, timeout=TIMEOUT_S)
    assert (get.status_code, get.json()) == (404, {"message": "Not Found"})
    assert get.headers["apigw-requestid"]
    # a body over API Gateway's 10 MB limit is refused before the function runs
    too_large = requests.post(stack.webhook_url, data=b"x" * (10 * 1024 * 1024 + 1), timeout=TIMEOUT_S)
    assert (too_large.status_code, too_large.json()) == (413, {"message": "Request Entity Too Large"})


def test_signed_body_that_is_not_a_guarantee_is_quarantined(stack: LocalStack) -> None:
    response = post_webhook(stack, json.dumps({"hello": "flinks"}).encode())

    assert response.json() == {"outcome": "quarantined"}
    assert stack.console.wait_for("quarantined a signed body", timeout=2.0)


def test_killed_worker_is_restarted_and_the_next_webhook_still_works(stack: LocalStack) -> None:
    # GIVEN the receiver's warm container
    worker = stack.workers["WebhookReceiverFunction"]
    old_pid = worker.pid
    assert old_pid is not None
    mark = len(stack.console.lines())

    # WHEN its process dies
    os.kill(old_pid, signal.SIGKILL)

    # THEN the death is reported and a new container replaces it
    assert stack.console.wait_for(
        f"container pid {old_pid} exited with signal SIGKILL", timeout=5.0, start=mark
    )
    assert stack.console.wait_for("new container pid", timeout=10.0, start=mark), console_dump(stack)
    assert worker.pid not in (None, old_pid)

    # AND the next webhook goes all the way through
    assert stack.sandbox is not None
    session_id = stack.sandbox.add_session(scenario=Scenario.preset("accept"))
    delivery = stack.sandbox.emit_guarantee_webhook(stack.webhook_url, TEST_WEBHOOK_SECRET, session_id)
    assert delivery.delivered
    item = stack.wait_for_guarantee(session_id, timeout=END_STATE_WAIT_S)
    assert item is not None, console_dump(stack)
    assert item["status"] == "CONFIRMED"
    assert stack.sandbox.confirms_for(session_id) == [True]


def test_scheduled_functions_run_in_their_containers(stack: LocalStack) -> None:
    # GIVEN the template's Schedule events
    assert stack.scheduler is not None
    rules = [rule for rule in stack.scheduler.rules if rule.interval_s is not None]
    assert rules

    # WHEN each fires now, as EventBridge would
    results = {rule.function_logical_id: stack.scheduler.fire_now(rule.function_logical_id) for rule in rules}

    # THEN each function ran with the environment SAM gives it (no work is due)
    assert {name: result.error_type for name, result in results.items()} == dict.fromkeys(results)
