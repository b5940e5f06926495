"""DynamoDB adapter for the guarantees table: every state change is one conditional write.

No read-then-write race can confirm twice: each transition states, in its condition, the states it may
start from. Every write also records what it did, who did it, when and from which status (the
``change*`` attributes); the audit trail keeps one history record per write. Item shapes are items.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from geft.aws import AwsClients, ClientSettings, provider
from geft.errors import PersistenceError
from geft.items import (
    OPS_QUEUE_INDEX,
    QUARANTINE_PK,
    Attr,
    AttributeValue,
    GuaranteeView,
    Item,
    QuarantineView,
    SessionView,
    attribute,
    guarantee_key,
    guarantee_view,
    n,
    quarantine_key,
    quarantine_view,
    queue_key,
    queue_shards,
    ref_of_keys,
    s,
    session_key,
    session_view,
)
from geft.models import (
    CLAIMABLE_STATUSES,
    TERMINAL_STATUSES,
    Actor,
    ChangeKind,
    Decision,
    FollowUpQueue,
    GuaranteeOutcome,
    GuaranteeRef,
    GuaranteeStatus,
    RecordType,
    Verdict,
)
from geft.ports import Claim, ClaimResult, Release
from geft.settings import TableSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import ReturnValueType
    from mypy_boto3_dynamodb.type_defs import (
        QueryInputTypeDef,
        QueryOutputTypeDef,
        ScanInputTypeDef,
        ScanOutputTypeDef,
        UpdateItemInputTypeDef,
        UpdateItemOutputTypeDef,
    )

# botocore Config for the table's client: fail fast (the receiver answers Flinks in milliseconds) and let
# the SDK retry (``max_attempts`` counts retries: up to 4 attempts in all). Every composition root gives
# its AwsClients these; whoever injects a ready client builds it with these too.
DYNAMODB_CLIENT_CONFIG: ClientSettings = {
    "connect_timeout": 1,
    "read_timeout": 2,
    "retries": {"mode": "standard", "max_attempts": 3},
}
DEFAULT_STUCK_AFTER_SECONDS = 900
# An operator action, or the sweep, takes over a DECIDING item only once its lease has been over for this
# long: a laptop's clock may be minutes off, and the functions honour the lease by their own clocks.
OPERATOR_LEASE_MARGIN_MS = 10 * 60 * 1000
_CONDITION_FAILED = "ConditionalCheckFailedException"
_MS_PER_DAY = 86_400_000
_REASON_MAX_CHARS = 500
_T = TypeVar("_T")


@dataclass(frozen=True)
class Insertion:
    stored: bool
    existing_content_sha256: str | None = None  # when not stored: the stored guarantee's fingerprint


class GuaranteeRepository:
    """Implements ``geft.ports.GuaranteeStore`` (the processor's port) and the other writers' operations."""

    def __init__(
        self,
        table_name: str,
        *,
        retention_days: int,
        actor: Actor,
        stuck_after_seconds: int = DEFAULT_STUCK_AFTER_SECONDS,
        client: DynamoDBClient | AwsClients,
    ) -> None:
        """``client``: the container's ``AwsClients`` (the client is made at the first call, inside this
        adapter's error mapping), or a ready DynamoDB client."""
        self._table_name = table_name
        self._retention_ms = retention_days * _MS_PER_DAY
        self._actor = actor
        self._stuck_after_ms = stuck_after_seconds * 1000
        self._dynamodb = provider(client, AwsClients.dynamodb)

    @classmethod
    def for_function(
        cls, table: TableSettings, *, client: DynamoDBClient | AwsClients | None = None
    ) -> GuaranteeRepository:
        """A function's repository, acting as the function; ``client`` defaults to a new container's
        ``AwsClients`` with the DynamoDB retry settings."""
        return cls(
            table.table_name,
            retention_days=table.retention_days,
            actor=Actor.function(table.function_name),
            stuck_after_seconds=table.stuck_after_seconds,
            client=AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG}) if client is None else client,
        )

    # -- receiver ---------------------------------------------------------------------------------

    def insert_guarantee(
        self,
        ref: GuaranteeRef,
        *,
        raw_body: str,
        content_sha256: str,
        received_at_ms: int,
        event_when: str | None,
        change: ChangeKind = ChangeKind.RECEIVED,
        reason: str | None = None,
    ) -> Insertion:
        """Store a new guarantee as RECEIVED (queued for the sweep until it is answered)."""
        item: Item = {
            **guarantee_key(ref),
            Attr.RECORD_TYPE: s(RecordType.GUARANTEE),
            Attr.SESSION_ID: s(ref.session_id),
            Attr.GUARANTEE_KEY: s(ref.guarantee_key),
            Attr.STATUS: s(GuaranteeStatus.RECEIVED),
            Attr.RAW_BODY: s(raw_body),
            Attr.CONTENT_SHA256: s(content_sha256),
            Attr.RECEIVED_AT_MS: n(received_at_ms),
            Attr.UPDATED_AT_MS: n(received_at_ms),
            Attr.EXPIRES_AT: n(self._expiry_epoch_seconds(received_at_ms)),
            Attr.OPS_QUEUE: s(queue_key(FollowUpQueue.SWEEP, ref.session_id)),
            Attr.OPS_DUE_AT_MS: n(received_at_ms + self._stuck_after_ms),
            **self._change_attributes(change, received_at_ms, reason),
        }
        if event_when:
            item[Attr.EVENT_WHEN] = s(event_when)
        try:
            self._put_new(item)
        except _ConditionFailedError as failed:
            existing = failed.item.get(Attr.CONTENT_SHA256, {}).get("S")
            return Insertion(stored=False, existing_content_sha256=existing)
        return Insertion(stored=True)

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
        update = _Update()
        update.set(Attr.RECORD_TYPE, s(RecordType.SESSION))
        update.set(Attr.SESSION_ID, s(session_id))
        update.set(Attr.FINAL_STATUS, s(status))
        update.set(Attr.FINAL_STATUS_AT_MS, n(received_at_ms))
        update.set(Attr.FINAL_STATUS_SOURCE, s(source))
        update.set(Attr.STATUS_RAW_BODY, s(raw_body))
        update.set(Attr.EXPIRES_AT, n(self._expiry_epoch_seconds(received_at_ms)))
        if status_details:
            update.set(Attr.FINAL_STATUS_DETAILS, s(status_details))
        self._set_change(update, ChangeKind.FINAL_STATUS, received_at_ms, f"{status} ({source})")
        update.condition(f"attribute_not_exists({update.name(Attr.FINAL_STATUS)})")
        return self._update_if(session_key(session_id), update)

    def quarantine(
        self, raw_body: bytes, *, reason: str, session_id: str | None, received_at_ms: int
    ) -> bool:
        """Keep a signed but unexpected body for an operator. False when the same body is already kept."""
        item: Item = {
            **quarantine_key(hashlib.sha256(raw_body).hexdigest()),
            Attr.RECORD_TYPE: s(RecordType.QUARANTINE),
            Attr.QUARANTINE_REASON: s(reason),
            Attr.RAW_BODY_BYTES: {"B": raw_body},
            Attr.RECEIVED_AT_MS: n(received_at_ms),
            Attr.EXPIRES_AT: n(self._expiry_epoch_seconds(received_at_ms)),
            **self._change_attributes(ChangeKind.QUARANTINED, received_at_ms, reason),
        }
        if session_id:
            item[Attr.SESSION_ID] = s(session_id)
        try:
            self._put_new(item)
        except _ConditionFailedError:
            return False
        return True

    # -- processor (geft.ports.GuaranteeStore) ------------------------------------------------------

    def claim(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, lease_until_ms: int) -> Claim:
        """RECEIVED, REVIEWED, REDRIVE (or DECIDING with an expired lease) -> DECIDING under our lease.

        Never an item that records a confirm, and never before a possibly applied confirm has settled.
        """
        update = _Update()
        settles = update.name(Attr.CONFIRM_SETTLES_AT_MS)
        now = update.value(n(now_ms))
        update.condition(
            f"{update.unconfirmed_and_unleased(CLAIMABLE_STATUSES, lapsed_before=now)} "
            f"AND (attribute_not_exists({settles}) OR {settles} <= {now})"
        )
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        update.set(Attr.STATUS, s(GuaranteeStatus.DECIDING))
        update.set(Attr.CLAIM_ID, s(claim_id))
        update.set(Attr.LEASE_EXPIRES_AT_MS, n(lease_until_ms))
        update.increment(Attr.ATTEMPTS)
        update.set(Attr.UPDATED_AT_MS, n(now_ms))
        update.remove(Attr.CONFIRM_SETTLES_AT_MS)
        self._set_change(update, ChangeKind.CLAIMED, now_ms, None)
        try:
            old = self._update_returning_old(guarantee_key(ref), update)
        except _ConditionFailedError as failed:
            return claim_refused(guarantee_view(failed.item) if failed.item else None, now_ms)
        previous = guarantee_view(old)
        if previous is None:  # pragma: no cover - the condition requires an existing guarantee
            return Claim(ClaimResult.MISSING)
        claimed = replace(
            previous,
            status=GuaranteeStatus.DECIDING,
            attempts=previous.attempts + 1,
            lease_expires_at_ms=lease_until_ms,
            claim_id=claim_id,
        )
        # A DECIDING item whose lease ran out belonged to an attempt that crashed or gave up mid-way: it
        # may have reached Flinks' confirm before dying. confirmAttempted says so explicitly.
        uncertain = previous.status is GuaranteeStatus.DECIDING or previous.confirm_attempted
        return Claim(ClaimResult.CLAIMED, claimed, confirm_may_have_been_sent=uncertain)

    def release(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, release: Release) -> bool:
        """Give a claim back after a transient failure. False when the claim was no longer ours."""
        update = self._holding(claim_id)
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        status = GuaranteeStatus.DECIDING if release.confirm_attempted else GuaranteeStatus.RECEIVED
        update.set(Attr.STATUS, s(status))
        update.set(Attr.LEASE_EXPIRES_AT_MS, n(0))
        update.set(Attr.UPDATED_AT_MS, n(now_ms))
        update.remove(Attr.CLAIM_ID)
        if release.confirm_attempted:
            update.set(Attr.CONFIRM_ATTEMPTED, {"BOOL": True})
        if release.settle_until_ms is not None:
            update.set(Attr.CONFIRM_SETTLES_AT_MS, n(release.settle_until_ms))
        self._set_change(update, ChangeKind.RELEASED, now_ms, release.reason)
        return self._update_if(guarantee_key(ref), update)

    def finish(self, ref: GuaranteeRef, *, claim_id: str, outcome: GuaranteeOutcome, now_ms: int) -> bool:
        """Write the outcome if we still hold the claim. False when the claim was lost."""
        update = self._holding(claim_id)
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        update.set(Attr.STATUS, s(outcome.status))
        update.set(Attr.UPDATED_AT_MS, n(now_ms))
        update.set(Attr.LEASE_EXPIRES_AT_MS, n(0))
        update.remove(Attr.CLAIM_ID)
        _write_outcome(update, outcome)
        if outcome.follow_up is not None:
            update.set(Attr.OPS_QUEUE, s(queue_key(outcome.follow_up.queue, ref.session_id)))
            update.set(Attr.OPS_DUE_AT_MS, n(outcome.follow_up.due_ms))
        else:
            update.remove(Attr.OPS_QUEUE)
            update.remove(Attr.OPS_DUE_AT_MS)
        reason = outcome.failure_reason or outcome.hold_reason
        self._set_change(update, outcome.change, now_ms, reason)
        return self._update_if(guarantee_key(ref), update)

    def session_guarantees(self, session_id: str) -> list[GuaranteeView]:
        return self.session_records(session_id)[0]

    # -- operators and scheduled jobs -------------------------------------------------------------

    def record_review_decision(
        self,
        ref: GuaranteeRef,
        *,
        verdict: Verdict,
        reason: str,
        now_ms: int,
        only_from: FollowUpQueue | None = None,
    ) -> bool:
        """REVIEW -> REVIEWED with who decided and why. False when the guarantee is not in review (or,
        with ``only_from``, not waiting in that queue: the review timeout never decides a hold)."""
        if verdict is Verdict.REVIEW:
            raise ValueError("a review decision is accept or reject")
        update = _Update()
        status = update.name(Attr.STATUS)
        condition = f"{status} = {update.value(s(GuaranteeStatus.REVIEW))}"
        if only_from is not None:
            queue = update.value(s(queue_key(only_from, ref.session_id)))
            condition += f" AND {update.name(Attr.OPS_QUEUE)} = {queue}"
        update.condition(condition)
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        update.set(Attr.STATUS, s(GuaranteeStatus.REVIEWED))
        update.set(Attr.REVIEW_DECISION, s(verdict))
        update.set(Attr.REVIEWER, s(self._actor.identity))
        if self._actor.note:
            update.set(Attr.REVIEWER_NOTE, s(self._actor.note))
        update.set(Attr.REVIEW_REASON, s(reason[:_REASON_MAX_CHARS]))
        update.set(Attr.REVIEWED_AT_MS, n(now_ms))
        update.set(Attr.UPDATED_AT_MS, n(now_ms))
        self._queue_for_sweep(update, ref, now_ms)
        self._set_change(update, ChangeKind.REVIEWED, now_ms, f"{verdict}: {reason}")
        return self._update_if(guarantee_key(ref), update)

    def mark_redrive(
        self, ref: GuaranteeRef, *, now_ms: int, reason: str, include_failed: bool = False
    ) -> bool:
        """Send a guarantee back through claim -> decide -> confirm, flagged so the processor reads
        /details before any confirm. Only unfinished ones (and FAILED when asked); a DECIDING item only
        once its lease has been over for ``OPERATOR_LEASE_MARGIN_MS`` by our clock."""
        update = _Update()
        statuses = set(CLAIMABLE_STATUSES)
        if include_failed:
            statuses.add(GuaranteeStatus.FAILED)
        stale = update.value(n(now_ms - OPERATOR_LEASE_MARGIN_MS))
        update.condition(update.unconfirmed_and_unleased(statuses, lapsed_before=stale))
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        update.set(Attr.STATUS, s(GuaranteeStatus.REDRIVE))
        update.set(Attr.CONFIRM_ATTEMPTED, {"BOOL": True})
        update.set(Attr.REDRIVE_REQUESTED_AT_MS, n(now_ms))
        update.set(Attr.UPDATED_AT_MS, n(now_ms))
        update.remove(Attr.CLAIM_ID)
        self._queue_for_sweep(update, ref, now_ms)
        self._set_change(update, ChangeKind.REDRIVEN, now_ms, reason)
        return self._update_if(guarantee_key(ref), update)

    def due_follow_ups(self, queue: FollowUpQueue, *, now_ms: int, limit: int = 100) -> list[GuaranteeRef]:
        """Guarantees waiting in ``queue`` whose time has come, oldest first (up to ``limit``)."""
        due: list[tuple[int, GuaranteeRef]] = []
        for partition in queue_shards(queue):
            response = self._query_page(
                {
                    "TableName": self._table_name,
                    "IndexName": OPS_QUEUE_INDEX,
                    "KeyConditionExpression": "#queue = :queue AND #due <= :now",
                    "ExpressionAttributeNames": {"#queue": Attr.OPS_QUEUE, "#due": Attr.OPS_DUE_AT_MS},
                    "ExpressionAttributeValues": {":queue": s(partition), ":now": n(now_ms)},
                    "Limit": limit,
                }
            )
            for item in response["Items"]:
                ref = ref_of_keys(item)
                if ref is not None:
                    due.append((int(item[Attr.OPS_DUE_AT_MS]["N"]), ref))
        due.sort(key=lambda entry: entry[0])
        return [ref for _, ref in due[:limit]]

    def queue_depth(self, queue: FollowUpQueue) -> tuple[int, int | None]:
        """How many guarantees wait in ``queue``, and the earliest due time among them."""
        count, earliest = 0, None
        for partition in queue_shards(queue):
            request: QueryInputTypeDef = {
                "TableName": self._table_name,
                "IndexName": OPS_QUEUE_INDEX,
                "KeyConditionExpression": "#queue = :queue",
                "ExpressionAttributeNames": {"#queue": Attr.OPS_QUEUE},
                "ExpressionAttributeValues": {":queue": s(partition)},
            }
            for item in self._query(request):
                count += 1
                due = int(item[Attr.OPS_DUE_AT_MS]["N"])
                earliest = due if earliest is None else min(earliest, due)
        return count, earliest

    def reschedule_follow_up(
        self, ref: GuaranteeRef, *, queue: FollowUpQueue, due_ms: int, now_ms: int, reason: str
    ) -> int | None:
        """Look again at ``due_ms``; returns how many times it has been put off (None: not queued)."""
        update = _Update()
        update.condition(
            f"{update.name(Attr.OPS_QUEUE)} = {update.value(s(queue_key(queue, ref.session_id)))}"
        )
        update.set(Attr.OPS_DUE_AT_MS, n(due_ms))
        update.increment(Attr.FOLLOW_UP_ATTEMPTS)
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        self._set_change(update, ChangeKind.RECONCILE_PENDING, now_ms, reason)
        try:
            response = self._update(guarantee_key(ref), update, return_values="UPDATED_NEW")
        except _ConditionFailedError:
            return None
        return int(response["Attributes"][Attr.FOLLOW_UP_ATTEMPTS]["N"])

    def clear_follow_up(self, ref: GuaranteeRef, *, queue: FollowUpQueue, now_ms: int, reason: str) -> bool:
        update = _Update()
        update.condition(
            f"{update.name(Attr.OPS_QUEUE)} = {update.value(s(queue_key(queue, ref.session_id)))}"
        )
        update.remove(Attr.OPS_QUEUE)
        update.remove(Attr.OPS_DUE_AT_MS)
        update.set_from(Attr.PREVIOUS_STATUS, Attr.STATUS)
        self._set_change(update, ChangeKind.FOLLOW_UP_CLEARED, now_ms, reason)
        return self._update_if(guarantee_key(ref), update)

    # -- reads ------------------------------------------------------------------------------------

    def get_guarantee(self, ref: GuaranteeRef) -> GuaranteeView | None:
        item = self._get_item(guarantee_key(ref))
        return guarantee_view(item)

    def session_status(self, session_id: str) -> SessionView | None:
        """The final status recorded for the session (by webhook or reconciliation), if any."""
        item = self._get_item(session_key(session_id))
        view = session_view(item)
        return view if view is not None and view.final_status else None

    def session_records(self, session_id: str) -> tuple[list[GuaranteeView], SessionView | None]:
        """A session's guarantees and its final status record, read consistently."""
        items = self._query(
            {
                "TableName": self._table_name,
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": Attr.PK},
                "ExpressionAttributeValues": {":pk": s(session_id)},
                "ConsistentRead": True,
            }
        )
        guarantees = [view for item in items if (view := guarantee_view(item)) is not None]
        statuses = [status for item in items if (status := session_view(item)) is not None]
        return guarantees, (statuses[0] if statuses else None)

    def guarantees(
        self, *, status: GuaranteeStatus | None = None, since_ms: int | None = None
    ) -> list[GuaranteeView]:
        """Guarantee records by status and received time: a scan, for operators, never on a hot path."""
        names = {"#type": Attr.RECORD_TYPE}
        values: dict[str, AttributeValue] = {":guarantee": s(RecordType.GUARANTEE)}
        conditions = ["#type = :guarantee"]
        if status is not None:
            names["#status"] = Attr.STATUS
            values[":status"] = s(status)
            conditions.append("#status = :status")
        if since_ms is not None:
            names["#received"] = Attr.RECEIVED_AT_MS
            values[":since"] = n(since_ms)
            conditions.append("#received >= :since")
        request: ScanInputTypeDef = {
            "TableName": self._table_name,
            "FilterExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return [view for item in self._scan(request) if (view := guarantee_view(item)) is not None]

    def quarantined(self, session_id: str | None = None) -> list[QuarantineView]:
        """Bodies kept in quarantine (for one session, or all), oldest first."""
        names = {"#pk": Attr.PK}
        values = {":pk": s(QUARANTINE_PK)}
        request: QueryInputTypeDef = {
            "TableName": self._table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if session_id is not None:
            request["FilterExpression"] = "#session = :session"
            names["#session"] = Attr.SESSION_ID
            values[":session"] = s(session_id)
        views = [view for item in self._query(request) if (view := quarantine_view(item))]
        return sorted(views, key=lambda view: view.received_at_ms)

    def quarantined_body(self, digest: str) -> QuarantineView | None:
        item = self._get_item(quarantine_key(digest))
        return quarantine_view(item)

    # -- plumbing ---------------------------------------------------------------------------------

    def _holding(self, claim_id: str) -> _Update:
        """An update that applies only while we hold the claim on a DECIDING item."""
        update = _Update()
        update.condition(
            f"{update.name(Attr.CLAIM_ID)} = {update.value(s(claim_id))} "
            f"AND {update.name(Attr.STATUS)} = {update.value(s(GuaranteeStatus.DECIDING))}"
        )
        return update

    def _queue_for_sweep(self, update: _Update, ref: GuaranteeRef, now_ms: int) -> None:
        update.set(Attr.OPS_QUEUE, s(queue_key(FollowUpQueue.SWEEP, ref.session_id)))
        update.set(Attr.OPS_DUE_AT_MS, n(now_ms + self._stuck_after_ms))

    def _change_attributes(self, kind: ChangeKind, now_ms: int, reason: str | None) -> Item:
        attributes: Item = {
            Attr.CHANGE_KIND: s(kind),
            Attr.CHANGED_BY: s(self._actor.identity),
            Attr.CHANGED_AT_MS: n(now_ms),
        }
        if self._actor.note:
            attributes[Attr.CHANGED_BY_NOTE] = s(self._actor.note)
        if reason:
            attributes[Attr.CHANGE_REASON] = s(reason[:_REASON_MAX_CHARS])
        return attributes

    def _set_change(self, update: _Update, kind: ChangeKind, now_ms: int, reason: str | None) -> None:
        for name, value in self._change_attributes(kind, now_ms, reason).items():
            update.set(name, value)
        for name in (Attr.CHANGED_BY_NOTE, Attr.CHANGE_REASON):
            if not update.sets_attribute(name):
                update.remove(name)

    def _put_new(self, item: Item) -> None:
        self._dynamodb_call(
            "put_item",
            lambda client: client.put_item(
                TableName=self._table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": Attr.PK},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )

    def _update_if(self, key: Item, update: _Update) -> bool:
        try:
            self._update(key, update)
        except _ConditionFailedError:
            return False
        return True

    def _update_returning_old(self, key: Item, update: _Update) -> Item:
        response = self._update(key, update, return_values="ALL_OLD", old_on_condition_failure=True)
        return response.get("Attributes", {})

    def _update(
        self,
        key: Item,
        update: _Update,
        *,
        return_values: ReturnValueType | None = None,
        old_on_condition_failure: bool = False,
    ) -> UpdateItemOutputTypeDef:
        request = update.request(self._table_name, key)
        if return_values is not None:
            request["ReturnValues"] = return_values
        if old_on_condition_failure:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return self._dynamodb_call("update_item", lambda client: client.update_item(**request))

    def _get_item(self, key: Item) -> Item:
        """The item under ``key``, read consistently (empty where there is none)."""
        response = self._dynamodb_call(
            "get_item",
            lambda client: client.get_item(TableName=self._table_name, Key=key, ConsistentRead=True),
        )
        return response.get("Item", {})

    def _query(self, request: QueryInputTypeDef) -> list[Item]:
        return _every_page(request, self._query_page)

    def _query_page(self, request: QueryInputTypeDef) -> QueryOutputTypeDef:
        return self._dynamodb_call("query", lambda client: client.query(**request))

    def _scan(self, request: ScanInputTypeDef) -> list[Item]:
        return _every_page(request, self._scan_page)

    def _scan_page(self, request: ScanInputTypeDef) -> ScanOutputTypeDef:
        return self._dynamodb_call("scan", lambda client: client.scan(**request))

    def _dynamodb_call(self, operation: str, call: Callable[[DynamoDBClient], _T]) -> _T:
        """``call`` on the table's client, created here on first use: any failure, creating the client
        included, is this adapter's (``operation`` names it in the error)."""
        with _translated(operation):
            return call(self._dynamodb())

    def _expiry_epoch_seconds(self, at_ms: int) -> int:
        return (at_ms + self._retention_ms) // 1000


_PLACEHOLDER = re.compile(r"#a\d+|:v\d+")
_Request = TypeVar("_Request", "QueryInputTypeDef", "ScanInputTypeDef")


def _every_page(
    request: _Request, page: Callable[[_Request], QueryOutputTypeDef | ScanOutputTypeDef]
) -> list[Item]:
    """The items of every page of a query or a scan."""
    items: list[Item] = []
    while True:
        response = page(request)
        items.extend(response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        request = {**request, "ExclusiveStartKey": response["LastEvaluatedKey"]}


class _ConditionFailedError(Exception):
    def __init__(self, item: Item) -> None:
        super().__init__("condition failed")
        self.item = item


@contextlib.contextmanager
def _translated(operation: str) -> Iterator[None]:
    """botocore errors as this service's: a failed condition is a result, anything else PersistenceError."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with the client

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == _CONDITION_FAILED:
            item = error.response.get("Item")  # the item as it was, when the call asked for ALL_OLD
            raise _ConditionFailedError(item if isinstance(item, dict) else {}) from None
        raise PersistenceError(f"DynamoDB {operation} failed: {code or 'unknown error'}") from error
    except BotoCoreError as error:
        raise PersistenceError(f"DynamoDB {operation} failed: {type(error).__name__}") from error


class _Update:
    """An UpdateExpression with its condition, every attribute name and value behind a placeholder."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, AttributeValue] = {}
        self._sets: dict[str, str] = {}
        self._removes: list[str] = []
        self._adds: list[str] = []
        self._condition: str | None = None

    def name(self, attribute_name: str) -> str:
        for placeholder, name in self._names.items():
            if name == attribute_name:
                return placeholder
        placeholder = f"#a{len(self._names)}"
        self._names[placeholder] = attribute_name
        return placeholder

    def value(self, value: AttributeValue) -> str:
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = value
        return placeholder

    def values_of(self, statuses: Sequence[GuaranteeStatus]) -> str:
        return ", ".join(self.value(s(status)) for status in statuses)

    def unconfirmed_and_unleased(self, statuses: Iterable[GuaranteeStatus], *, lapsed_before: str) -> str:
        """A condition: no confirm recorded, and the item in one of ``statuses`` with no lease or one that
        lapsed before ``lapsed_before`` (a value placeholder), or DECIDING under a lease that lapsed so."""
        status, lease = self.name(Attr.STATUS), self.name(Attr.LEASE_EXPIRES_AT_MS)
        return (
            f"attribute_not_exists({self.name(Attr.CONFIRMED_AT_MS)}) "
            f"AND (({status} IN ({self.values_of(sorted(statuses))}) "
            f"AND (attribute_not_exists({lease}) OR {lease} < {lapsed_before})) "
            f"OR ({status} = {self.value(s(GuaranteeStatus.DECIDING))} AND {lease} < {lapsed_before}))"
        )

    def set(self, attribute_name: str, value: AttributeValue) -> None:
        self._sets[attribute_name] = self.value(value)

    def set_from(self, attribute_name: str, source: str) -> None:
        """``SET a = b``: DynamoDB reads ``b`` as it was before this update."""
        self._sets[attribute_name] = self.name(source)

    def sets_attribute(self, attribute_name: str) -> bool:
        return attribute_name in self._sets

    def increment(self, attribute_name: str) -> None:
        placeholder = self.name(attribute_name)
        self._sets[attribute_name] = f"if_not_exists({placeholder}, {self.value(n(0))}) + {self.value(n(1))}"

    def remove(self, attribute_name: str) -> None:
        if attribute_name not in self._sets and attribute_name not in self._removes:
            self._removes.append(attribute_name)

    def condition(self, expression: str) -> None:
        self._condition = expression

    def request(self, table_name: str, key: Item) -> UpdateItemInputTypeDef:
        clauses = []
        if self._sets:
            clauses.append(
                "SET " + ", ".join(f"{self.name(name)} = {expr}" for name, expr in self._sets.items())
            )
        removes = [name for name in self._removes if name not in self._sets]
        if removes:
            clauses.append("REMOVE " + ", ".join(self.name(name) for name in removes))
        expression = " ".join(clauses)
        # DynamoDB refuses placeholders no expression uses (a value replaced by a later set, say).
        used = set(_PLACEHOLDER.findall(expression + " " + (self._condition or "")))
        request: UpdateItemInputTypeDef = {
            "TableName": table_name,
            "Key": key,
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {
                placeholder: name for placeholder, name in self._names.items() if placeholder in used
            },
        }
        values = {placeholder: value for placeholder, value in self._values.items() if placeholder in used}
        if values:
            request["ExpressionAttributeValues"] = values
        if self._condition:
            request["ConditionExpression"] = self._condition
        return request


def claim_refused(current: GuaranteeView | None, now_ms: int) -> Claim:
    if current is None:
        return Claim(ClaimResult.MISSING)
    if current.status in TERMINAL_STATUSES:
        return Claim(ClaimResult.ALREADY_DONE, current)
    if current.confirm is not None:
        return Claim(ClaimResult.RECORDS_A_CONFIRM, current)
    if current.status is GuaranteeStatus.REVIEW:
        return Claim(ClaimResult.AWAITING_REVIEW, current)
    if current.confirm_settles_at_ms is not None and current.confirm_settles_at_ms > now_ms:
        return Claim(ClaimResult.SETTLING, current, wait_until_ms=current.confirm_settles_at_ms)
    return Claim(ClaimResult.HELD, current, wait_until_ms=current.lease_expires_at_ms)


def _write_outcome(update: _Update, outcome: GuaranteeOutcome) -> None:
    decision = outcome.decision
    if decision is not None:
        _write_decision(update, decision)
    if outcome.shadow is not None:
        shadow = outcome.shadow
        update.set(Attr.SHADOW_DECISION, s(shadow.verdict))
        update.set(Attr.SHADOW_RULE, s(shadow.rule))
        _set_optional(update, Attr.SHADOW_REASON, shadow.reason)
        if shadow.policy is not None:
            update.set(Attr.SHADOW_POLICY_HASH, s(shadow.policy.content_hash))
            _set_optional(update, Attr.SHADOW_POLICY_VERSION, shadow.policy.version)
    numbers = {
        Attr.DECIDED_AT_MS: outcome.decided_at_ms,
        Attr.CONFIRMED_AT_MS: outcome.confirmed_at_ms,
        Attr.WEBHOOK_TO_CONFIRM_MS: outcome.webhook_to_confirm_ms,
    }
    for name, number in numbers.items():
        if number is not None:
            update.set(name, n(number))
    _set_optional(update, Attr.FLINKS_SESSION_ID, outcome.flinks_session_id)
    _set_optional(update, Attr.FLINKS_REFERENCE_ID, outcome.flinks_reference_id)
    if outcome.recovered_from_details:
        update.set(Attr.RECOVERED_FROM_DETAILS, {"BOOL": True})
    if outcome.status is GuaranteeStatus.FAILED:
        update.set(Attr.FAILURE_REASON, s((outcome.failure_reason or "failed")[:_REASON_MAX_CHARS]))
    else:
        update.remove(Attr.FAILURE_REASON)  # the audit trail keeps the earlier failure
    if outcome.hold_reason is not None:
        update.set(Attr.HOLD_REASON, s(outcome.hold_reason[:_REASON_MAX_CHARS]))
    elif outcome.status is GuaranteeStatus.REVIEW:
        update.remove(Attr.HOLD_REASON)
    if outcome.status is GuaranteeStatus.REVIEW and decision is not None and outcome.decided_at_ms:
        # Kept apart: the final write after the review replaces decision and decisionRule.
        update.set(Attr.REVIEW_REQUESTED_BY_RULE, s(decision.rule))
        _set_optional(update, Attr.REVIEW_REQUESTED_REASON, decision.reason)
        update.set(Attr.REVIEW_REQUESTED_AT_MS, n(outcome.decided_at_ms))


def _write_decision(update: _Update, decision: Decision) -> None:
    update.set(Attr.DECISION, s(decision.verdict))
    update.set(Attr.DECISION_RULE, s(decision.rule))
    _set_optional(update, Attr.DECISION_REASON, decision.reason)
    if decision.inputs:
        update.set(Attr.DECISION_INPUTS, attribute(decision.inputs))
    if decision.missing_facts:
        update.set(Attr.MISSING_FACTS, attribute(list(decision.missing_facts)))
    elif decision.inputs:
        update.remove(Attr.MISSING_FACTS)
    if decision.policy is not None:
        update.set(Attr.POLICY_HASH, s(decision.policy.content_hash))
        _set_optional(update, Attr.POLICY_NAME, decision.policy.name)
        _set_optional(update, Attr.POLICY_VERSION, decision.policy.version)


def _set_optional(update: _Update, name: str, value: str | None) -> None:
    if value is not None:
        update.set(name, s(value))
