"""The pre-traffic probe, pure: the event it sends and how it judges every answer a version could give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from deploy_hooks.probe import PROBE_BODY, InvocationOutcome, judge, probe_event
from geft.signature import verify_signature
from webhook_receiver.edge import BodyShape, rejected_body_shape

REQUEST_ID = "pre-traffic-0000"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def answer(status: int, body: dict[str, Any] | str) -> InvocationOutcome:
    text = body if isinstance(body, str) else json.dumps(body)
    return InvocationOutcome(payload={"statusCode": status, "headers": {}, "body": text})


REFUSAL = {"error": {"code": "invalid_signature", "requestId": REQUEST_ID}}


def test_the_probe_is_a_wrongly_signed_post_that_pages_nobody() -> None:
    event = probe_event(path="/webhooks/flinks", source_ip="203.0.113.0", request_id=REQUEST_ID, now=NOW)

    assert event["requestContext"]["http"] | {"protocol": "HTTP/1.1"} == {
        "method": "POST",
        "path": "/webhooks/flinks",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.0",
        "userAgent": "geft-pre-traffic-hook",
    }
    assert event["requestContext"]["requestId"] == REQUEST_ID
    assert event["routeKey"] == "POST /webhooks/flinks"
    body = event["body"].encode()
    signature = event["headers"]["x-webhook-signature"]
    # no secret signs it this way (an empty one and a plausible one checked), and it is not G-EFT-shaped,
    # so the SignatureRejected alarm (G-EFT-shaped rejections) never pages on a deploy
    assert not verify_signature(body, signature, ("", "a" * 64))
    assert rejected_body_shape(body) is BodyShape.OTHER
    assert json.loads(PROBE_BODY)["type"] == "DeploymentProbe"


def test_only_the_receivers_own_401_passes() -> None:
    verdict = judge(answer(401, REFUSAL), request_id=REQUEST_ID)

    assert verdict.succeeded is True


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        pytest.param(answer(200, {"outcome": "stored"}), "accepted", id="accepted-a-bad-signature"),
        pytest.param(answer(202, {}), "accepted", id="any-2xx"),
        pytest.param(answer(503, {"error": {"code": "unavailable"}}), "cannot read its secret", id="503"),
        pytest.param(answer(500, "Internal"), "cannot read its secret", id="500"),
        pytest.param(answer(403, {"error": {"code": "forbidden"}}), "allow-list", id="allow-list"),
        pytest.param(answer(404, {"error": {"code": "not_found"}}), "404 instead of 401", id="wrong-path"),
        pytest.param(answer(401, "not json"), "without the receiver's refusal body", id="401-not-json"),
        pytest.param(
            answer(401, {"error": {"code": "invalid_signature", "requestId": "other"}}),
            "unexpected body",
            id="401-someone-elses",
        ),
        pytest.param(
            answer(
                401, {"error": {"code": "invalid_signature", "requestId": REQUEST_ID, "message": "arn:..."}}
            ),
            "unexpected body",
            id="401-saying-too-much",
        ),
        pytest.param(
            InvocationOutcome(
                payload={"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named x"},
                function_error="Unhandled",
            ),
            "failed the invocation (Unhandled)",
            id="import-error",
        ),
        pytest.param(InvocationOutcome(payload="null"), "not an HTTP response", id="not-a-response"),
        pytest.param(
            InvocationOutcome(payload={"statusCode": "401"}), "not an HTTP response", id="status-text"
        ),
    ],
)
def test_every_other_answer_fails_the_deployment(outcome: InvocationOutcome, reason: str) -> None:
    verdict = judge(outcome, request_id=REQUEST_ID)

    assert verdict.succeeded is False
    assert reason in verdict.reason
