"""What each subcommand does, as plain functions returning plain data (the CLI renders it).

Every change goes through the same conditional writes the functions use, so an operator can never
make a guarantee confirm twice: redrive and replay only send a guarantee back to the stream path,
where the processor claims it and reads /details before any confirm. A DECIDING guarantee is taken
over only once its lease has been over for ten minutes by the operator's clock (which may be off).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from geft.audit import HistoryRecord
from geft.items import GUARANTEE_SK_PREFIX, SESSION_SK, GuaranteeView, ref_of_keys
from geft.masking import mask_document, mask_text
from geft.models import GuaranteeRef, GuaranteeStatus, PolicyIdentity, Verdict
from geft.repository import GuaranteeRepository
from geft.webhook_events import GuaranteeEvent, classify

REDRIVE_HOLD_SECONDS = 300  # a received dead letter stays this run's (a longer run skips it when it is back)

REVIEW_DECISIONS = (Verdict.ACCEPT.value, Verdict.REJECT.value)
# DynamoDB Streams may answer empty pages before the records of an open shard: keep reading this long.
_EMPTY_STREAM_PAGES = 100
_UNFINISHED = (
    GuaranteeStatus.RECEIVED,
    GuaranteeStatus.DECIDING,
    GuaranteeStatus.REDRIVE,
    GuaranteeStatus.REVIEWED,
)


class OperationError(Exception):
    """The operation could not be done; the message says why (exit code 1)."""


class Resent(StrEnum):
    """What a redrive or replay did with one guarantee."""

    REDRIVEN = "redriven"
    WOULD_REDRIVE = "would-redrive"
    STORED_FROM_QUARANTINE = "stored-from-quarantine"
    ALREADY_CONFIRMED = "already-confirmed"
    ALREADY_FAILED = "already-failed"
    IN_REVIEW = "in-review"
    IN_PROGRESS = "in-progress"  # a claim whose lease is not safely over: try again later
    MISSING = "missing"
    UNREADABLE = "unreadable"  # a message that is not a stream failure record: kept for a person to read

    @property
    def settled(self) -> bool:
        """Nothing more for an operator to do: finished, sent back, or waiting for a person."""
        return self not in (Resent.IN_PROGRESS, Resent.MISSING, Resent.WOULD_REDRIVE, Resent.UNREADABLE)


@dataclass(frozen=True)
class RedriveResult:
    session_id: str
    guarantee_key: str
    result: Resent


def now_ms() -> int:
    return int(time.time() * 1000)


def list_guarantees(
    repository: GuaranteeRepository,
    *,
    status: GuaranteeStatus | None,
    decision: Verdict | None,
    since_ms: int | None,
    limit: int,
) -> list[GuaranteeView]:
    items = repository.guarantees(status=status, since_ms=since_ms)
    if decision is not None:
        items = [item for item in items if item.decision is not None and item.decision.verdict is decision]
    items.sort(key=lambda item: item.received_at_ms, reverse=True)
    return items[:limit]


def decide(
    repository: GuaranteeRepository,
    session_id: str,
    *,
    verdict: Verdict,
    reason: str,
    guarantee_key: str | None,
) -> GuaranteeRef:
    if verdict is Verdict.REVIEW:
        raise OperationError(f"decision must be one of {REVIEW_DECISIONS}")
    in_review = [
        g
        for g in repository.session_guarantees(session_id)
        if g.status is GuaranteeStatus.REVIEW and guarantee_key in (None, g.ref.guarantee_key)
    ]
    if not in_review:
        raise OperationError(f"session {session_id} has no guarantee waiting for review")
    if len(in_review) > 1:
        keys = ", ".join(g.ref.guarantee_key for g in in_review)
        raise OperationError(
            f"session {session_id} has several guarantees in review ({keys}): use --guarantee"
        )
    ref = in_review[0].ref
    if not repository.record_review_decision(ref, verdict=verdict, reason=reason, now_ms=now_ms()):
        raise OperationError(f"session {session_id} left review meanwhile (decided by someone else?)")
    return ref


def replay(repository: GuaranteeRepository, session_id: str) -> list[RedriveResult]:
    """Send a session's webhooks through the decision path again: every unfinished (or FAILED) stored
    guarantee is redriven, and every guarantee kept in quarantine and never stored (outside the replay
    window, say, or a second guarantee nothing told apart) is stored from its kept body."""
    guarantees = repository.session_guarantees(session_id)
    results = [
        _redrive_one(repository, g.ref, reason=f"replay of session {session_id}", include_failed=True)
        for g in guarantees
    ]
    stored_content = {g.content_sha256 for g in guarantees}
    stored_keys = {g.ref.guarantee_key for g in guarantees}
    for kept in repository.quarantined(session_id):
        event = classify(kept.body)
        if not isinstance(event, GuaranteeEvent) or event.session_id != session_id:
            continue
        if event.content_sha256 in stored_content:
            continue  # that webhook is stored already: its guarantee was redriven above
        key = event.guarantee_key
        if key in stored_keys:  # a second guarantee with the same key: store it beside the first
            key = f"{key}#{event.content_sha256[:12]}"
        insertion = repository.insert_guarantee(
            GuaranteeRef(session_id, key),
            raw_body=kept.body.decode("utf-8"),
            content_sha256=event.content_sha256,
            received_at_ms=now_ms(),
            event_when=event.when.isoformat() if event.when else None,
            reason=f"replayed from quarantine ({kept.reason}, {kept.digest[:12]})",
        )
        if insertion.stored:
            stored_content.add(event.content_sha256)
            stored_keys.add(key)
            results.append(RedriveResult(session_id, key, Resent.STORED_FROM_QUARANTINE))
    if not results:
        raise OperationError(f"no stored webhook for session {session_id}")
    return results


def redrive_dead_letters(
    resources: Any, repository: GuaranteeRepository, *, dry_run: bool, max_messages: int
) -> list[RedriveResult]:
    """Each OnFailure message names a stream batch; find its guarantees and send them back through
    claim -> decide -> confirm. A message is deleted only once every guarantee in it is finished,
    sent back, or waiting for a person; otherwise it stays for the next redrive.

    Each message is handled once a run: a received message stays hidden for REDRIVE_HOLD_SECONDS (the
    queue's own 30 s would hand kept ones back mid-run) and a kept one is made visible again at the end,
    crash or not (if the run is killed first, the hold runs out by itself)."""
    sqs = resources.client("sqs")
    queue_url = resources.output("DeadLetterQueueUrl")
    results: list[RedriveResult] = []
    seen: set[str] = set()
    kept: dict[str, str] = {}  # message id -> its latest receipt handle, made visible again at the end
    try:
        while len(seen) < max_messages:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(seen)),
                VisibilityTimeout=REDRIVE_HOLD_SECONDS,
                WaitTimeSeconds=1,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                message_id, handle = message["MessageId"], message["ReceiptHandle"]
                if message_id in seen:  # back after a hold ran out: handled already this run
                    kept[message_id] = handle
                    continue
                seen.add(message_id)
                try:
                    batch = _FailedBatch.of(message["Body"])
                except OperationError:  # one bad message must not stop every redrive after it
                    results.append(RedriveResult("-", f"message:{message_id}", Resent.UNREADABLE))
                    kept[message_id] = handle
                    continue
                outcome = [
                    RedriveResult(ref.session_id, ref.guarantee_key, Resent.WOULD_REDRIVE)
                    if dry_run
                    else _redrive_one(repository, ref, reason=batch.reason, include_failed=False)
                    for ref in _refs_of_dead_letter(resources, repository, batch)
                ]
                results.extend(outcome)
                if not dry_run and all(r.result.settled for r in outcome):
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
                else:  # looked only, or something is still in progress
                    kept[message_id] = handle
    finally:
        _make_visible(sqs, queue_url, kept.values())
    return results


def _make_visible(sqs: Any, queue_url: str, handles: Iterable[str]) -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    for handle in handles:
        try:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        except ClientError:  # the handle is stale: the message is visible again once its hold ends
            continue


def session_story(
    repository: GuaranteeRepository, history: Iterable[HistoryRecord], session_id: str
) -> dict[str, Any]:
    """Everything the table and the audit trail know about a session, as plain data (``show``)."""
    guarantees, final = repository.session_records(session_id)
    records = list(history)
    if not guarantees and final is None and not records:
        raise OperationError(f"no record of session {session_id}")
    by_key: dict[str, list[HistoryRecord]] = {}
    for record in records:
        by_key.setdefault(record.record_key, []).append(record)
    return {
        "sessionId": session_id,
        "guarantees": [
            _guarantee_story(view, by_key.get(GUARANTEE_SK_PREFIX + view.ref.guarantee_key, []))
            for view in sorted(guarantees, key=lambda view: view.received_at_ms)
        ],
        "finalStatus": None
        if final is None
        else {
            "status": final.final_status,
            "details": final.final_status_details,
            "source": final.source,
            "at": iso(final.final_status_at_ms),
        },
        "sessionHistory": [_history_entry(record) for record in by_key.get(SESSION_SK, [])],
    }


def quarantine_list(repository: GuaranteeRepository) -> list[dict[str, Any]]:
    return [
        {
            "digest": view.digest,
            "receivedAt": iso(view.received_at_ms),
            "reason": view.reason,
            "sessionId": view.session_id,
            "bytes": len(view.body),
        }
        for view in repository.quarantined()
    ]


def quarantine_show(repository: GuaranteeRepository, digest_prefix: str) -> dict[str, Any]:
    """One quarantined body, found by its digest or a prefix of it (at least 8 characters)."""
    if len(digest_prefix) < 8:
        raise OperationError("give at least 8 characters of the digest (quarantine list shows them)")
    matches = [view for view in repository.quarantined() if view.digest.startswith(digest_prefix.lower())]
    if not matches:
        raise OperationError(f"nothing in quarantine matches {digest_prefix}")
    if len(matches) > 1:
        raise OperationError(
            f"{len(matches)} quarantined bodies match {digest_prefix}: give more of the digest"
        )
    view = matches[0]
    try:
        body: Any = mask_document(json.loads(view.body.decode("utf-8"), parse_float=Decimal))
    except (UnicodeDecodeError, ValueError, RecursionError):
        body = mask_text(view.body.decode("utf-8", errors="replace"))
    return {
        "digest": view.digest,
        "receivedAt": iso(view.received_at_ms),
        "reason": view.reason,
        "sessionId": view.session_id,
        "bytes": len(view.body),
        "body": body,
    }


def guarantee_row(view: GuaranteeView) -> dict[str, Any]:
    decision = view.decision
    return {
        "sessionId": view.ref.session_id,
        "guaranteeKey": view.ref.guarantee_key,
        "status": view.status.value,
        "decision": decision.verdict.value if decision else None,
        "rule": decision.rule if decision else None,
        "reason": decision.reason if decision else None,
        "receivedAt": iso(view.received_at_ms),
        "webhookToConfirmMs": view.confirm.webhook_to_confirm_ms if view.confirm else None,
    }


def policy_label(policy: PolicyIdentity | None) -> str | None:
    """Name, version and hash; a shadow decision records no name, so its label says "version"."""
    if policy is None:
        return None
    if policy.name is None and policy.version is not None:
        return f"version {policy.version} ({policy.content_hash})"
    return policy.label()


def iso(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _guarantee_story(view: GuaranteeView, history: list[HistoryRecord]) -> dict[str, Any]:
    decision, review, confirm = view.decision, view.review, view.confirm
    body = view.body()
    return {
        **guarantee_row(view),
        "attempts": view.attempts,
        "webhook": mask_document({key: value for key, value in body.items() if key != "guaranteeDetails"})
        | (
            {"guaranteeDetails": mask_document(body["guaranteeDetails"])}
            if "guaranteeDetails" in body
            else {}
        ),
        "decisionDetail": None
        if decision is None
        else {
            "verdict": decision.verdict.value,
            "rule": decision.rule,
            "reason": decision.reason,
            "inputs": mask_document(decision.inputs),
            "missingFacts": list(decision.missing_facts),
            "policy": decision.policy.label() if decision.policy else None,
            "decidedAt": iso(decision.decided_at_ms),
        },
        "shadow": None
        if view.shadow is None
        else {
            "verdict": view.shadow.verdict.value,
            "rule": view.shadow.rule,
            "reason": view.shadow.reason,
            "policy": policy_label(view.shadow.policy),
        },
        "review": None
        if review is None
        else {
            "requestedByRule": review.requested_by_rule,
            "requestedReason": review.requested_reason,
            "requestedAt": iso(review.requested_at_ms),
            "holdReason": review.hold_reason,
            "decision": review.decision.value if review.decision else None,
            "reviewer": review.reviewer,
            "reviewerNote": review.reviewer_note,
            "reason": review.reason,
            "reviewedAt": iso(review.reviewed_at_ms),
        },
        "confirm": None
        if confirm is None
        else {
            "confirmedAt": iso(confirm.confirmed_at_ms),
            "flinksSessionId": confirm.flinks_session_id,
            "flinksReferenceId": confirm.flinks_reference_id,
            "recoveredFromDetails": confirm.recovered_from_details,
            "webhookToConfirmMs": confirm.webhook_to_confirm_ms,
        },
        "failureReason": view.failure_reason,
        "followUp": None
        if view.follow_up is None
        else {"queue": view.follow_up.queue.value, "due": iso(view.follow_up.due_ms)},
        "history": [_history_entry(record) for record in sorted(history, key=lambda r: r.at_ms)]
        or _history_from_item(view),
    }


def _history_entry(record: HistoryRecord) -> dict[str, Any]:
    return {
        "at": iso(record.at_ms),
        "change": record.change,
        "from": record.previous_status,
        "to": record.status,
        "by": record.by,
        "note": record.by_note,
        "reason": record.reason,
    }


def _history_from_item(view: GuaranteeView) -> list[dict[str, Any]]:
    """Without the audit trail (it lags the table by a moment): the item's own last change."""
    change = view.last_change
    if change is None:
        return []
    return [
        {
            "at": iso(change.at_ms),
            "change": change.kind.value if change.kind else None,
            "from": change.previous_status.value if change.previous_status else None,
            "to": view.status.value,
            "by": change.by,
            "note": change.by_note,
            "reason": change.reason,
        }
    ]


@dataclass(frozen=True)
class _FailedBatch:
    """The stream batch an OnFailure message names, and the reason a redrive records for it."""

    stream_arn: str
    shard_id: str
    start: int
    end: int
    reason: str

    @classmethod
    def of(cls, body: str) -> _FailedBatch:
        try:
            message = json.loads(body)
            batch = message["DDBStreamBatchInfo"]
            stream_arn, shard_id = str(batch["streamArn"]), str(batch["shardId"])
            start, end = int(batch["startSequenceNumber"]), int(batch["endSequenceNumber"])
        except (ValueError, KeyError, TypeError) as error:
            raise OperationError(f"not a DynamoDB stream failure record: {body[:200]!r}") from error
        context = message.get("requestContext")
        context = context if isinstance(context, dict) else {}
        reason = (
            f"dead-letter redrive: batch {start}..{end} ({context.get('condition', 'unknown')}, "
            f"{context.get('approximateInvokeCount', '?')} invokes, at {message.get('timestamp', '?')})"
        )
        return cls(stream_arn, shard_id, start, end, reason)


def _refs_of_dead_letter(
    resources: Any, repository: GuaranteeRepository, batch: _FailedBatch
) -> list[GuaranteeRef]:
    refs = _refs_from_stream(resources, batch)
    if refs is None:
        # The stream keeps records 24 h: past that, every unfinished guarantee is a candidate.
        refs = [item.ref for status in _UNFINISHED for item in repository.guarantees(status=status)]
    return list(dict.fromkeys(refs))


def _refs_from_stream(resources: Any, batch: _FailedBatch) -> list[GuaranteeRef] | None:
    """The guarantees of the batch's records, or None when the stream no longer has them."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    streams = resources.client("dynamodbstreams")
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=batch.stream_arn,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=str(batch.start),
        )["ShardIterator"]
        return _read_batch(streams, iterator, batch.start, batch.end)
    except ClientError:
        return None


def _read_batch(streams: Any, iterator: str | None, start: int, end: int) -> list[GuaranteeRef] | None:
    refs: list[GuaranteeRef] = []
    empty_pages = 0
    while iterator:
        response = streams.get_records(ShardIterator=iterator, Limit=1000)
        records: Iterable[Mapping[str, Any]] = response.get("Records", [])
        empty_pages = 0 if records else empty_pages + 1
        for record in records:
            sequence = int(record["dynamodb"]["SequenceNumber"])
            if sequence > end:
                return refs
            ref = ref_of_keys(record["dynamodb"]["Keys"])
            if sequence >= start and ref is not None:
                refs.append(ref)
        if empty_pages >= _EMPTY_STREAM_PAGES:
            return None  # never reached the batch's end: fall back to every unfinished guarantee
        iterator = response.get("NextShardIterator")
    return refs  # a closed shard ended: every record of the batch has been read


def _redrive_one(
    repository: GuaranteeRepository, ref: GuaranteeRef, *, reason: str, include_failed: bool
) -> RedriveResult:
    if repository.mark_redrive(ref, now_ms=now_ms(), reason=reason, include_failed=include_failed):
        return RedriveResult(ref.session_id, ref.guarantee_key, Resent.REDRIVEN)
    current = repository.get_guarantee(ref)
    if current is None:
        return RedriveResult(ref.session_id, ref.guarantee_key, Resent.MISSING)
    result = {
        GuaranteeStatus.CONFIRMED: Resent.ALREADY_CONFIRMED,
        GuaranteeStatus.FAILED: Resent.ALREADY_FAILED,
        GuaranteeStatus.REVIEW: Resent.IN_REVIEW,
    }.get(current.status, Resent.IN_PROGRESS)
    if current.confirm is not None:
        result = Resent.ALREADY_CONFIRMED
    return RedriveResult(ref.session_id, ref.guarantee_key, result)


def read_history(resources: Any, session_id: str) -> list[HistoryRecord]:
    """The session's history records from the audit table, oldest first (empty when the stack has none)."""
    from geft.audit import session_history  # noqa: PLC0415

    table = resources.outputs.get("AuditTableName")
    if not table:
        return []
    return session_history(resources.client("dynamodb"), table, session_id)
