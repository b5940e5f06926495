"""DynamoDB adapter for the guarantees table: the only module that knows item shapes.

Every state change is a single conditional write, so no read-then-write race can confirm twice.
Keys: ``pk`` is the session id (or ``QUARANTINE``), ``sk`` says which record of the session it is:
``GUARANTEE#<key>`` for a guarantee, ``SESSION`` for its final status, a body hash for quarantine.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import Enum
from typing import Any

from geft.errors import PersistenceError
from geft.models import (
    FollowUpQueue,
    GuaranteeOutcome,
    GuaranteeRef,
    GuaranteeStatus,
    RecordType,
    StoredGuarantee,
)

GUARANTEE_SK_PREFIX = "GUARANTEE#"
SESSION_SK = "SESSION"
QUARANTINE_PK = "QUARANTINE"
OPS_QUEUE_INDEX = "OpsQueueIndex"
# botocore Config for the table's client: fail fast (the receiver answers Flinks in milliseconds) and
# let the SDK retry twice. Whoever injects a client builds it with these too.
DYNAMODB_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 1,
    "read_timeout": 2,
    "retries": {"mode": "standard", "max_attempts": 3},
}
# Every answered guarantee joins the RECONCILE queue: one index partition key would cap the table's
# writes near 1,000/s (a throttled GSI throttles the table), so each queue is spread over shards.
OPS_QUEUE_SHARDS = 16
_CONDITION_FAILED = "ConditionalCheckFailedException"
_MS_PER_DAY = 86_400_000


class ClaimResult(Enum):
    CLAIMED = "claimed"
    ALREADY_DONE = "already-done"  # CONFIRMED or FAILED: nothing left to do
    AWAITING_REVIEW = "awaiting-review"  # an operator (or the review timeout) must decide first
    HELD = "held"  # another invocation holds a live lease
    MISSING = "missing"


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    guarantee: StoredGuarantee | None = None
    # True when an earlier attempt may already have sent the confirm: read /details before sending.
    confirm_may_have_been_sent: bool = False
    lease_expires_at_ms: int = 0


class GuaranteeRepository:
    def __init__(self, table_name: str, *, retention_days: int, client: Any | None = None) -> None:
        self._table_name = table_name
        self._retention_ms = retention_days * _MS_PER_DAY
        self._client = client
        self._client_lock = threading.Lock()

    # -- receiver ---------------------------------------------------------------------------------

    def insert_guarantee(
        self, ref: GuaranteeRef, *, raw_body: str, received_at_ms: int, event_when: str | None
    ) -> bool:
        """Store a new guarantee as RECEIVED. False when it was already stored (a redelivery)."""
        item = {
            "pk": _s(ref.session_id),
            "sk": _s(GUARANTEE_SK_PREFIX + ref.guarantee_key),
            "recordType": _s(RecordType.GUARANTEE),
            "sessionId": _s(ref.session_id),
            "guaranteeKey": _s(ref.guarantee_key),
            "status": _s(GuaranteeStatus.RECEIVED),
            "rawBody": _s(raw_body),
            "receivedAtMs": _n(received_at_ms),
            "updatedAtMs": _n(received_at_ms),
            "expiresAt": _n(self._expiry_epoch_seconds(received_at_ms)),
        }
        if event_when:
            item["eventWhen"] = _s(event_when)
        return self._put_once(item)

    def record_session_status(
        self,
        session_id: str,
        *,
        status: str,
        status_details: str | None,
        raw_body: str,
        received_at_ms: int,
        source: str,
    ) -> bool:
        """Record a session's final status once. False when one was already recorded."""
        names = {"#finalStatus": "finalStatus"}
        values: dict[str, Any] = {
            ":recordType": _s(RecordType.SESSION),
            ":sessionId": _s(session_id),
            ":status": _s(status),
            ":receivedAt": _n(received_at_ms),
            ":source": _s(source),
            ":rawBody": _s(raw_body),
            ":expiresAt": _n(self._expiry_epoch_seconds(received_at_ms)),
        }
        assignments = [
            "recordType = :recordType",
            "sessionId = :sessionId",
            "#finalStatus = :status",
            "finalStatusAtMs = :receivedAt",
            "finalStatusSource = :source",
            "statusRawBody = :rawBody",
            "expiresAt = :expiresAt",
        ]
        if status_details:
            values[":details"] = _s(status_details)
            assignments.append("finalStatusDetails = :details")
        return self._update_once(
            key={"pk": _s(session_id), "sk": _s(SESSION_SK)},
            update="SET " + ", ".join(assignments),
            condition="attribute_not_exists(#finalStatus)",
            names=names,
            values=values,
        )

    def quarantine(
        self, raw_body: bytes, *, reason: str, session_id: str | None, received_at_ms: int
    ) -> bool:
        """Keep a signed but unexpected body for an operator. False when the same body is already kept."""
        digest = hashlib.sha256(raw_body).hexdigest()
        item: dict[str, Any] = {
            "pk": _s(QUARANTINE_PK),
            "sk": _s(digest),
            "recordType": _s(RecordType.QUARANTINE),
            "reason": _s(reason),
            "rawBodyBytes": {"B": raw_body},
            "receivedAtMs": _n(received_at_ms),
            "expiresAt": _n(self._expiry_epoch_seconds(received_at_ms)),
        }
        if session_id:
            item["sessionId"] = _s(session_id)
        return self._put_once(item)

    # -- processor --------------------------------------------------------------------------------

    def claim(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, lease_until_ms: int) -> Claim:
        """RECEIVED (or DECIDING with an expired lease) -> DECIDING under our lease, in one write."""
        try:
            response = self._call(
                "update_item",
                TableName=self._table_name,
                Key=_guarantee_key(ref),
                UpdateExpression=(
                    "SET #status = :deciding, claimId = :claimId, leaseExpiresAtMs = :lease, "
                    "attempts = if_not_exists(attempts, :zero) + :one, updatedAtMs = :now"
                ),
                ConditionExpression=(
                    "#status IN (:received, :reviewed, :redrive) "
                    "OR (#status = :deciding AND leaseExpiresAtMs < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":deciding": _s(GuaranteeStatus.DECIDING),
                    ":received": _s(GuaranteeStatus.RECEIVED),
                    ":reviewed": _s(GuaranteeStatus.REVIEWED),
                    ":redrive": _s(GuaranteeStatus.REDRIVE),
                    ":claimId": _s(claim_id),
                    ":lease": _n(lease_until_ms),
                    ":now": _n(now_ms),
                    ":zero": _n(0),
                    ":one": _n(1),
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except _ConditionFailedError as failed:
            return _claim_refused(failed.item)
        old = _to_guarantee(response.get("Attributes", {}))
        if old is None:  # pragma: no cover - the condition requires an existing item
            return Claim(ClaimResult.MISSING)
        claimed = replace(
            old,
            status=GuaranteeStatus.DECIDING,
            attempts=old.attempts + 1,
            lease_expires_at_ms=lease_until_ms,
            claim_id=claim_id,
        )
        # A DECIDING item whose lease ran out belonged to an attempt that crashed or gave up
        # mid-way: it may have reached Flinks' confirm before dying.
        uncertain = old.status is GuaranteeStatus.DECIDING or old.confirm_attempted
        return Claim(ClaimResult.CLAIMED, claimed, confirm_may_have_been_sent=uncertain)

    def release(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, confirm_attempted: bool) -> None:
        """Give a claim back after a transient failure so the stream's retry can take it at once."""
        status = GuaranteeStatus.DECIDING if confirm_attempted else GuaranteeStatus.RECEIVED
        values: dict[str, Any] = {
            ":status": _s(status),
            ":claimId": _s(claim_id),
            ":expired": _n(0),
            ":now": _n(now_ms),
        }
        update = "SET #status = :status, leaseExpiresAtMs = :expired, updatedAtMs = :now REMOVE claimId"
        if confirm_attempted:
            update = update.replace("updatedAtMs = :now", "updatedAtMs = :now, confirmAttempted = :true")
            values[":true"] = {"BOOL": True}
        self._conditional_update(ref, update, values)

    def finish(self, ref: GuaranteeRef, *, claim_id: str, outcome: GuaranteeOutcome, now_ms: int) -> bool:
        """Write the terminal outcome if we still hold the claim. False when the claim was lost."""
        values: dict[str, Any] = {":status": _s(outcome.status), ":claimId": _s(claim_id), ":now": _n(now_ms)}
        assignments = ["#status = :status", "updatedAtMs = :now", "leaseExpiresAtMs = :zero"]
        values[":zero"] = _n(0)
        for attribute, value in _outcome_attributes(outcome).items():
            placeholder = ":" + attribute
            values[placeholder] = value
            assignments.append(f"{attribute} = {placeholder}")
        removals = ["claimId"]
        if outcome.follow_up_due_ms is not None:
            queue = (
                FollowUpQueue.REVIEW if outcome.status is GuaranteeStatus.REVIEW else FollowUpQueue.RECONCILE
            )
            values.update({":queue": _s(_queue_key(queue, ref)), ":due": _n(outcome.follow_up_due_ms)})
            assignments += ["opsQueue = :queue", "opsDueAtMs = :due"]
        else:
            removals += ["opsQueue", "opsDueAtMs"]
        update = "SET " + ", ".join(assignments) + " REMOVE " + ", ".join(removals)
        return self._conditional_update(ref, update, values)

    # -- operators and scheduled jobs -------------------------------------------------------------

    def record_review_decision(
        self, ref: GuaranteeRef, *, decision: str, reviewer: str, reason: str, now_ms: int
    ) -> bool:
        """REVIEW -> REVIEWED with who decided and why. False when the guarantee is not in review."""
        return self._update_once(
            key=_guarantee_key(ref),
            update=(
                "SET #status = :reviewed, reviewDecision = :decision, reviewer = :reviewer, "
                "reviewReason = :reason, reviewedAtMs = :now, updatedAtMs = :now REMOVE opsQueue, opsDueAtMs"
            ),
            condition="#status = :review",
            names={"#status": "status"},
            values={
                ":reviewed": _s(GuaranteeStatus.REVIEWED),
                ":review": _s(GuaranteeStatus.REVIEW),
                ":decision": _s(decision),
                ":reviewer": _s(reviewer),
                ":reason": _s(reason),
                ":now": _n(now_ms),
            },
        )

    def mark_redrive(self, ref: GuaranteeRef, *, now_ms: int, include_failed: bool = False) -> bool:
        """Send a guarantee through claim -> decide -> confirm again. Only unfinished ones (and FAILED
        when asked); always flagged so the processor reads /details before any confirm."""
        statuses = [GuaranteeStatus.RECEIVED, GuaranteeStatus.REDRIVE]
        if include_failed:
            statuses.append(GuaranteeStatus.FAILED)
        placeholders = {f":s{index}": _s(status) for index, status in enumerate(statuses)}
        return self._update_once(
            key=_guarantee_key(ref),
            update=(
                "SET #status = :redrive, confirmAttempted = :true, redriveRequestedAtMs = :now, "
                "updatedAtMs = :now REMOVE failureReason, opsQueue, opsDueAtMs"
            ),
            condition=(
                f"#status IN ({', '.join(placeholders)}) OR (#status = :deciding AND leaseExpiresAtMs < :now)"
            ),
            names={"#status": "status"},
            values={
                **placeholders,
                ":redrive": _s(GuaranteeStatus.REDRIVE),
                ":deciding": _s(GuaranteeStatus.DECIDING),
                ":true": {"BOOL": True},
                ":now": _n(now_ms),
            },
        )

    def due_follow_ups(self, queue: FollowUpQueue, *, now_ms: int, limit: int = 100) -> list[GuaranteeRef]:
        """Guarantees waiting in ``queue`` whose time has come, oldest first (up to ``limit``)."""
        due: list[tuple[int, GuaranteeRef]] = []
        for shard in range(OPS_QUEUE_SHARDS):
            response = self._call(
                "query",
                TableName=self._table_name,
                IndexName=OPS_QUEUE_INDEX,
                KeyConditionExpression="opsQueue = :queue AND opsDueAtMs <= :now",
                ExpressionAttributeValues={":queue": _s(f"{queue}#{shard:02d}"), ":now": _n(now_ms)},
                Limit=limit,
            )
            due += [
                (int(item["opsDueAtMs"]["N"]), _ref_from_keys(item)) for item in response.get("Items", [])
            ]
        due.sort(key=lambda entry: entry[0])
        return [ref for _, ref in due[:limit]]

    def reschedule_follow_up(self, ref: GuaranteeRef, *, queue: FollowUpQueue, due_ms: int) -> int | None:
        """Look again at ``due_ms``; returns how many times it has been put off (None: not queued)."""
        try:
            response = self._call(
                "update_item",
                TableName=self._table_name,
                Key=_guarantee_key(ref),
                UpdateExpression="SET opsDueAtMs = :due ADD followUpAttempts :one",
                ConditionExpression="opsQueue = :queue",
                ExpressionAttributeValues={
                    ":queue": _s(_queue_key(queue, ref)),
                    ":due": _n(due_ms),
                    ":one": _n(1),
                },
                ReturnValues="UPDATED_NEW",
            )
        except _ConditionFailedError:
            return None
        return int(response["Attributes"]["followUpAttempts"]["N"])

    def clear_follow_up(self, ref: GuaranteeRef, *, queue: FollowUpQueue) -> bool:
        return self._update_once(
            key=_guarantee_key(ref),
            update="REMOVE opsQueue, opsDueAtMs",
            condition="opsQueue = :queue",
            names={},
            values={":queue": _s(_queue_key(queue, ref))},
        )

    def session_status(self, session_id: str) -> str | None:
        """The final status recorded for the session (by webhook or reconciliation), if any."""
        response = self._call(
            "get_item",
            TableName=self._table_name,
            Key={"pk": _s(session_id), "sk": _s(SESSION_SK)},
            ConsistentRead=True,
        )
        status = response.get("Item", {}).get("finalStatus", {}).get("S")
        return str(status) if status else None

    def session_records(self, session_id: str) -> list[dict[str, Any]]:
        """Every record of a session (guarantees and final status), as plain Python values."""
        items = self._paginate(
            "query",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(session_id)},
            ConsistentRead=True,
        )
        return [_plain(item) for item in items]

    def guarantees(self, *, status: str | None = None, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Guarantee records by status and received time: a scan, for operators, never on a hot path."""
        conditions = ["recordType = :guarantee"]
        values: dict[str, Any] = {":guarantee": _s(RecordType.GUARANTEE)}
        if status:
            conditions.append("#status = :status")
            values[":status"] = _s(status)
        if since_ms is not None:
            conditions.append("receivedAtMs >= :since")
            values[":since"] = _n(since_ms)
        request: dict[str, Any] = {
            "FilterExpression": " AND ".join(conditions),
            "ExpressionAttributeValues": values,
        }
        if status:
            request["ExpressionAttributeNames"] = {"#status": "status"}
        return [_plain(item) for item in self._paginate("scan", **request)]

    def quarantined_bodies(self, session_id: str) -> list[bytes]:
        """Signed bodies kept in quarantine for this session, oldest first."""
        items = self._paginate(
            "query",
            KeyConditionExpression="pk = :pk",
            FilterExpression="sessionId = :session",
            ExpressionAttributeValues={":pk": _s(QUARANTINE_PK), ":session": _s(session_id)},
        )
        items.sort(key=lambda item: int(item.get("receivedAtMs", {}).get("N", "0")))
        return [bytes(item["rawBodyBytes"]["B"]) for item in items if "rawBodyBytes" in item]

    def _paginate(self, operation: str, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            response = self._call(operation, TableName=self._table_name, **request)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def get_guarantee(self, ref: GuaranteeRef) -> StoredGuarantee | None:
        response = self._call(
            "get_item", TableName=self._table_name, Key=_guarantee_key(ref), ConsistentRead=True
        )
        return _to_guarantee(response.get("Item", {}))

    # -- plumbing ---------------------------------------------------------------------------------

    def _conditional_update(self, ref: GuaranteeRef, update: str, values: dict[str, Any]) -> bool:
        return self._update_once(
            key=_guarantee_key(ref),
            update=update,
            condition="claimId = :claimId",
            names={"#status": "status"},
            values=values,
        )

    def _put_once(self, item: dict[str, Any]) -> bool:
        try:
            self._call(
                "put_item",
                TableName=self._table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except _ConditionFailedError:
            return False
        return True

    def _update_once(
        self,
        *,
        key: dict[str, Any],
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> bool:
        request: dict[str, Any] = {
            "TableName": self._table_name,
            "Key": key,
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            self._call("update_item", **request)
        except _ConditionFailedError:
            return False
        return True

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with boto3

        try:
            response: dict[str, Any] = getattr(self._dynamodb(), operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == _CONDITION_FAILED:
                raise _ConditionFailedError(error.response.get("Item", {})) from None
            raise PersistenceError(f"DynamoDB {operation} failed: {code or 'unknown error'}") from error
        except BotoCoreError as error:
            raise PersistenceError(f"DynamoDB {operation} failed: {type(error).__name__}") from error
        return response

    def _dynamodb(self) -> Any:
        # The processor's pool threads all reach here on a cold start; creating a client from boto3's
        # shared default session is not thread-safe, so one thread creates it, from its own session.
        with self._client_lock:
            if self._client is None:
                import boto3  # noqa: PLC0415 - created on first use, once per container
                from botocore.config import Config  # noqa: PLC0415

                self._client = boto3.session.Session().client(
                    "dynamodb",
                    config=Config(**DYNAMODB_CLIENT_CONFIG),
                )
            return self._client

    def _expiry_epoch_seconds(self, received_at_ms: int) -> int:
        return (received_at_ms + self._retention_ms) // 1000


class _ConditionFailedError(Exception):
    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__("condition failed")
        self.item = item


def _claim_refused(item: dict[str, Any]) -> Claim:
    current = _to_guarantee(item)
    if current is None:
        return Claim(ClaimResult.MISSING)
    if current.status in (GuaranteeStatus.CONFIRMED, GuaranteeStatus.FAILED):
        return Claim(ClaimResult.ALREADY_DONE, current)
    if current.status is GuaranteeStatus.REVIEW:
        return Claim(ClaimResult.AWAITING_REVIEW, current)
    return Claim(ClaimResult.HELD, current, lease_expires_at_ms=current.lease_expires_at_ms)


def _outcome_attributes(outcome: GuaranteeOutcome) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    optional_strings = {
        "decision": outcome.decision,
        "decisionRule": outcome.rule,
        "flinksSessionId": outcome.flinks_session_id,
        "flinksReferenceId": outcome.flinks_reference_id,
        "failureReason": outcome.failure_reason,
    }
    optional_numbers = {
        "decidedAtMs": outcome.decided_at_ms,
        "confirmedAtMs": outcome.confirmed_at_ms,
        "webhookToConfirmMs": outcome.webhook_to_confirm_ms,
    }
    attributes.update({name: _s(value) for name, value in optional_strings.items() if value is not None})
    attributes.update({name: _n(value) for name, value in optional_numbers.items() if value is not None})
    if outcome.inputs:
        attributes["decisionInputs"] = {"M": {k: _attribute(v) for k, v in outcome.inputs.items()}}
    if outcome.recovered_from_details:
        attributes["recoveredFromDetails"] = {"BOOL": True}
    if outcome.status is GuaranteeStatus.REVIEW and outcome.rule and outcome.decided_at_ms is not None:
        # Kept apart: the final write after the review replaces decision and decisionRule.
        attributes["reviewRequestedByRule"] = _s(outcome.rule)
        attributes["reviewRequestedAtMs"] = _n(outcome.decided_at_ms)
    return attributes


def _to_guarantee(item: Mapping[str, Any]) -> StoredGuarantee | None:
    if not item or "sessionId" not in item or "guaranteeKey" not in item:
        return None
    return StoredGuarantee(
        ref=GuaranteeRef(item["sessionId"]["S"], item["guaranteeKey"]["S"]),
        status=GuaranteeStatus(item["status"]["S"]),
        raw_body=item.get("rawBody", {}).get("S", ""),
        received_at_ms=int(item.get("receivedAtMs", {}).get("N", "0")),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        confirm_attempted=bool(item.get("confirmAttempted", {}).get("BOOL", False)),
        lease_expires_at_ms=int(item.get("leaseExpiresAtMs", {}).get("N", "0")),
        claim_id=item.get("claimId", {}).get("S"),
        review_decision=item.get("reviewDecision", {}).get("S"),
        reviewer=item.get("reviewer", {}).get("S"),
        review_reason=item.get("reviewReason", {}).get("S"),
    )


def _queue_key(queue: FollowUpQueue, ref: GuaranteeRef) -> str:
    return f"{queue}#{zlib.crc32(ref.session_id.encode()) % OPS_QUEUE_SHARDS:02d}"


def _ref_from_keys(item: Mapping[str, Any]) -> GuaranteeRef:
    return GuaranteeRef(item["pk"]["S"], item["sk"]["S"].removeprefix(GUARANTEE_SK_PREFIX))


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415 - operators' reads only

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


def _guarantee_key(ref: GuaranteeRef) -> dict[str, Any]:
    return {"pk": _s(ref.session_id), "sk": _s(GUARANTEE_SK_PREFIX + ref.guarantee_key)}


def _attribute(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return _n(value)
    if value is None:
        return {"NULL": True}
    return _s(str(value))


def _s(value: str) -> dict[str, str]:
    return {"S": str(value)}


def _n(value: int | Decimal) -> dict[str, str]:
    return {"N": str(value)}
