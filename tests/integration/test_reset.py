"""The tier deploys the template once and puts moto back before every test (``testkit.reset``): a test
must not see what an earlier one left, whatever it changed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from testkit.aws import aws_calls_recorded
from testkit.flinks import FlinksSandbox
from testkit.inprocess import InProcessStack
from testkit.reset import MotoSnapshot
from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.pipeline import Invoke, dead_letters

LEFT_BEHIND: dict[str, Any] = {}
SANDBOX_SESSION = str(uuid.UUID(int=1))


def _leave_everything(
    stack: InProcessStack, aws: Any, sandbox: FlinksSandbox, invoke_receiver: Invoke
) -> dict[str, Any]:
    """Change every kind of state a test can: items and stream records, messages, secrets (a new value,
    one deleted), a table dropped, resources of services the deployment does not use, another region,
    a planned AWS fault, sandbox sessions. Returns what to look for afterwards."""
    dynamodb, secrets = aws.client("dynamodb"), aws.client("secretsmanager")
    for _ in range(2):
        assert invoke_receiver(stack.webhook())["statusCode"] == 200
    audit = stack.ref("AuditTable")
    dynamodb.put_item(TableName=audit, Item={name: {"S": "left"} for name in _key_names(dynamodb, audit)})
    queue = stack.ref("DecisionDeadLetterQueue")
    aws.client("sqs").send_message(QueueUrl=queue, MessageBody="left")
    secrets.put_secret_value(SecretId=stack.ref("WebhookSecret"), SecretString=json.dumps({"current": "new"}))
    secrets.delete_secret(SecretId=stack.ref("FlinksApiSecret"), ForceDeleteWithoutRecovery=True)
    dynamodb.create_table(
        TableName="left-table",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    aws.client("s3").create_bucket(Bucket="left-bucket")
    aws.client("sqs", region_name="eu-west-1").create_queue(QueueName="left-elsewhere")
    aws.client("sns").create_topic(Name="left-topic")
    sandbox.add_session(SANDBOX_SESSION)
    with aws_calls_recorded() as calls:
        calls.fail("dynamodb", "Scan", times=5)  # planned, never spent
    return {"items": len(stack.items()), "bucket": "left-bucket"}


def _key_names(dynamodb: Any, table: str) -> list[str]:
    schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    return [key["AttributeName"] for key in schema]


def _assert_as_deployed(stack: InProcessStack, aws: Any, invoke_receiver: Invoke) -> None:
    dynamodb, secrets = aws.client("dynamodb"), aws.client("secretsmanager")
    assert stack.items() == []
    assert stack.items("AuditTable") == []
    assert stack.feed().next_event() == {"Records": []}  # the stream holds no earlier record
    assert dead_letters(stack) == 0
    webhook = secrets.get_secret_value(SecretId=stack.ref("WebhookSecret"))["SecretString"]
    assert json.loads(webhook) == {"current": TEST_WEBHOOK_SECRET}
    assert len(secrets.list_secret_version_ids(SecretId=stack.ref("WebhookSecret"))["Versions"]) == 1
    assert secrets.get_secret_value(SecretId=stack.ref("FlinksApiSecret"))["SecretString"]
    assert "left-table" not in dynamodb.list_tables()["TableNames"]
    assert aws.client("s3").list_buckets()["Buckets"] == []
    assert aws.client("sqs", region_name="eu-west-1").list_queues().get("QueueUrls", []) == []
    topics = [topic["TopicArn"] for topic in aws.client("sns").list_topics()["Topics"]]
    assert not any(arn.endswith(":left-topic") for arn in topics)
    assert sorted(topics) == sorted(stack.deployment.created.topics.values())
    dynamodb.scan(TableName=stack.ref("GuaranteesTable"))  # no planned fault left to raise
    # and the receiver still stores a delivery, in the moto_deployment table
    session_id = str(uuid.uuid4())
    stack.cold_containers()  # the secret is read again
    assert invoke_receiver(stack.webhook(session_id))["statusCode"] == 200
    assert [item["pk"] for item in stack.items()] == [session_id]


def test_a_restore_puts_back_the_deployment_whatever_was_changed(
    stack: InProcessStack,
    aws: Any,
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    moto_deployment: tuple[InProcessStack, MotoSnapshot],
) -> None:
    # GIVEN a test that changed everything it could
    _leave_everything(stack, aws, sandbox, invoke_receiver)

    # WHEN moto is put back
    moto_deployment[1].restore()

    # THEN it is the deployment again
    _assert_as_deployed(stack, aws, invoke_receiver)


@pytest.mark.parametrize("turn", ["leave", "look"])
def test_a_test_cannot_see_what_the_previous_test_left(
    turn: str, stack: InProcessStack, aws: Any, sandbox: FlinksSandbox, invoke_receiver: Invoke
) -> None:
    if turn == "leave":
        # GIVEN a test that leaves everything changed behind (the fixtures' own teardown aside)
        LEFT_BEHIND.update(_leave_everything(stack, aws, sandbox, invoke_receiver))
        return
    # THEN the next test, through the same fixtures, sees the deployment and nothing else
    assert LEFT_BEHIND, "runs after its 'leave' turn"
    _assert_as_deployed(stack, aws, invoke_receiver)
    assert sandbox.calls() == []
    assert sandbox.session_state(SANDBOX_SESSION)["registered"] is False
