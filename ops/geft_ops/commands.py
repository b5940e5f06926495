"""What each subcommand does, as plain functions returning plain data (the CLI renders it).

Every change goes through the same conditional writes the functions use, so an operator can never
make a guarantee confirm twice: redrive and replay only send a guarantee back to the stream path,
where the processor claims it and reads /details before any confirm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geft.models import GuaranteeRef, GuaranteeStatus
from geft.repository import GUARANTEE_SK_PREFIX, SESSION_SK, GuaranteeRepository
from geft.webhook_events import GuaranteeEvent, classify

REVIEW_DECISIONS = ("accept", "reject")


class OperationError(Exception):
    """The operation could not be done; the message says why (exit code 1)."""


@dataclass(frozen=True)
class RedriveResult:
    session_id: str
    guarantee_key: str
    result: str  # redriven | already-confirmed | already-failed | in-review | in-progress | missing


def now_ms() -> int:
    return int(time.time() * 1000)


def list_guarantees(
    repository: GuaranteeRepository,
    *,
    status: str | None,
    decision: str | None,
    since_ms: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    items = repository.guarantees(status=status, since_ms=since_ms)
    if decision:
        items = [item for item in items if item.get("decision") == decision]
    items.sort(key=lambda item: int(item.get("receivedAtMs", 0)), reverse=True)
    return [_summary(item) for item in items[:limit]]


def show_session(repository: GuaranteeRepository, session_id: str) -> dict[str, Any]:
    records = repository.session_records(session_id)
    guarantees = [r for r in records if str(r.get("sk", "")).startswith(GUARANTEE_SK_PREFIX)]
    status = next((r for r in records if r.get("sk") == SESSION_SK), None)
    if not guarantees and status is None:
        raise OperationError(f"no record of session {session_id}")
    return {
        "sessionId": session_id,
        "guarantees": [{**_summary(g), "history": _history(g)} for g in guarantees],
        "finalStatus": _final_status(status),
    }


def decide(
    repository: GuaranteeRepository,
    session_id: str,
    *,
    decision: str,
    reason: str,
    operator: str,
    guarantee_key: str | None,
) -> dict[str, Any]:
    if decision not in REVIEW_DECISIONS:
        raise OperationError(f"decision must be one of {REVIEW_DECISIONS}")
    in_review = [
        g
        for g in repository.session_records(session_id)
        if str(g.get("sk", "")).startswith(GUARANTEE_SK_PREFIX)
        and g.get("status") == GuaranteeStatus.REVIEW
        and (guarantee_key is None or g.get("guaranteeKey") == guarantee_key)
    ]
    if not in_review:
        raise OperationError(f"session {session_id} has no guarantee waiting for review")
    if len(in_review) > 1:
        keys = ", ".join(str(g["guaranteeKey"]) for g in in_review)
        raise OperationError(
            f"session {session_id} has several guarantees in review ({keys}): use --guarantee"
        )
    ref = GuaranteeRef(session_id, str(in_review[0]["guaranteeKey"]))
    if not repository.record_review_decision(
        ref, decision=decision, reviewer=operator, reason=reason, now_ms=now_ms()
    ):
        raise OperationError(f"session {session_id} left review meanwhile (decided by someone else?)")
    return {
        "sessionId": session_id,
        "guaranteeKey": ref.guarantee_key,
        "decision": decision,
        "operator": operator,
    }


def replay(repository: GuaranteeRepository, session_id: str) -> list[RedriveResult]:
    """Send a session's stored webhook through the decision path again. A guarantee never stored
    (its webhook was quarantined, e.g. outside the replay window) is stored from the kept body."""
    records = repository.session_records(session_id)
    guarantees = [r for r in records if str(r.get("sk", "")).startswith(GUARANTEE_SK_PREFIX)]
    if guarantees:
        return [
            _redrive_one(repository, GuaranteeRef(session_id, str(g["guaranteeKey"])), include_failed=True)
            for g in guarantees
        ]
    for body in reversed(repository.quarantined_bodies(session_id)):
        event = classify(body)
        if isinstance(event, GuaranteeEvent) and event.session_id == session_id:
            ref = GuaranteeRef(session_id, event.guarantee_key)
            stored = repository.insert_guarantee(
                ref,
                raw_body=body.decode("utf-8"),
                received_at_ms=now_ms(),
                event_when=event.when.isoformat() if event.when else None,
            )
            return [
                RedriveResult(session_id, ref.guarantee_key, "stored-from-quarantine" if stored else "exists")
            ]
    raise OperationError(f"no stored webhook for session {session_id}")


def redrive_dead_letters(
    resources: Any, repository: GuaranteeRepository, *, dry_run: bool, max_messages: int
) -> list[RedriveResult]:
    """Each OnFailure message names a stream batch; find its guarantees and send them back through
    claim -> decide -> confirm. A message is deleted only once every guarantee in it is handled."""
    sqs = resources.client("sqs")
    queue_url = resources.output("DeadLetterQueueUrl")
    results: list[RedriveResult] = []
    handled = 0
    while handled < max_messages:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - handled), WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            handled += 1
            refs = _refs_of_dead_letter(resources, repository, message["Body"])
            outcome = [
                RedriveResult(ref.session_id, ref.guarantee_key, "would-redrive")
                if dry_run
                else _redrive_one(repository, ref, include_failed=False)
                for ref in refs
            ]
            results.extend(outcome)
            if dry_run:  # only looked: make it visible again for the real redrive
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            elif all(r.result != "missing" for r in outcome):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if dry_run:
            break
    return results


def _refs_of_dead_letter(resources: Any, repository: GuaranteeRepository, body: str) -> list[GuaranteeRef]:
    import json  # noqa: PLC0415

    try:
        batch = json.loads(body)["DDBStreamBatchInfo"]
    except (ValueError, KeyError, TypeError) as error:
        raise OperationError(f"not a DynamoDB stream failure record: {body[:200]}") from error
    refs = _refs_from_stream(resources, batch)
    if refs is None:
        # The stream keeps records 24 h: past that, every unfinished guarantee is a candidate.
        refs = [
            GuaranteeRef(str(item["pk"]), str(item["guaranteeKey"]))
            for status in (GuaranteeStatus.RECEIVED, GuaranteeStatus.DECIDING, GuaranteeStatus.REDRIVE)
            for item in repository.guarantees(status=status)
        ]
    return list(dict.fromkeys(refs))


def _refs_from_stream(resources: Any, batch: dict[str, Any]) -> list[GuaranteeRef] | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    streams = resources.client("dynamodbstreams")
    start, end = int(batch["startSequenceNumber"]), int(batch["endSequenceNumber"])
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=batch["streamArn"],
            ShardId=batch["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=batch["startSequenceNumber"],
        )["ShardIterator"]
        refs: list[GuaranteeRef] = []
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in response["Records"]:
                sequence = int(record["dynamodb"]["SequenceNumber"])
                if sequence > end:
                    return refs
                keys = record["dynamodb"]["Keys"]
                sort_key = keys["sk"]["S"]
                if sequence >= start and sort_key.startswith(GUARANTEE_SK_PREFIX):
                    refs.append(GuaranteeRef(keys["pk"]["S"], sort_key.removeprefix(GUARANTEE_SK_PREFIX)))
            if not response["Records"]:
                return refs
            iterator = response.get("NextShardIterator")
    except ClientError:
        return None
    return refs


def _redrive_one(
    repository: GuaranteeRepository, ref: GuaranteeRef, *, include_failed: bool
) -> RedriveResult:
    if repository.mark_redrive(ref, now_ms=now_ms(), include_failed=include_failed):
        return RedriveResult(ref.session_id, ref.guarantee_key, "redriven")
    current = repository.get_guarantee(ref)
    if current is None:
        return RedriveResult(ref.session_id, ref.guarantee_key, "missing")
    result = {
        GuaranteeStatus.CONFIRMED: "already-confirmed",
        GuaranteeStatus.FAILED: "already-failed",
        GuaranteeStatus.REVIEW: "in-review",
        GuaranteeStatus.REVIEWED: "in-progress",
        GuaranteeStatus.DECIDING: "in-progress",
    }.get(current.status, current.status.value.lower())
    return RedriveResult(ref.session_id, ref.guarantee_key, result)


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessionId": item.get("sessionId"),
        "guaranteeKey": item.get("guaranteeKey"),
        "status": item.get("status"),
        "decision": item.get("decision"),
        "rule": item.get("decisionRule"),
        "receivedAt": _iso(item.get("receivedAtMs")),
        "webhookToConfirmMs": _int(item.get("webhookToConfirmMs")),
        "failureReason": item.get("failureReason"),
    }


def _history(item: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[tuple[Any, str, str]] = [(item.get("receivedAtMs"), "received", "webhook stored")]
    if item.get("decidedAtMs") is not None and item.get("decision"):
        events.append(
            (item["decidedAtMs"], "decided", f"{item['decision']} by rule {item.get('decisionRule')}")
        )
    if item.get("reviewRequestedAtMs") is not None:
        detail = f"sent to manual review by rule {item.get('reviewRequestedByRule')}"
        events.append((item["reviewRequestedAtMs"], "review", detail))
    if item.get("reviewedAtMs") is not None:
        detail = f"{item.get('reviewDecision')} by {item.get('reviewer')}: {item.get('reviewReason')}"
        events.append((item["reviewedAtMs"], "reviewed", detail))
    if item.get("redriveRequestedAtMs") is not None:
        events.append((item["redriveRequestedAtMs"], "redrive", "sent back through the decision path"))
    if item.get("confirmedAtMs") is not None:
        recovered = " (learnt from /details)" if item.get("recoveredFromDetails") else ""
        detail = f"Flinks acknowledged {item.get('decision')}{recovered}"
        events.append((item["confirmedAtMs"], "confirmed", detail))
    if item.get("status") == GuaranteeStatus.FAILED:
        events.append((item.get("updatedAtMs"), "failed", str(item.get("failureReason"))))
    events.sort(key=lambda event: int(event[0] or 0))
    return [{"at": _iso(at), "event": name, "detail": detail} for at, name, detail in events]


def _final_status(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None or not record.get("finalStatus"):
        return None
    return {
        "status": record["finalStatus"],
        "details": record.get("finalStatusDetails"),
        "source": record.get("finalStatusSource"),
        "at": _iso(record.get("finalStatusAtMs")),
    }


def _iso(epoch_ms: Any) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(int(epoch_ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
