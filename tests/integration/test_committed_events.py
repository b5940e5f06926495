"""events/*.json are what `sam local invoke <Function> -e` feeds each function: each one drives its
function here, unchanged, under moto with the template's table and environment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent
from decision_processor.handler import to_stream_record
from decision_processor.processor import StreamRecord
from geft.models import GuaranteeRef

from testkit.flinks import FlinksSandbox
from testkit.lambda_context import LambdaContext
from testkit.streams import filter_patterns, matches_any
from testkit.webhooks import load_event

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_every_function_has_a_committed_event(template: dict[str, Any]) -> None:
    functions = {
        name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    by_function = {
        "WebhookReceiverFunction": "webhook-guarantee.json",
        "DecisionProcessorFunction": "dynamodb-stream-guarantee.json",
        "ReviewTimeoutFunction": "schedule-review-timeout.json",
        "ReconcilerFunction": "schedule-reconciler.json",
        "ReceiverPreTrafficHookFunction": "codedeploy-pre-traffic.json",
        "SweeperFunction": "schedule-sweeper.json",
        "AuditTrailFunction": "dynamodb-stream-guarantee.json",  # the same stream, every record
    }

    assert set(by_function) == functions
    for event in by_function.values():
        assert json.loads((EVENTS / event).read_text())


def test_the_stream_event_is_a_new_guarantee_the_mapping_admits(template: dict[str, Any]) -> None:
    # GIVEN events/dynamodb-stream-guarantee.json (a receiver's INSERT, as Lambda delivers it)
    event = load_event("dynamodb-stream-guarantee.json")
    properties = template["Resources"]["DecisionProcessorFunction"]["Properties"]["Events"]["GuaranteeStream"]

    # WHEN the processor reads it and the mapping filters it
    (record,) = [to_stream_record(r) for r in DynamoDBStreamEvent(event).records]

    # THEN it is the stored guarantee, and the template's FilterCriteria let it through
    assert record == StreamRecord(
        "4421584500000000017450439091",
        GuaranteeRef("aadd08f2-83ce-456d-84ed-c68cfed4ee7b", "amount:500.00"),
    )
    assert matches_any(filter_patterns(properties["Properties"]), event["Records"][0])


def test_the_review_timeout_schedule_event_runs_the_job(
    function_env: Callable[..., dict[str, str]],
) -> None:
    from scheduled_jobs import review_timeout

    function_env("ReviewTimeoutFunction")
    review_timeout._dependencies.cache_clear()

    result = review_timeout.lambda_handler(load_event("schedule-review-timeout.json"), LambdaContext())

    # it queried the template's OpsQueueIndex: nothing due, nobody waiting
    assert result == {"fallbackDecisions": 0, "waitingForAPerson": 0, "oldestReviewAgeSeconds": 0}
    review_timeout._dependencies.cache_clear()


@pytest.fixture
def flinks() -> Any:
    with FlinksSandbox() as running:
        yield running


def test_the_reconciler_schedule_event_runs_the_job(
    function_env: Callable[..., dict[str, str]], flinks: FlinksSandbox
) -> None:
    from scheduled_jobs import reconciler

    function_env("ReconcilerFunction", FLINKS_BASE_URL=flinks.base_url)
    reconciler._dependencies.cache_clear()

    result = reconciler.lambda_handler(
        load_event("schedule-reconciler.json"), LambdaContext(timeout_seconds=30)
    )

    # it queried the template's OpsQueueIndex: nothing due, no call to Flinks
    assert result == {
        "reconciled": 0,
        "alreadyKnown": 0,
        "pending": 0,
        "gaveUp": 0,
        "notFound": 0,
        "errors": 0,
    }
    reconciler._dependencies.cache_clear()


def test_the_sweeper_schedule_event_runs_the_job(function_env: Callable[..., dict[str, str]]) -> None:
    from scheduled_jobs import sweeper

    function_env("SweeperFunction")
    sweeper._dependencies.cache_clear()

    result = sweeper.lambda_handler(load_event("schedule-sweeper.json"), LambdaContext())

    assert result == {"stuck": 0, "inProgress": 0, "cleared": 0}
    sweeper._dependencies.cache_clear()


def test_the_stream_event_runs_the_audit_trail(
    aws: Any, stack: Any, function_env: Callable[..., dict[str, str]]
) -> None:
    from audit_trail import handler

    function_env("AuditTrailFunction")
    handler._dependencies.cache_clear()

    answer = handler.lambda_handler(load_event("dynamodb-stream-guarantee.json"), LambdaContext())

    # the receiver's INSERT became one history record in the template's audit table
    assert answer == {"batchItemFailures": []}
    [item] = aws.client("dynamodb").scan(TableName=stack.ref("AuditTable"))["Items"]
    assert (item["changeKind"], item["status"]) == ({"S": "received"}, {"S": "RECEIVED"})
    handler._dependencies.cache_clear()
