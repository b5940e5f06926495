"""Plain domain types shared by the functions. Item shapes (attribute names, keys) live in items.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """What a guarantee gets: from the policy, an operator, or the review timeout."""

    ACCEPT = "accept"
    REJECT = "reject"
    REVIEW = "review"  # a person decides (policy only: Flinks is never sent "review")

    @property
    def accepted(self) -> bool:
        """The ``guaranteeAccepted`` value sent to Flinks; only accept and reject are ever sent."""
        if self is Verdict.REVIEW:
            raise ValueError("a review is not an answer Flinks can be sent")
        return self is Verdict.ACCEPT

    @classmethod
    def of_answer(cls, accepted: bool) -> Verdict:
        return cls.ACCEPT if accepted else cls.REJECT


class GuaranteeStatus(StrEnum):
    """The states a guarantee item moves through; see README "Item states"."""

    RECEIVED = "RECEIVED"  # stored by the receiver (or a claim released before any confirm)
    DECIDING = "DECIDING"  # claimed under a lease, or released after a confirm that may have gone
    REVIEW = "REVIEW"  # waiting for a person: the policy asked for one, or a recovery was uncertain
    REVIEWED = "REVIEWED"  # an operator (or the review timeout) decided; the processor confirms it
    REDRIVE = "REDRIVE"  # sent back by an operator or the stuck-guarantee sweep
    CONFIRMED = "CONFIRMED"  # Flinks holds our decision (terminal)
    FAILED = "FAILED"  # permanently failed, with a reason (terminal)


TERMINAL_STATUSES = frozenset({GuaranteeStatus.CONFIRMED, GuaranteeStatus.FAILED})
# What the processor may claim when no lease is live (a DECIDING item only once its lease ran out).
CLAIMABLE_STATUSES = frozenset({GuaranteeStatus.RECEIVED, GuaranteeStatus.REVIEWED, GuaranteeStatus.REDRIVE})


class FollowUpQueue(StrEnum):
    """Work found later through the table's sparse OpsQueueIndex (one queue per item at a time)."""

    SWEEP = "SWEEP"  # not finished yet: the sweep sends it back if it is still here when due
    REVIEW = "REVIEW"  # the policy asked for a person: the review timeout applies the fallback when due
    HOLD = "HOLD"  # an uncertain recovery: only a person can decide (no fallback ever applies)
    RECONCILE = "RECONCILE"  # answered: the session's final status is still unknown


class RecordType(StrEnum):
    GUARANTEE = "GUARANTEE"
    SESSION = "SESSION"
    QUARANTINE = "QUARANTINE"


class ChangeKind(StrEnum):
    """What a write did; every write names one, and the audit trail keeps each."""

    RECEIVED = "received"
    CLAIMED = "claimed"
    RELEASED = "released"
    CONFIRMED = "confirmed"
    RECOVERED = "recovered"  # recorded from /details: an earlier attempt's confirm had reached Flinks
    FAILED = "failed"
    REVIEW_REQUESTED = "review-requested"
    HELD = "held"  # recovery could not tell whether Flinks' recorded decision is this guarantee's
    REVIEWED = "reviewed"
    REDRIVEN = "redriven"
    STORED_FROM_QUARANTINE = "stored-from-quarantine"
    RECONCILE_PENDING = "reconcile-pending"
    FOLLOW_UP_CLEARED = "follow-up-cleared"
    FINAL_STATUS = "final-status"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class GuaranteeRef:
    """Identifies one guarantee: a session can see a second one (a Next Best Offer)."""

    session_id: str
    guarantee_key: str


@dataclass(frozen=True)
class Actor:
    """Who makes a change: ``function:<name>`` for the functions, ``operator:<caller ARN>`` for people."""

    identity: str
    note: str | None = None  # an operator's self-declared name, shown next to the verified identity

    @classmethod
    def function(cls, name: str) -> Actor:
        return cls(f"function:{name or 'unknown'}")

    @classmethod
    def operator(cls, caller_arn: str, note: str | None = None) -> Actor:
        return cls(f"operator:{caller_arn}", note or None)

    @property
    def is_person(self) -> bool:
        return self.identity.startswith("operator:")


@dataclass(frozen=True)
class PolicyIdentity:
    """Which policy decided: its declared name and version and a hash of its content."""

    name: str | None
    version: str | None
    content_hash: str

    def label(self) -> str:
        named = " ".join(part for part in (self.name, self.version) if part)
        return f"{named} ({self.content_hash})" if named else self.content_hash


@dataclass(frozen=True)
class Decision:
    """What the policy decided, which rule and why, the facts it saw (JSON-safe) and what was missing."""

    verdict: Verdict
    rule: str
    inputs: dict[str, object]
    reason: str | None = None  # the rule's examiner-readable code, e.g. SHORTFALL
    missing_facts: tuple[str, ...] = ()
    policy: PolicyIdentity | None = None


@dataclass(frozen=True)
class FollowUp:
    queue: FollowUpQueue
    due_ms: int


@dataclass(frozen=True)
class GuaranteeOutcome:
    """What the processor writes when it finishes with a guarantee: the bank's audit trail."""

    status: GuaranteeStatus  # CONFIRMED, FAILED or REVIEW
    change: ChangeKind
    decision: Decision | None = None
    shadow: Decision | None = None  # the shadow policy's decision, never acted on
    decided_at_ms: int | None = None
    confirmed_at_ms: int | None = None
    flinks_session_id: str | None = None
    flinks_reference_id: str | None = None
    recovered_from_details: bool = False
    failure_reason: str | None = None
    hold_reason: str | None = None
    webhook_to_confirm_ms: int | None = None
    follow_up: FollowUp | None = None
