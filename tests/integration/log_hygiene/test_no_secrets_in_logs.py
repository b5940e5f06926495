"""No secret, token, signature, raw body or account number in any log line.

A representative mix of flows runs with every log line captured at DEBUG (see conftest.py: the
functions' POWERTOOLS_LOG_LEVEL and the root logger both at DEBUG, as Lambda's ApplicationLogLevel
would set them): the receiver's accept, duplicate, 401, quarantine and 503; the processor's accept,
reject, Flinks fault with a retry, a lost confirm answer recovered on the stream's retry, an expired
token, and an unknown session. Each flow registers the values it put in play; the last test scans
everything that was printed or logged for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from geft.flinks_client import FlinksClient, FlinksCredentials

from testkit.aws import AwsCalls, aws_calls_recorded
from testkit.flinks import FlinksSandbox
from testkit.webhooks import guarantee_body, webhook_event
from tests.integration.log_hygiene.conftest import CapturedLogs
from tests.support import reliability_report
from tests.support.constants import (
    TEST_FLINKS_CREDENTIALS,
    TEST_PREVIOUS_WEBHOOK_SECRET,
    TEST_WEBHOOK_SECRET,
)
from tests.support.ledger import only_failed, retried_sessions
from tests.support.pipeline import Pipeline

Invoke = Callable[..., dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
FLOWS = {"receiver", "processor", "secrets"}
# The lost confirm's retry waits out the settle delay; its length is no part of what the logs may hold,
# so the shortest the processor accepts (the read timeout).
PROCESSOR_ENV = {"CONFIRM_SETTLE_SECONDS": "1"}

pytestmark = pytest.mark.usefixtures("captured_logs")


def _canary() -> str:
    return "body-canary-" + uuid.uuid4().hex


def _deliver(invoke_receiver: Invoke, logs: CapturedLogs, body: bytes, **options: Any) -> dict[str, Any]:
    event = webhook_event(body, **options)
    signature = event["headers"].get("x-webhook-signature", "")
    hex_part = signature.partition("=")[2]
    logs.register("signature header", signature, hex_part, hex_part.lower())
    logs.register("raw body", body.decode("utf-8", errors="replace"))
    response: dict[str, Any] = invoke_receiver(event)
    return response


def _register_tokens(logs: CapturedLogs, sandbox: FlinksSandbox) -> None:
    tokens = sandbox.issued_tokens()
    assert tokens
    logs.register("bearer token", *tokens)


def test_secrets_in_play(captured_logs: CapturedLogs) -> None:
    password = TEST_FLINKS_CREDENTIALS["password"]
    basic = base64.b64encode(f"{TEST_FLINKS_CREDENTIALS['username']}:{password}".encode()).decode()
    captured_logs.register("webhook secret", TEST_WEBHOOK_SECRET, TEST_PREVIOUS_WEBHOOK_SECRET)
    captured_logs.register("Flinks credentials", password, basic)
    captured_logs.flows.add("secrets")


def test_receiver_flows(
    captured_logs: CapturedLogs,
    aws: Any,
    stack: Any,
    invoke_receiver: Invoke,
    table_items: Items,
) -> None:
    logs = captured_logs
    with aws_calls_recorded() as faults:  # before the receiver's first call creates its clients
        _receiver_flows(logs, invoke_receiver, faults)
    assert len(table_items()) == 3
    logs.flows.add("receiver")


def _receiver_flows(logs: CapturedLogs, invoke_receiver: Invoke, faults: AwsCalls) -> None:
    session_id = str(uuid.uuid4())
    body = guarantee_body(session_id, note=_canary())
    # accepted, then a duplicate
    assert _deliver(invoke_receiver, logs, body, secret=TEST_WEBHOOK_SECRET)["statusCode"] == 200
    assert _deliver(invoke_receiver, logs, body, secret=TEST_WEBHOOK_SECRET)["statusCode"] == 200
    # 401: wrong secret, and the right hex of another body
    other = guarantee_body(note=_canary())
    assert _deliver(invoke_receiver, logs, other, secret="attacker-guess")["statusCode"] == 401
    forged = "sha256=" + hmac.new(TEST_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert _deliver(invoke_receiver, logs, other, secret=None, signature=forged)["statusCode"] == 401
    # quarantined: signed but not JSON, and signed but stale
    garbage = ("not json " + _canary()).encode()
    response = _deliver(invoke_receiver, logs, garbage, secret=TEST_WEBHOOK_SECRET, base64_encoded=True)
    assert json.loads(response["body"]) == {"outcome": "quarantined"}
    stale = guarantee_body(when="2000-01-01T00:00:00Z", note=_canary())
    assert _deliver(invoke_receiver, logs, stale, secret=TEST_WEBHOOK_SECRET)["statusCode"] == 200
    # 503: the table throttles
    faults.fail("dynamodb", "PutItem", times=1)
    retried = guarantee_body(note=_canary())
    assert _deliver(invoke_receiver, logs, retried, secret=TEST_WEBHOOK_SECRET)["statusCode"] == 503


def _receive(invoke_receiver: Invoke, logs: CapturedLogs, session_id: str) -> None:
    body = guarantee_body(session_id, note=_canary())
    assert _deliver(invoke_receiver, logs, body, secret=TEST_WEBHOOK_SECRET)["statusCode"] == 200


def test_processor_flows(captured_logs: CapturedLogs, pipeline: Pipeline) -> None:
    logs, sandbox = captured_logs, pipeline.sandbox
    accepted, rejected = pipeline.session(), pipeline.session("high-risk")
    lost = pipeline.session(faults={"confirm": ["lost"]})
    outage = pipeline.session(faults={"details": ["503"] * 30})
    stale_token = pipeline.session(faults={"confirm": ["401"]})
    unknown = str(uuid.uuid4())
    for session_id in (accepted, rejected, lost, outage, stale_token, unknown):
        _receive(pipeline.invoke_receiver, logs, session_id)
    event = pipeline.feed.next_event()

    # accept, reject, 401 re-authorized, 404 failed; the outage (a short invocation gives up on it) and
    # the lost answer are retried, and the retry recovers the lost confirm from /details
    answer = pipeline.process(event, timeout_seconds=2.5)
    assert retried_sessions(event, answer) >= {lost, outage}  # (a loaded machine may add others)
    sandbox.clear_faults(outage)
    for _ in range(3):
        if not answer["batchItemFailures"]:
            break
        answer = pipeline.process(only_failed(event, answer))
    assert answer == {"batchItemFailures": []}

    statuses = {item["pk"]: item["status"] for item in pipeline.items()}
    assert statuses[unknown] == "FAILED"
    assert {statuses[s] for s in (accepted, rejected, lost, outage, stale_token)} == {"CONFIRMED"}
    _register_tokens(logs, sandbox)
    logs.register("payor account", *_payor_account_numbers(sandbox, accepted))
    logs.flows.add("processor")


def _payor_account_numbers(sandbox: FlinksSandbox, session_id: str) -> list[str]:
    """What the sandbox's /details says about the payor's account, read as the processor reads it."""
    client = FlinksClient(sandbox.base_url, lambda: FlinksCredentials(**TEST_FLINKS_CREDENTIALS))
    details = client.for_session(session_id, deadline=time.monotonic() + 5).details()
    account = details["payor"]["account"]
    return [str(account["accountNumber"]), f"{account['transitNumber']}-{account['accountNumber']}"]


def test_no_secret_token_signature_body_or_account_in_any_log_line(captured_logs: CapturedLogs) -> None:
    if captured_logs.flows != FLOWS:
        pytest.skip("scans what the flows above logged: run the whole module")
    text = captured_logs.text()
    lines = text.count("\n")
    assert lines > 50, "the capture saw too little to be a real check"
    assert "guarantee finished" in text  # the processor's own log lines were captured
    assert "webhook signature rejected" in text  # and the receiver's

    leaks = {
        category: sorted(value for value in values if value in text)
        for category, values in captured_logs.sensitive.items()
    }
    assert {category: found for category, found in leaks.items() if found} == {}
    reliability_report.record(
        "secrets",
        "log scan: secrets, tokens, signatures, raw bodies, account numbers",
        tried=sum(len(values) for values in captured_logs.sensitive.values()),
        outcome=f"0 found in {lines:,} captured log lines",
    )
