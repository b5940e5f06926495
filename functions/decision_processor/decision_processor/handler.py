"""Lambda entry point: adapts DynamoDB stream batches to the processor and reports partial failures.

Records that must be retried are returned in ``batchItemFailures`` (the event source mapping has
``ReportBatchItemFailures``); permanent failures are business outcomes already written to the table.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBStreamEvent,
)
from geft.flinks_client import client_for_secret
from geft.models import GuaranteeRef, RecordType
from geft.observability import MetricUnit, logger, metrics
from geft.policy import DecisionPolicy
from geft.repository import GUARANTEE_SK_PREFIX, GuaranteeRepository
from geft.secrets import JsonSecret

from decision_processor.config import ProcessorConfig
from decision_processor.processor import GuaranteeProcessor, RecordResult, RecordStatus, StreamRecord

# Stop starting work this long before Lambda's own deadline, so the answer always gets back.
_DEADLINE_SAFETY_SECONDS = 1.0
# A lease outlives the invocation that took it by this much, covering clock skew between hosts.
_LEASE_MARGIN_MS = 2_000


@functools.cache
def _processor() -> GuaranteeProcessor:
    """Composition root, built on the first invoke: clients, pool and policy live per container."""
    config = ProcessorConfig.from_env()
    policy = DecisionPolicy.from_json(config.decision_policy_json)  # an invalid policy fails the start
    credentials = JsonSecret(
        config.flinks.credentials_secret_id, max_age_seconds=config.secret_max_age_seconds
    )
    flinks = client_for_secret(
        config.flinks,
        credentials,
        pool_maxsize=config.pool_size + 1,  # one keep-alive connection per worker thread, one for refills
        token_pool_size=config.token_pool_size,
        token_pool_margin=config.token_pool_margin_seconds,
    )
    return GuaranteeProcessor(
        repository=GuaranteeRepository(config.table_name, retention_days=config.retention_days),
        flinks=flinks,
        policy=policy,
        executor=ThreadPoolExecutor(max_workers=config.pool_size, thread_name_prefix="guarantee"),
        finish_reserve_seconds=config.finish_reserve_seconds,
        review_timeout_seconds=config.review_timeout_seconds,
        reconcile_delay_seconds=config.reconcile_delay_seconds,
        on_credentials_rejected=credentials.refresh,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = _processor()
    records = [to_stream_record(record) for record in DynamoDBStreamEvent(event).records]
    remaining_ms = int(context.get_remaining_time_in_millis())
    results = processor.process_batch(
        records,
        deadline=time.monotonic() + remaining_ms / 1000 - _DEADLINE_SAFETY_SECONDS,
        lease_until_ms=int(time.time() * 1000) + remaining_ms + _LEASE_MARGIN_MS,
    )
    record_metrics(results)
    failures = [result.record.sequence_number for result in results if result.status is RecordStatus.RETRY]
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failures]}


def to_stream_record(record: DynamoDBRecord) -> StreamRecord:
    stream = record.dynamodb
    sequence_number = str(stream.sequence_number) if stream and stream.sequence_number else ""
    image: Mapping[str, Any] = (stream.new_image if stream else None) or {}
    sort_key = str(image.get("sk", ""))
    if image.get("recordType") != RecordType.GUARANTEE or not sort_key.startswith(GUARANTEE_SK_PREFIX):
        return StreamRecord(sequence_number, None)
    return StreamRecord(sequence_number, GuaranteeRef(str(image["pk"]), sort_key[len(GUARANTEE_SK_PREFIX) :]))


def record_metrics(results: Iterable[RecordResult]) -> None:
    """Emitted from the handler's thread after the pool finishes: Powertools metrics are not
    meant to be written from many threads at once."""
    for result in results:
        outcome = result.outcome
        if result.status is RecordStatus.RETRY:
            metrics.add_metric(name="DecisionRetried", unit=MetricUnit.Count, value=1)
        if outcome is None or result.status is RecordStatus.RETRY:
            continue
        if outcome.decision:
            with single_metric(name="Decided", unit=MetricUnit.Count, value=1) as metric:
                metric.add_dimension(name="Decision", value=outcome.decision)
            with single_metric(name="DecidedByRule", unit=MetricUnit.Count, value=1) as metric:
                metric.add_dimension(name="Decision", value=outcome.decision)
                metric.add_dimension(name="Rule", value=outcome.rule or "unknown")
        if result.status is RecordStatus.CONFIRMED:
            metrics.add_metric(name="Confirmed", unit=MetricUnit.Count, value=1)
            if outcome.recovered_from_details:
                metrics.add_metric(name="RecoveredFromDetails", unit=MetricUnit.Count, value=1)
            if outcome.webhook_to_confirm_ms is not None:
                metrics.add_metric(
                    name="WebhookToConfirmLatency",
                    unit=MetricUnit.Milliseconds,
                    value=outcome.webhook_to_confirm_ms,
                )
        elif result.status is RecordStatus.FAILED:
            metrics.add_metric(name="ConfirmFailed", unit=MetricUnit.Count, value=1)
        elif result.status is RecordStatus.REVIEW:
            metrics.add_metric(name="ReviewRequested", unit=MetricUnit.Count, value=1)
