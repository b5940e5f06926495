"""The audit trail function under moto: one immutable history record per write, none twice when Lambda
retries a batch, and a review notice for every guarantee that starts waiting for a person."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from geft.audit import history_record

from testkit.flinks import Scenario
from testkit.inprocess import InProcessStack
from testkit.lambda_context import LambdaContext
from testkit.streams import StreamFeed
from tests.support.pipeline import Invoke, Pipeline

REVIEW_POLICY = {
    "default": "accept",
    "rules": [
        {"name": "large-amount", "when": {"amount": {"gt": 1000}}, "decision": "review", "reason": "LARGE"}
    ],
}
PROCESSOR_ENV = {"DECISION_POLICY": json.dumps(REVIEW_POLICY)}


@pytest.fixture
def audit_trail(
    aws: Any, stack: InProcessStack, function_env: Callable[..., dict[str, str]]
) -> Iterator[tuple[Invoke, str]]:
    """The audit handler, its review topic subscribed by a queue the test reads."""
    from audit_trail import handler

    sqs, sns = aws.client("sqs"), aws.client("sns")
    queue_url = sqs.create_queue(QueueName="review-team")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=stack.ref("ReviewTopic"),
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    function_env("AuditTrailFunction")
    handler._dependencies.cache_clear()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = handler.lambda_handler(event, LambdaContext())
        return answer

    yield invoke, queue_url
    handler._dependencies.cache_clear()


def _every_write(stack: InProcessStack) -> StreamFeed:
    """The audit trail's own stream mapping (no filter: every write)."""
    return StreamFeed.of(stack.session, stack.deployment, "AuditTrailFunction", "TableStream")


def _history(stack: InProcessStack, session_id: str) -> list[Any]:
    items = stack.session.client("dynamodb").query(
        TableName=stack.ref("AuditTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": session_id}},
    )["Items"]
    return sorted((history_record(item) for item in items), key=lambda record: record.at_ms)


def test_every_write_is_one_history_record_and_a_retried_batch_writes_none_twice(
    pipeline: Pipeline, audit_trail: tuple[Invoke, str]
) -> None:
    invoke_audit, queue_url = audit_trail
    # GIVEN a guarantee the policy sends to review: received, claimed, review requested
    session_id = pipeline.sandbox.add_session(scenario=Scenario(amount="2500.00"))
    pipeline.receive(session_id, amount=2500)
    pipeline.process()
    batch = _every_write(pipeline.stack).next_event()

    # WHEN the audit trail gets the batch, and then the same batch again (a Lambda retry)
    assert invoke_audit(batch) == {"batchItemFailures": []}
    assert invoke_audit(batch) == {"batchItemFailures": []}

    # THEN one history record per write, in order, each saying what, who and from which status
    history = _history(pipeline.stack, session_id)
    assert [(r.change, r.previous_status, r.status) for r in history] == [
        ("received", None, "RECEIVED"),
        ("claimed", "RECEIVED", "DECIDING"),
        ("review-requested", "DECIDING", "REVIEW"),
    ]
    assert history[0].image["rawBody"].startswith("{")  # the webhook as it arrived
    assert "rawBody" not in history[1].image
    assert history[2].by == "function:decision-processor"
    assert history[2].image["decisionRule"] == "large-amount"
    # and the review team was told once, with what it needs to decide
    messages = pipeline.stack.session.client("sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10
    )["Messages"]
    [notice] = [message["Body"] for message in messages]
    assert f"session {session_id}" in notice
    assert "rule large-amount (LARGE) asked for a review" in notice
    assert "after it the fallback decision (reject) applies" in notice
    assert f"bin/geft-ops --stack geft-local decide {session_id} accept --guarantee amount:2500.00" in notice


def test_history_records_cannot_be_overwritten_by_a_replayed_stream_record(
    stack: InProcessStack, invoke_receiver: Invoke, audit_trail: tuple[Invoke, str]
) -> None:
    import uuid

    invoke_audit, _ = audit_trail
    session_id = str(uuid.uuid4())
    assert invoke_receiver(stack.webhook(session_id))["statusCode"] == 200
    batch = _every_write(stack).next_event()
    invoke_audit(batch)
    [first] = _history(stack, session_id)

    # WHEN the same stream record comes back with a different image (a forged or corrupted replay)
    forged = json.loads(json.dumps(batch))
    forged["Records"][0]["dynamodb"]["NewImage"]["changedBy"] = {"S": "someone-else"}
    invoke_audit(forged)

    # THEN the history record written first stands
    [kept] = _history(stack, session_id)
    assert kept == first
    assert kept.by == "function:webhook-receiver"
