"""The local event source mapping's decisions, without AWS: batching, filtering, checkpoints after
partial failures, bisection, retry and age exhaustion, and the OnFailure record Lambda would send."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from geft_local.stream_pump import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    Batch,
    MappingSettings,
    ShardBatcher,
    dynamodb_event_sources,
    failed_item_sequences,
    on_failure_message,
)
from geft_local.workers import InvokeResult

from testkit.template import CreatedResources, Deployment, parameter_values

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-23T00:00:00.000"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:dlq"
FIRST_SEQUENCE = 1100000000017454423009
NOW = 1_800_000_000.0
ONLY_NEW_GUARANTEES = {
    "eventName": ["INSERT"],
    "dynamodb": {"NewImage": {"recordType": {"S": ["GUARANTEE"]}, "status": {"S": ["RECEIVED"]}}},
}


def settings(**changes: Any) -> MappingSettings:
    base = MappingSettings(
        function_logical_id="Processor",
        event_name="Stream",
        stream_arn=STREAM_ARN,
        starting_position="TRIM_HORIZON",
        batch_size=10,
        bisect_on_function_error=False,
        maximum_retry_attempts=2,
        maximum_record_age_s=-1,
        report_batch_item_failures=True,
        on_failure_destination=DLQ_ARN,
        filters=(ONLY_NEW_GUARANTEES,),
    )
    return replace(base, **changes)


def record(
    index: int, *, event_name: str = "INSERT", status: str = "RECEIVED", created: float = NOW
) -> dict[str, Any]:
    """A stream record as ``to_lambda_record`` delivers it; ``index`` orders it in the shard."""
    sequence = str(FIRST_SEQUENCE + index)
    return {
        "eventID": f"event-{index}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
        "dynamodb": {
            "ApproximateCreationDateTime": int(created),
            "Keys": {"pk": {"S": f"session-{index}"}, "sk": {"S": "GUARANTEE#single"}},
            "NewImage": {
                "pk": {"S": f"session-{index}"},
                "sk": {"S": "GUARANTEE#single"},
                "recordType": {"S": "GUARANTEE"},
                "status": {"S": status},
            },
            "SequenceNumber": sequence,
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE",
        },
    }


def seq(index: int) -> str:
    return str(FIRST_SEQUENCE + index)


def ok(payload: Any = None) -> InvokeResult:
    return InvokeResult("request-1", payload=payload if payload is not None else {"batchItemFailures": []})


def failed_items(*indexes: int) -> InvokeResult:
    return ok({"batchItemFailures": [{"itemIdentifier": seq(index)} for index in indexes]})


def function_error(error_type: str = "Sandbox.Timedout") -> InvokeResult:
    return InvokeResult("request-2", payload={"errorType": error_type}, error_type=error_type)


def indexes(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [int(sequence) - FIRST_SEQUENCE for sequence in batch.sequence_numbers]


def batcher_with(count: int, **changes: Any) -> ShardBatcher:
    batcher = ShardBatcher(settings(**changes))
    batcher.add([record(index) for index in range(1, count + 1)], NOW)
    return batcher


# -- settings ------------------------------------------------------------------------------------------


def test_settings_are_read_from_the_templates_event_not_hard_coded(template: dict[str, Any]) -> None:
    # GIVEN the template, its created resources and a parameter override, as the local stack has them
    created = CreatedResources()
    created.attributes[("GuaranteesTable", "StreamArn")] = STREAM_ARN
    created.attributes[("DecisionDeadLetterQueue", "Arn")] = DLQ_ARN
    created.attributes[("AuditDeadLetterQueue", "Arn")] = DLQ_ARN + "-audit"
    parameters = parameter_values(
        template,
        {"StreamMaximumRetryAttempts": "1", "StreamBatchSize": "7", "StreamBatchingWindowSeconds": "2"},
    )

    # WHEN the DynamoDB event sources are read (the processor's, and the audit trail's on the same stream)
    deployed = Deployment.of(template, parameters, stack_name="geft-test").template
    mappings = dynamodb_event_sources(deployed, created, parameters)
    assert sorted(m.function_logical_id for m in mappings) == [
        "AuditTrailFunction",
        "DecisionProcessorFunction",
    ]
    [mapping] = [m for m in mappings if m.function_logical_id == "DecisionProcessorFunction"]

    # THEN every behaviour comes from the event's properties
    event = template["Resources"]["DecisionProcessorFunction"]["Properties"]["Events"]["GuaranteeStream"]
    properties = event["Properties"]
    assert mapping.function_logical_id == "DecisionProcessorFunction"
    assert mapping.stream_arn == STREAM_ARN
    assert mapping.starting_position == properties["StartingPosition"]
    assert mapping.batch_size == 7
    assert mapping.batching_window_s == 2.0
    assert mapping.maximum_retry_attempts == 1
    assert mapping.maximum_record_age_s == int(parameters["StreamMaximumRecordAgeSeconds"])
    assert mapping.bisect_on_function_error is properties["BisectBatchOnFunctionError"]
    assert mapping.report_batch_item_failures is True
    assert mapping.on_failure_destination == DLQ_ARN
    assert list(mapping.filters) == [
        json.loads(f["Pattern"]) for f in properties["FilterCriteria"]["Filters"]
    ]


# -- batching and filtering ----------------------------------------------------------------------------


def test_batches_follow_stream_order_and_batch_size() -> None:
    # GIVEN 25 matching records
    batcher = batcher_with(25)

    # WHEN every batch succeeds
    seen = []
    while (batch := batcher.next_batch(NOW)) is not None:
        seen.append(indexes(batch))
        assert batcher.record_outcome(batch, ok()).action == "checkpoint"

    # THEN they went in order, at most BatchSize at a time, and the checkpoint is the last record
    assert [len(batch) for batch in seen] == [10, 10, 5]
    assert [index for batch in seen for index in batch] == list(range(1, 26))
    assert batcher.checkpoint == seq(25)


def test_records_the_filter_rejects_are_never_delivered_and_are_checkpointed() -> None:
    # GIVEN the processor's own MODIFY records around two new guarantees
    batcher = ShardBatcher(settings())
    dropped = batcher.add(
        [
            record(1, event_name="MODIFY", status="DECIDING"),
            record(2),
            record(3, event_name="MODIFY", status="CONFIRMED"),
            record(4),
            record(5, event_name="MODIFY", status="CONFIRMED"),
        ],
        NOW,
    )

    # THEN the leading filtered record is checkpointed at once, and only the INSERTs are delivered
    assert dropped == 3
    assert batcher.checkpoint == seq(1)
    batch = batcher.next_batch(NOW)
    assert indexes(batch) == [2, 4]

    # WHEN the batch succeeds THEN the checkpoint passes the trailing filtered record too
    assert batch is not None
    batcher.record_outcome(batch, ok())
    assert batcher.checkpoint == seq(5)
    assert batcher.next_batch(NOW) is None


def test_only_filtered_records_means_nothing_to_invoke() -> None:
    batcher = ShardBatcher(settings())
    batcher.add([record(1, event_name="MODIFY"), record(2, event_name="REMOVE")], NOW)

    assert batcher.next_batch(NOW) is None
    assert batcher.checkpoint == seq(2)


def test_batching_window_waits_for_a_full_batch_or_the_window() -> None:
    batcher = batcher_with(3, batching_window_s=2.0)

    assert batcher.next_batch(NOW + 1.0) is None
    assert indexes(batcher.next_batch(NOW + 2.0)) == [1, 2, 3]


# -- partial batch responses ---------------------------------------------------------------------------


def test_partial_failure_checkpoints_before_the_lowest_failed_record_and_retries_from_it() -> None:
    # GIVEN a batch of five in which records 4 and 3 failed
    batcher = batcher_with(5)
    batch = batcher.next_batch(NOW)
    assert batch is not None

    # WHEN the function reports them
    verdict = batcher.record_outcome(batch, failed_items(4, 3))

    # THEN records 1-2 are done and the retry starts at 3
    assert verdict.action == "retry"
    assert batcher.checkpoint == seq(2)
    assert indexes(batcher.next_batch(NOW)) == [3, 4, 5]


@pytest.mark.parametrize(
    "response",
    [
        pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, id="empty-identifier"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": None}]}, id="null-identifier"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "42"}]}, id="not-in-batch"),
        pytest.param({"batchItemFailures": [{"itemId": "x"}]}, id="bad-key"),
        pytest.param({"batchItemFailures": "oops"}, id="not-a-list"),
    ],
)
def test_an_invalid_item_identifier_fails_the_whole_batch(response: dict[str, Any]) -> None:
    batcher = batcher_with(3)
    batch = batcher.next_batch(NOW)
    assert batch is not None

    verdict = batcher.record_outcome(batch, ok(response))

    assert verdict.action == "retry"
    assert batcher.checkpoint is None
    assert indexes(batcher.next_batch(NOW)) == [1, 2, 3]


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "not-an-object"],
    ids=["null", "empty-object", "empty-list", "null-list", "string"],
)
def test_responses_lambda_treats_as_complete_success(response: Any) -> None:
    batch = Batch((record(1), record(2)))

    assert failed_item_sequences(response, batch, report_batch_item_failures=True) == []


def test_without_report_batch_item_failures_the_response_is_ignored() -> None:
    batcher = batcher_with(3, report_batch_item_failures=False)
    batch = batcher.next_batch(NOW)
    assert batch is not None

    assert batcher.record_outcome(batch, failed_items(1)).action == "checkpoint"
    assert batcher.checkpoint == seq(3)


# -- function errors and bisection ---------------------------------------------------------------------


def test_function_error_bisects_the_batch_without_consuming_retry_attempts() -> None:
    # GIVEN no retries at all, but bisection on: record 1 always crashes the function
    batcher = batcher_with(4, bisect_on_function_error=True, maximum_retry_attempts=0)

    # WHEN the batch of four fails THEN it is split in two, and nothing is given up yet
    first = batcher.next_batch(NOW)
    assert indexes(first) == [1, 2, 3, 4]
    assert first is not None
    assert batcher.record_outcome(first, function_error()).action == "bisect"

    # WHEN the first half fails THEN it is split again
    half = batcher.next_batch(NOW)
    assert indexes(half) == [1, 2]
    assert half is not None
    assert batcher.record_outcome(half, function_error()).action == "bisect"

    # WHEN the single record fails THEN, with no retries left, it alone is given up
    single = batcher.next_batch(NOW)
    assert indexes(single) == [1]
    assert single is not None
    verdict = batcher.record_outcome(single, function_error())
    assert verdict.action == "give-up"
    assert verdict.failed is not None
    assert [r["dynamodb"]["SequenceNumber"] for r in verdict.failed.records] == [seq(1)]
    assert verdict.failed.invoke_count == 3  # every invoke that included it
    assert verdict.failed.function_error == "Unhandled"

    # THEN the rest is delivered in the halves already planned, then in full batches again
    assert indexes(batcher.next_batch(NOW)) == [2]
    batch = batcher.next_batch(NOW)
    assert batch is not None
    batcher.record_outcome(batch, ok())
    remaining = batcher.next_batch(NOW)
    assert indexes(remaining) == [3, 4]
    assert remaining is not None
    batcher.record_outcome(remaining, ok())
    assert batcher.checkpoint == seq(4)


def test_function_error_without_bisection_retries_then_gives_up_the_batch() -> None:
    # GIVEN MaximumRetryAttempts 2 and no bisection
    batcher = batcher_with(3, maximum_retry_attempts=2)
    verdicts = []

    # WHEN the function keeps failing
    for _ in range(3):
        batch = batcher.next_batch(NOW)
        assert indexes(batch) == [1, 2, 3]
        assert batch is not None
        verdicts.append(batcher.record_outcome(batch, function_error()))

    # THEN the first invoke and two retries, then the whole batch is given up and passed
    assert [verdict.action for verdict in verdicts] == ["retry", "retry", "give-up"]
    failed = verdicts[-1].failed
    assert failed is not None
    assert failed.condition == RETRY_ATTEMPTS_EXHAUSTED
    assert failed.invoke_count == 3
    assert len(failed.records) == 3
    assert batcher.checkpoint == seq(3)
    assert batcher.next_batch(NOW) is None


def test_partial_failures_exhaust_retries_and_give_up_from_the_failed_record() -> None:
    # GIVEN one retry; record 2 of three keeps failing
    batcher = batcher_with(3, maximum_retry_attempts=1)
    first = batcher.next_batch(NOW)
    assert first is not None
    assert batcher.record_outcome(first, failed_items(2)).action == "retry"

    # WHEN the retry (from record 2) fails again
    retry = batcher.next_batch(NOW)
    assert indexes(retry) == [2, 3]
    assert retry is not None
    verdict = batcher.record_outcome(retry, failed_items(2))

    # THEN records 2-3 are given up (record 1 succeeded), and the shard moves on
    assert verdict.action == "give-up"
    assert verdict.failed is not None
    assert [r["dynamodb"]["SequenceNumber"] for r in verdict.failed.records] == [seq(2), seq(3)]
    assert verdict.failed.invoke_count == 2
    assert verdict.failed.function_error is None
    assert batcher.checkpoint == seq(3)


def test_progress_resets_the_retry_count() -> None:
    # GIVEN one retry allowed: record 1 fails once, then record 2 fails once
    batcher = batcher_with(3, maximum_retry_attempts=1)
    batch = batcher.next_batch(NOW)
    assert batch is not None
    batcher.record_outcome(batch, failed_items(1))
    batch = batcher.next_batch(NOW)
    assert batch is not None

    # WHEN the retry moves past record 1 but fails at record 2
    verdict = batcher.record_outcome(batch, failed_items(2))

    # THEN record 2 gets its own retry
    assert verdict.action == "retry"
    assert batcher.checkpoint == seq(1)


def test_unlimited_retries_never_give_up() -> None:
    batcher = batcher_with(1, maximum_retry_attempts=-1)

    for _ in range(50):
        batch = batcher.next_batch(NOW)
        assert batch is not None
        assert batcher.record_outcome(batch, function_error()).action == "retry"


# -- record age ----------------------------------------------------------------------------------------


def test_records_older_than_the_maximum_age_are_given_up() -> None:
    # GIVEN two old records and a fresh one, with a maximum age of 60 s
    batcher = ShardBatcher(settings(maximum_record_age_s=60))
    batcher.add([record(1, created=NOW - 120), record(2, created=NOW - 61), record(3, created=NOW)], NOW)

    # WHEN the mapping looks for expired records
    expired = batcher.expired(NOW)

    # THEN the old ones are given up and only the fresh one is delivered
    assert expired is not None
    assert expired.condition == RECORD_AGE_EXCEEDED
    assert [r["dynamodb"]["SequenceNumber"] for r in expired.records] == [seq(1), seq(2)]
    assert batcher.checkpoint == seq(2)
    assert indexes(batcher.next_batch(NOW)) == [3]
    assert batcher.expired(NOW) is None


def test_no_maximum_age_keeps_old_records() -> None:
    batcher = ShardBatcher(settings(maximum_record_age_s=-1))
    batcher.add([record(1, created=NOW - 10**6)], NOW)

    assert batcher.expired(NOW) is None


# -- the OnFailure record ------------------------------------------------------------------------------


def test_on_failure_message_has_the_shape_lambda_sends() -> None:
    batcher = ShardBatcher(settings(maximum_retry_attempts=0))
    batcher.add([record(1, created=NOW - 5), record(2, created=NOW - 3)], NOW)
    batch = batcher.next_batch(NOW)
    assert batch is not None
    verdict = batcher.record_outcome(batch, function_error())
    assert verdict.failed is not None

    message = on_failure_message(
        verdict.failed,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:processor",
        stream_arn=STREAM_ARN,
        shard_id="shardId-1",
        now=NOW,
    )

    assert message == {
        "requestContext": {
            "requestId": "request-2",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:processor",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2027-01-15T08:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-1",
            "startSequenceNumber": seq(1),
            "endSequenceNumber": seq(2),
            "approximateArrivalOfFirstRecord": "2027-01-15T07:59:55Z",
            "approximateArrivalOfLastRecord": "2027-01-15T07:59:57Z",
            "batchSize": 2,
            "streamArn": STREAM_ARN,
        },
    }
    assert json.loads(json.dumps(message)) == message


# -- re-reading the shard ------------------------------------------------------------------------------


def test_a_re_read_resumes_after_the_checkpoint_or_at_the_oldest_pending_record() -> None:
    # GIVEN nothing read yet: the mapping's StartingPosition applies
    batcher = ShardBatcher(settings(starting_position="LATEST"))
    assert batcher.resume_point() is None

    # WHEN the first record fails before anything was checkpointed THEN the re-read starts at it
    batcher.add([record(1), record(2)], NOW)
    batch = batcher.next_batch(NOW)
    assert batch is not None
    batcher.record_outcome(batch, failed_items(1))
    assert batcher.resume_point() == ("AT_SEQUENCE_NUMBER", seq(1))

    # WHEN record 1 is done and record 2 fails THEN the re-read starts just after the checkpoint
    batch = batcher.next_batch(NOW)
    assert batch is not None
    batcher.record_outcome(batch, failed_items(2))
    assert batcher.resume_point() == ("AFTER_SEQUENCE_NUMBER", seq(1))

    # AND after forgetting what was read, the same records come back and the retry state is kept
    batcher.clear()
    batcher.add([record(2)], NOW)
    assert indexes(batcher.next_batch(NOW)) == [2]
    assert batcher.attempts == 1
