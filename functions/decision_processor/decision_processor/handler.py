"""Lambda entry point: adapts DynamoDB stream batches to the processor and reports partial failures.

Records that must be retried are returned in ``batchItemFailures`` (the event source mapping has
``ReportBatchItemFailures``); permanent failures are business outcomes already written to the table.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, assert_never

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBStreamEvent,
)
from geft.aws import AwsClients
from geft.errors import PolicyError
from geft.flinks_client import client_for_secret
from geft.flinks_metrics import FlinksCallMetrics
from geft.items import guarantee_view
from geft.observability import MetricUnit, logger, metrics
from geft.policy import DecisionPolicy
from geft.repository import DYNAMODB_CLIENT_CONFIG, GuaranteeRepository
from geft.secrets import JsonSecret

from decision_processor.config import ProcessorConfig
from decision_processor.processor import (
    RECOVERED_RULE,
    Disposition,
    GuaranteeProcessor,
    RecordResult,
    StreamRecord,
)

# Stop starting work this long before Lambda's own deadline, so the answer always gets back.
_DEADLINE_SAFETY_SECONDS = 1.0
# A lease outlives the invocation that took it by this much, covering clock skew between hosts.
_LEASE_MARGIN_MS = 2_000
# Every Flinks call of this container, written out by the handler's thread after each batch.
_FLINKS_CALLS = FlinksCallMetrics()


@functools.cache
def _dependencies() -> GuaranteeProcessor:
    """Composition root, built on the first invoke: clients, pool and policy live per container."""
    config = ProcessorConfig.from_env()
    aws = AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG})
    policy = DecisionPolicy.from_json(config.decision_policy_json)  # an invalid policy fails the start
    for warning in policy.warnings:
        logger.warning("decision policy warning", warning=warning)
    credentials = JsonSecret(
        config.flinks.credentials_secret_id, max_age_seconds=config.secret_max_age_seconds, client=aws
    )
    flinks = client_for_secret(
        config.flinks,
        credentials,
        pool_maxsize=config.pool_size + 1,  # one keep-alive connection per worker thread, one for refills
        token_pool_size=config.token_pool_size,
        token_pool_margin=config.token_pool_margin_seconds,
        on_call=_FLINKS_CALLS.observe,
    )
    _FLINKS_CALLS.watch_token_pool(flinks.token_pool_counters)
    return GuaranteeProcessor(
        store=GuaranteeRepository.for_function(config.table, client=aws),
        flinks=flinks,
        policy=policy,
        shadow_policy=_shadow_policy(config.shadow_policy_json),
        executor=ThreadPoolExecutor(max_workers=config.pool_size, thread_name_prefix="guarantee"),
        finish_reserve_seconds=config.finish_reserve_seconds,
        review_timeout_seconds=config.review_timeout_seconds,
        reconcile_delay_seconds=config.reconcile_delay_seconds,
        confirm_settle_seconds=config.confirm_settle_seconds,
        on_credentials_rejected=credentials.refresh,
    )


def _shadow_policy(document: str | None) -> DecisionPolicy | None:
    """A shadow policy that does not validate is reported and ignored: it may never stop the live one."""
    if not document:
        return None
    try:
        return DecisionPolicy.from_json(document)
    except PolicyError as error:
        logger.error("shadow policy invalid; running without it", error=str(error))
        metrics.add_metric(name="ShadowPolicyErrors", unit=MetricUnit.Count, value=1)
        return None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = _dependencies()
    records = [to_stream_record(record) for record in DynamoDBStreamEvent(event).records]
    remaining_ms = int(context.get_remaining_time_in_millis())
    try:
        results = processor.process_batch(
            records,
            deadline=time.monotonic() + remaining_ms / 1000 - _DEADLINE_SAFETY_SECONDS,
            lease_until_ms=int(time.time() * 1000) + remaining_ms + _LEASE_MARGIN_MS,
        )
    finally:
        _FLINKS_CALLS.flush()  # a failed batch's calls are what on-call most needs to see
    record_metrics(results)
    failures = [
        result.record.sequence_number for result in results if result.disposition is Disposition.RETRY
    ]
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failures]}


def to_stream_record(record: DynamoDBRecord) -> StreamRecord:
    stream = record.dynamodb
    sequence_number = str(stream.sequence_number) if stream and stream.sequence_number else ""
    image: Mapping[str, Any] = (stream.new_image if stream else None) or {}
    view = guarantee_view(image)
    return StreamRecord(sequence_number, view.ref if view is not None else None)


def record_metrics(results: Iterable[RecordResult]) -> None:
    """Emitted from the handler's thread after the pool finishes: Powertools metrics are not
    meant to be written from many threads at once."""
    for result in results:
        for name, dimensions in metrics_for(result):
            if dimensions:
                with single_metric(name=name, unit=MetricUnit.Count, value=1) as metric:
                    for key, value in dimensions.items():
                        metric.add_dimension(name=key, value=value)
            else:
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        outcome = result.outcome
        if (
            result.disposition is Disposition.CONFIRMED
            and outcome
            and outcome.webhook_to_confirm_ms is not None
        ):
            metrics.add_metric(
                name="WebhookToConfirmLatency",
                unit=MetricUnit.Milliseconds,
                value=outcome.webhook_to_confirm_ms,
            )


def metrics_for(result: RecordResult) -> list[tuple[str, dict[str, str]]]:
    """The count metrics one record's result emits: the one table of names (see README "Alarms")."""
    emitted: list[tuple[str, dict[str, str]]] = []
    outcome = result.outcome
    decision = outcome.decision if outcome is not None else None
    match result.disposition:
        case Disposition.CONFIRMED:
            emitted.append(("Confirmed", {}))
            if outcome is not None and outcome.recovered_from_details:
                emitted.append(("RecoveredFromDetails", {}))
        case Disposition.FAILED:
            emitted.append(("ConfirmFailed", {}))
        case Disposition.REVIEW:
            emitted.append(("ReviewRequested", {}))
            if outcome is not None and outcome.hold_reason is not None:
                emitted.append(("GuaranteeHeld", {}))
        case Disposition.RETRY:
            emitted.append(("DecisionRetried", {}))
        case Disposition.REFUSED:
            emitted.append(("ClaimRefused", {}))
        case Disposition.SKIPPED:
            pass
        case _:
            assert_never(result.disposition)
    if decision is not None and decision.rule != RECOVERED_RULE:  # Flinks' record, not a decision of ours
        emitted.append(("Decided", {"Decision": decision.verdict.value}))
        emitted.append(("DecidedByRule", {"Decision": decision.verdict.value, "Rule": decision.rule}))
    shadow = outcome.shadow if outcome is not None else None
    if decision is not None and shadow is not None and shadow.verdict is not decision.verdict:
        emitted.append(("ShadowDisagreement", {"LiveRule": decision.rule, "ShadowRule": shadow.rule}))
    if result.shadow_failed:
        emitted.append(("ShadowPolicyErrors", {}))
    return emitted
