"""Lambda entry point: every stream record of the guarantees table becomes one history record.

A record is put only if it is not there yet (keyed by the stream record's id), so Lambda's retries
and bisections write nothing twice. When a write put a guarantee in REVIEW, the review team is told at
once (once: only when its history record was new). Failures are reported per record; after the
stream's retries the batch goes to the audit dead-letter queue, which alarms.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from geft.audit import HISTORY_PUT_CONDITION, HistoryRecord, history_from_stream, history_item
from geft.aws import AwsClients, provider
from geft.errors import PersistenceError
from geft.items import guarantee_view
from geft.models import ChangeKind, GuaranteeStatus
from geft.observability import MetricUnit, logger, metrics
from geft.review_notice import review_notice

from audit_trail.config import AuditTrailConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient

_NOTICE_CHANGES = frozenset({ChangeKind.REVIEW_REQUESTED.value, ChangeKind.HELD.value})


class AuditTrail:
    """``dynamodb``/``sns``: the container's ``AwsClients`` (each client made at its first use), or ready
    clients."""

    def __init__(
        self,
        config: AuditTrailConfig,
        *,
        dynamodb: DynamoDBClient | AwsClients,
        sns: SNSClient | AwsClients,
    ) -> None:
        self._config = config
        self._dynamodb = provider(dynamodb, AwsClients.dynamodb)
        self._sns = provider(sns, AwsClients.sns)

    def record(self, record: DynamoDBRecord) -> None:
        stream = record.dynamodb
        if stream is None:
            return
        created = stream.approximate_creation_date_time
        history = history_from_stream(
            event_id=str(record.event_id),
            event_name=str(record.event_name.name if record.event_name else ""),
            keys=stream.keys or {},
            new_image=stream.new_image,
            approximate_ms=int(created) * 1000 if created else 0,  # epoch seconds in stream records
        )
        if history is None:
            return
        if self._put_once(history) and history.change in _NOTICE_CHANGES:
            self._announce_review(stream.new_image or {})

    def _put_once(self, history: HistoryRecord) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with the client

        try:
            self._dynamodb().put_item(
                TableName=self._config.audit_table_name,
                Item=history_item(history, retention_days=self._config.audit_retention_days),
                ConditionExpression=HISTORY_PUT_CONDITION,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # a retried batch: recorded already
            raise PersistenceError(
                f"audit put failed: {error.response.get('Error', {}).get('Code')}"
            ) from error
        except BotoCoreError as error:
            raise PersistenceError(f"audit put failed: {type(error).__name__}") from error
        metrics.add_metric(name="HistoryRecorded", unit=MetricUnit.Count, value=1)
        return True

    def _announce_review(self, image: dict[str, Any]) -> None:
        guarantee = guarantee_view(image)
        if (
            guarantee is None
            or guarantee.status is not GuaranteeStatus.REVIEW
            or not self._config.review_topic_arn
        ):
            return
        notice = review_notice(
            guarantee,
            cli_target=self._config.ops_cli_target,
            fallback_decision=self._config.review_fallback_decision,
        )
        self._sns().publish(
            TopicArn=self._config.review_topic_arn, Subject=notice.subject[:100], Message=notice.message
        )
        metrics.add_metric(name="ReviewAnnounced", unit=MetricUnit.Count, value=1)
        logger.info("review announced", session_id=guarantee.ref.session_id)


@functools.cache
def _dependencies() -> AuditTrail:
    """Composition root, built on the first invoke; both clients from one session, on first use."""
    aws = AwsClients()
    return AuditTrail(AuditTrailConfig.from_env(), dynamodb=aws, sns=aws)


_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    trail = _dependencies()
    response = process_partial_response(
        event=event, record_handler=trail.record, processor=_processor, context=context
    )
    return dict(response)
