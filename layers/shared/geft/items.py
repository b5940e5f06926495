"""The guarantees table's item codec: keys, attribute names, and typed views of every record.

The only module besides repository.py that names an item attribute. Everything else (the handlers, the
operator CLI, the local stack, the audit trail) reads ``GuaranteeView``, ``SessionView`` and
``QuarantineView``, built from a low-level item (``{"S": ...}``, as the DynamoDB client returns it) or
from a plain one (as a stream image or ``TypeDeserializer`` gives it). Stdlib only: the receiver never
imports boto3.

Keys: ``pk`` is the session id (or ``QUARANTINE``); ``sk`` is ``GUARANTEE#<key>`` for a guarantee,
``SESSION`` for the session's final status, and the body's sha256 for a quarantined body.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from geft.models import (
    ChangeKind,
    FollowUp,
    FollowUpQueue,
    GuaranteeRef,
    GuaranteeStatus,
    PolicyIdentity,
    RecordType,
    Verdict,
)

GUARANTEE_SK_PREFIX: Final = "GUARANTEE#"
SESSION_SK: Final = "SESSION"
QUARANTINE_PK: Final = "QUARANTINE"
OPS_QUEUE_INDEX: Final = "OpsQueueIndex"
# Every answered guarantee joins the RECONCILE queue: one index partition key would cap the table's
# writes near 1,000/s (a throttled GSI throttles the table), so each queue is spread over shards.
OPS_QUEUE_SHARDS: Final = 16

if TYPE_CHECKING:
    # The stubs' shape of one attribute value (``{"S": "..."}``, ``{"N": "1"}``, ...): what the DynamoDB
    # client takes and returns. At runtime only a dict: the stubs are a dev dependency.
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    AttributeValue: TypeAlias = AttributeValueTypeDef
else:
    AttributeValue = dict
_E = TypeVar("_E", GuaranteeStatus, Verdict, FollowUpQueue, ChangeKind)
Item = dict[str, AttributeValue]


class Attr:
    """Attribute names, one constant each (the names DynamoDB stores)."""

    PK = "pk"
    SK = "sk"
    RECORD_TYPE = "recordType"
    SESSION_ID = "sessionId"
    GUARANTEE_KEY = "guaranteeKey"
    STATUS = "status"
    RAW_BODY = "rawBody"
    CONTENT_SHA256 = "contentSha256"
    RECEIVED_AT_MS = "receivedAtMs"
    UPDATED_AT_MS = "updatedAtMs"
    EXPIRES_AT = "expiresAt"
    EVENT_WHEN = "eventWhen"
    ATTEMPTS = "attempts"
    CLAIM_ID = "claimId"
    LEASE_EXPIRES_AT_MS = "leaseExpiresAtMs"
    CONFIRM_ATTEMPTED = "confirmAttempted"
    CONFIRM_SETTLES_AT_MS = "confirmSettlesAtMs"
    DECISION = "decision"
    DECISION_RULE = "decisionRule"
    DECISION_REASON = "decisionReason"
    DECISION_INPUTS = "decisionInputs"
    MISSING_FACTS = "missingFacts"
    POLICY_NAME = "policyName"
    POLICY_VERSION = "policyVersion"
    POLICY_HASH = "policyHash"
    DECIDED_AT_MS = "decidedAtMs"
    SHADOW_DECISION = "shadowDecision"
    SHADOW_RULE = "shadowRule"
    SHADOW_REASON = "shadowReason"
    SHADOW_POLICY_HASH = "shadowPolicyHash"
    SHADOW_POLICY_VERSION = "shadowPolicyVersion"
    REVIEW_REQUESTED_BY_RULE = "reviewRequestedByRule"
    REVIEW_REQUESTED_REASON = "reviewRequestedReason"
    REVIEW_REQUESTED_AT_MS = "reviewRequestedAtMs"
    HOLD_REASON = "holdReason"
    REVIEW_DECISION = "reviewDecision"
    REVIEWER = "reviewer"
    REVIEWER_NOTE = "reviewerNote"
    REVIEW_REASON = "reviewReason"
    REVIEWED_AT_MS = "reviewedAtMs"
    REDRIVE_REQUESTED_AT_MS = "redriveRequestedAtMs"
    CONFIRMED_AT_MS = "confirmedAtMs"
    FLINKS_SESSION_ID = "flinksSessionId"
    FLINKS_REFERENCE_ID = "flinksReferenceId"
    RECOVERED_FROM_DETAILS = "recoveredFromDetails"
    WEBHOOK_TO_CONFIRM_MS = "webhookToConfirmMs"
    FAILURE_REASON = "failureReason"
    OPS_QUEUE = "opsQueue"
    OPS_DUE_AT_MS = "opsDueAtMs"
    FOLLOW_UP_ATTEMPTS = "followUpAttempts"
    # the last change, written by every write; the audit trail keeps one record per change
    CHANGE_KIND = "changeKind"
    CHANGED_BY = "changedBy"
    CHANGED_BY_NOTE = "changedByNote"
    CHANGED_AT_MS = "changedAtMs"
    CHANGE_REASON = "changeReason"
    PREVIOUS_STATUS = "previousStatus"
    # session status records
    FINAL_STATUS = "finalStatus"
    FINAL_STATUS_DETAILS = "finalStatusDetails"
    FINAL_STATUS_AT_MS = "finalStatusAtMs"
    FINAL_STATUS_SOURCE = "finalStatusSource"
    STATUS_RAW_BODY = "statusRawBody"
    # quarantine records
    QUARANTINE_REASON = "reason"
    RAW_BODY_BYTES = "rawBodyBytes"


def constant_values(namespace: type) -> frozenset[str]:
    """The string constants a namespace class names (its public attributes)."""
    return frozenset(
        value for key, value in vars(namespace).items() if not key.startswith("_") and isinstance(value, str)
    )


ATTRIBUTES: Final = constant_values(Attr)


# -- keys -----------------------------------------------------------------------------------------------


def guarantee_key(ref: GuaranteeRef) -> Item:
    return {Attr.PK: s(ref.session_id), Attr.SK: s(GUARANTEE_SK_PREFIX + ref.guarantee_key)}


def session_key(session_id: str) -> Item:
    return {Attr.PK: s(session_id), Attr.SK: s(SESSION_SK)}


def quarantine_key(digest: str) -> Item:
    return {Attr.PK: s(QUARANTINE_PK), Attr.SK: s(digest)}


def queue_key(queue: FollowUpQueue, session_id: str) -> str:
    """The index partition of ``queue`` this session's items use (a stable shard of the session id)."""
    return f"{queue}#{zlib.crc32(session_id.encode()) % OPS_QUEUE_SHARDS:02d}"


def queue_shards(queue: FollowUpQueue) -> list[str]:
    return [f"{queue}#{shard:02d}" for shard in range(OPS_QUEUE_SHARDS)]


def ref_of_keys(item: Mapping[str, Any]) -> GuaranteeRef | None:
    """The guarantee a low-level or plain item's keys name, or None for any other record."""
    pk, sk = _plain_value(item.get(Attr.PK)), _plain_value(item.get(Attr.SK))
    if not isinstance(pk, str) or not isinstance(sk, str) or not sk.startswith(GUARANTEE_SK_PREFIX):
        return None
    return GuaranteeRef(pk, sk.removeprefix(GUARANTEE_SK_PREFIX))


# -- attribute values -------------------------------------------------------------------------------------


def s(value: str) -> AttributeValue:
    return {"S": str(value)}


def n(value: int | Decimal) -> AttributeValue:
    return {"N": str(value)}


def attribute(value: object) -> AttributeValue:  # noqa: PLR0911 - one return per type
    """A plain Python value as a DynamoDB attribute value (str, bool, numbers, None, bytes, maps, lists)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return n(value)
    if value is None:
        return {"NULL": True}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, Mapping):
        return {"M": {str(key): attribute(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attribute(item) for item in value]}
    return s(str(value))


def plain(item: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """A low-level item as plain values (numbers as Decimal, like boto3's TypeDeserializer)."""
    return {name: _plain_value(value) for name, value in item.items()}


def _plain_value(value: object) -> Any:  # noqa: PLR0911 - one return per attribute type
    if not isinstance(value, Mapping) or len(value) != 1:
        return value  # already plain
    [(kind, inner)] = value.items()
    match kind:
        case "S":
            return inner
        case "N":
            return Decimal(inner)
        case "BOOL":
            return bool(inner)
        case "NULL":
            return None
        case "B":
            return base64.b64decode(inner) if isinstance(inner, str) else bytes(inner)
        case "M":
            return {key: _plain_value(item) for key, item in inner.items()}
        case "L":
            return [_plain_value(item) for item in inner]
        case "SS":
            return set(inner)
        case "NS":
            return {Decimal(item) for item in inner}
        case _:
            return value


# -- views ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastChange:
    kind: ChangeKind | None
    by: str | None
    by_note: str | None
    at_ms: int | None
    reason: str | None
    previous_status: GuaranteeStatus | None


@dataclass(frozen=True)
class DecisionView:
    verdict: Verdict
    rule: str | None
    reason: str | None
    inputs: dict[str, object]
    missing_facts: tuple[str, ...]
    policy: PolicyIdentity | None
    decided_at_ms: int | None


@dataclass(frozen=True)
class ReviewView:
    requested_by_rule: str | None
    requested_reason: str | None
    requested_at_ms: int | None
    hold_reason: str | None
    decision: Verdict | None
    reviewer: str | None
    reviewer_note: str | None
    reason: str | None
    reviewed_at_ms: int | None


@dataclass(frozen=True)
class ConfirmView:
    confirmed_at_ms: int
    flinks_session_id: str | None
    flinks_reference_id: str | None
    recovered_from_details: bool
    webhook_to_confirm_ms: int | None


@dataclass(frozen=True)
class GuaranteeView:
    ref: GuaranteeRef
    status: GuaranteeStatus
    raw_body: str
    received_at_ms: int
    updated_at_ms: int
    content_sha256: str | None = None
    event_when: str | None = None
    attempts: int = 0
    claim_id: str | None = None
    lease_expires_at_ms: int = 0
    confirm_attempted: bool = False
    confirm_settles_at_ms: int | None = None
    decision: DecisionView | None = None
    shadow: DecisionView | None = None
    review: ReviewView | None = None
    redrive_requested_at_ms: int | None = None
    confirm: ConfirmView | None = None
    failure_reason: str | None = None
    follow_up: FollowUp | None = None
    follow_up_attempts: int = 0
    last_change: LastChange | None = None

    @property
    def review_decision(self) -> Verdict | None:
        return self.review.decision if self.review else None

    def body(self) -> dict[str, Any]:
        """The stored webhook body as JSON (numbers as Decimal); empty when it is not a JSON object."""
        try:
            document = json.loads(self.raw_body, parse_float=Decimal)
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}


@dataclass(frozen=True)
class SessionView:
    session_id: str
    final_status: str | None
    final_status_details: str | None
    final_status_at_ms: int | None
    source: str | None
    last_change: LastChange | None = None


@dataclass(frozen=True)
class QuarantineView:
    digest: str
    reason: str
    session_id: str | None
    received_at_ms: int
    body: bytes = field(repr=False)


def guarantee_view(item: Mapping[str, Any]) -> GuaranteeView | None:
    """A guarantee record as a view (low-level or plain item); None for anything else."""
    values = plain(item)
    ref = ref_of_keys(values)
    status = _enum(GuaranteeStatus, values.get(Attr.STATUS))
    if ref is None or status is None or values.get(Attr.RECORD_TYPE) != RecordType.GUARANTEE:
        return None
    return GuaranteeView(
        ref=ref,
        status=status,
        raw_body=_text(values.get(Attr.RAW_BODY)) or "",
        received_at_ms=_int(values.get(Attr.RECEIVED_AT_MS)) or 0,
        updated_at_ms=_int(values.get(Attr.UPDATED_AT_MS)) or 0,
        content_sha256=_text(values.get(Attr.CONTENT_SHA256)),
        event_when=_text(values.get(Attr.EVENT_WHEN)),
        attempts=_int(values.get(Attr.ATTEMPTS)) or 0,
        claim_id=_text(values.get(Attr.CLAIM_ID)),
        lease_expires_at_ms=_int(values.get(Attr.LEASE_EXPIRES_AT_MS)) or 0,
        confirm_attempted=values.get(Attr.CONFIRM_ATTEMPTED) is True,
        confirm_settles_at_ms=_int(values.get(Attr.CONFIRM_SETTLES_AT_MS)),
        decision=_verdict_view(values, _DECISION_ATTRS),
        shadow=_verdict_view(values, _SHADOW_ATTRS),
        review=_review_view(values),
        redrive_requested_at_ms=_int(values.get(Attr.REDRIVE_REQUESTED_AT_MS)),
        confirm=_confirm_view(values),
        failure_reason=_text(values.get(Attr.FAILURE_REASON)),
        follow_up=_follow_up(values),
        follow_up_attempts=_int(values.get(Attr.FOLLOW_UP_ATTEMPTS)) or 0,
        last_change=_last_change(values),
    )


def session_view(item: Mapping[str, Any]) -> SessionView | None:
    values = plain(item)
    if values.get(Attr.RECORD_TYPE) != RecordType.SESSION or values.get(Attr.SK) != SESSION_SK:
        return None
    return SessionView(
        session_id=str(values.get(Attr.PK)),
        final_status=_text(values.get(Attr.FINAL_STATUS)),
        final_status_details=_text(values.get(Attr.FINAL_STATUS_DETAILS)),
        final_status_at_ms=_int(values.get(Attr.FINAL_STATUS_AT_MS)),
        source=_text(values.get(Attr.FINAL_STATUS_SOURCE)),
        last_change=_last_change(values),
    )


def quarantine_view(item: Mapping[str, Any]) -> QuarantineView | None:
    values = plain(item)
    body = values.get(Attr.RAW_BODY_BYTES)
    if values.get(Attr.RECORD_TYPE) != RecordType.QUARANTINE or not isinstance(body, bytes | bytearray):
        return None
    return QuarantineView(
        digest=str(values.get(Attr.SK)),
        reason=_text(values.get(Attr.QUARANTINE_REASON)) or "unknown",
        session_id=_text(values.get(Attr.SESSION_ID)),
        received_at_ms=_int(values.get(Attr.RECEIVED_AT_MS)) or 0,
        body=bytes(body),
    )


def last_change_of(item: Mapping[str, Any]) -> LastChange | None:
    """The change a record's latest write made (any record type), for the audit trail."""
    return _last_change(plain(item))


@dataclass(frozen=True)
class _VerdictAttrs:
    """Where a record keeps one policy's verdict: the live policy's, or the shadow policy's."""

    verdict: str
    rule: str
    reason: str
    policy_name: str | None
    policy_version: str
    policy_hash: str
    inputs: str | None  # the shadow policy keeps neither its inputs nor its missing facts
    missing_facts: str | None


_DECISION_ATTRS: Final = _VerdictAttrs(
    Attr.DECISION,
    Attr.DECISION_RULE,
    Attr.DECISION_REASON,
    Attr.POLICY_NAME,
    Attr.POLICY_VERSION,
    Attr.POLICY_HASH,
    Attr.DECISION_INPUTS,
    Attr.MISSING_FACTS,
)
_SHADOW_ATTRS: Final = _VerdictAttrs(
    Attr.SHADOW_DECISION,
    Attr.SHADOW_RULE,
    Attr.SHADOW_REASON,
    None,
    Attr.SHADOW_POLICY_VERSION,
    Attr.SHADOW_POLICY_HASH,
    None,
    None,
)


def _verdict_view(values: Mapping[str, Any], attrs: _VerdictAttrs) -> DecisionView | None:
    verdict = _enum(Verdict, values.get(attrs.verdict))
    if verdict is None:
        return None
    return DecisionView(
        verdict=verdict,
        rule=_text(values.get(attrs.rule)),
        reason=_text(values.get(attrs.reason)),
        inputs=dict(values.get(attrs.inputs) or {}) if attrs.inputs else {},
        missing_facts=tuple(str(fact) for fact in values.get(attrs.missing_facts) or ())
        if attrs.missing_facts
        else (),
        policy=_policy(values, attrs.policy_name, attrs.policy_version, attrs.policy_hash),
        decided_at_ms=_int(values.get(Attr.DECIDED_AT_MS)),
    )


def _policy(
    values: Mapping[str, Any], name_attr: str | None, version_attr: str, hash_attr: str
) -> PolicyIdentity | None:
    content_hash = _text(values.get(hash_attr))
    if content_hash is None:
        return None
    name = _text(values.get(name_attr)) if name_attr else None
    return PolicyIdentity(name, _text(values.get(version_attr)), content_hash)


def _review_view(values: Mapping[str, Any]) -> ReviewView | None:
    requested_at = _int(values.get(Attr.REVIEW_REQUESTED_AT_MS))
    reviewed_at = _int(values.get(Attr.REVIEWED_AT_MS))
    hold_reason = _text(values.get(Attr.HOLD_REASON))
    if requested_at is None and reviewed_at is None and hold_reason is None:
        return None
    return ReviewView(
        requested_by_rule=_text(values.get(Attr.REVIEW_REQUESTED_BY_RULE)),
        requested_reason=_text(values.get(Attr.REVIEW_REQUESTED_REASON)),
        requested_at_ms=requested_at,
        hold_reason=hold_reason,
        decision=_enum(Verdict, values.get(Attr.REVIEW_DECISION)),
        reviewer=_text(values.get(Attr.REVIEWER)),
        reviewer_note=_text(values.get(Attr.REVIEWER_NOTE)),
        reason=_text(values.get(Attr.REVIEW_REASON)),
        reviewed_at_ms=reviewed_at,
    )


def _confirm_view(values: Mapping[str, Any]) -> ConfirmView | None:
    confirmed_at = _int(values.get(Attr.CONFIRMED_AT_MS))
    if confirmed_at is None:
        return None
    return ConfirmView(
        confirmed_at_ms=confirmed_at,
        flinks_session_id=_text(values.get(Attr.FLINKS_SESSION_ID)),
        flinks_reference_id=_text(values.get(Attr.FLINKS_REFERENCE_ID)),
        recovered_from_details=values.get(Attr.RECOVERED_FROM_DETAILS) is True,
        webhook_to_confirm_ms=_int(values.get(Attr.WEBHOOK_TO_CONFIRM_MS)),
    )


def _follow_up(values: Mapping[str, Any]) -> FollowUp | None:
    queue_partition = _text(values.get(Attr.OPS_QUEUE))
    due = _int(values.get(Attr.OPS_DUE_AT_MS))
    queue = _enum(FollowUpQueue, queue_partition.split("#", 1)[0]) if queue_partition else None
    return FollowUp(queue, due) if queue is not None and due is not None else None


def _last_change(values: Mapping[str, Any]) -> LastChange | None:
    kind = _enum(ChangeKind, values.get(Attr.CHANGE_KIND))
    at_ms = _int(values.get(Attr.CHANGED_AT_MS))
    if kind is None and at_ms is None:
        return None
    return LastChange(
        kind=kind,
        by=_text(values.get(Attr.CHANGED_BY)),
        by_note=_text(values.get(Attr.CHANGED_BY_NOTE)),
        at_ms=at_ms,
        reason=_text(values.get(Attr.CHANGE_REASON)),
        previous_status=_enum(GuaranteeStatus, values.get(Attr.PREVIOUS_STATUS)),
    )


def _enum(kind: type[_E], value: object) -> _E | None:
    try:
        return kind(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    return int(value)
