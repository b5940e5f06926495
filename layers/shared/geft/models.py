"""Plain domain types shared by the functions. DynamoDB item shapes stay inside repository.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class GuaranteeStatus(StrEnum):
    """The states a guarantee item moves through; see README "Item states"."""

    RECEIVED = "RECEIVED"  # stored by the receiver, waiting for the processor
    DECIDING = "DECIDING"  # claimed under a lease; a confirm may be in flight
    REVIEW = "REVIEW"  # the policy asked for a person; waiting for an operator or the timeout
    REVIEWED = "REVIEWED"  # an operator (or the review timeout) decided; the processor confirms it
    REDRIVE = "REDRIVE"  # an operator re-ran it (DLQ redrive, replay); the processor takes it again
    CONFIRMED = "CONFIRMED"  # Flinks acknowledged our decision (terminal)
    FAILED = "FAILED"  # permanently failed, with a reason (terminal)


TERMINAL_STATUSES = frozenset({GuaranteeStatus.CONFIRMED, GuaranteeStatus.FAILED})
# Statuses the processor may claim (besides DECIDING with an expired lease).
CLAIMABLE_STATUSES = frozenset({GuaranteeStatus.RECEIVED, GuaranteeStatus.REVIEWED, GuaranteeStatus.REDRIVE})


class FollowUpQueue(StrEnum):
    """Work a scheduled job picks up later, kept in the table's sparse OpsQueueIndex."""

    REVIEW = "REVIEW"  # falls back to the configured decision when nobody reviews in time
    RECONCILE = "RECONCILE"  # the session's final status is still unknown


class RecordType(StrEnum):
    GUARANTEE = "GUARANTEE"
    SESSION = "SESSION"
    QUARANTINE = "QUARANTINE"


@dataclass(frozen=True)
class GuaranteeRef:
    """Identifies one guarantee: a session can in principle see a second one (a Next Best Offer)."""

    session_id: str
    guarantee_key: str


@dataclass(frozen=True)
class StoredGuarantee:
    ref: GuaranteeRef
    status: GuaranteeStatus
    raw_body: str
    received_at_ms: int
    attempts: int = 0
    confirm_attempted: bool = False
    lease_expires_at_ms: int = 0
    claim_id: str | None = None
    review_decision: str | None = None
    reviewer: str | None = None
    review_reason: str | None = None


@dataclass(frozen=True)
class GuaranteeOutcome:
    """What the processor writes when it finishes with a guarantee: the bank's audit trail."""

    status: GuaranteeStatus
    decision: str | None = None
    rule: str | None = None
    inputs: dict[str, object] = field(default_factory=dict)
    decided_at_ms: int | None = None
    confirmed_at_ms: int | None = None
    flinks_session_id: str | None = None
    flinks_reference_id: str | None = None
    recovered_from_details: bool = False
    failure_reason: str | None = None
    webhook_to_confirm_ms: int | None = None
    # When the follow-up job should look at it: the review deadline, or when to reconcile.
    follow_up_due_ms: int | None = None
