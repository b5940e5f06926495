"""What the decision processor needs from the outside world, as Protocols.

``GuaranteeRepository`` (DynamoDB) and ``FlinksClient`` (HTTP) are the production adapters; testkit's
``FakeGuaranteeStore`` and ``FakeFlinks`` are the fakes, enforcing the same conditional-write rules, so
the processor's state machine runs in milliseconds in tests/unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from geft.items import GuaranteeView
from geft.models import GuaranteeOutcome, GuaranteeRef


class ClaimResult(Enum):
    CLAIMED = "claimed"
    ALREADY_DONE = "already-done"  # CONFIRMED or FAILED: nothing left to do
    AWAITING_REVIEW = "awaiting-review"  # a person (or the review timeout) must decide first
    HELD = "held"  # another invocation holds a live lease
    SETTLING = "settling"  # a confirm may still be being applied at Flinks: look again after it settles
    RECORDS_A_CONFIRM = "records-a-confirm"  # not terminal, yet it records a confirm: never claimed again
    MISSING = "missing"


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    guarantee: GuaranteeView | None = None
    # True when an earlier attempt may already have sent the confirm: read /details before sending.
    confirm_may_have_been_sent: bool = False
    # HELD: when the holder's lease ends; SETTLING: when the confirm's outcome may be looked at.
    wait_until_ms: int = 0


@dataclass(frozen=True)
class Release:
    """Giving a claim back after a transient failure, so the retry can take it."""

    reason: str
    confirm_attempted: bool = False  # a confirm may have reached Flinks: the retry reads /details first
    settle_until_ms: int | None = None  # and not before this time (Flinks may still be applying it)


class GuaranteeStore(Protocol):
    def claim(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, lease_until_ms: int) -> Claim: ...

    def release(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, release: Release) -> bool: ...

    def finish(self, ref: GuaranteeRef, *, claim_id: str, outcome: GuaranteeOutcome, now_ms: int) -> bool: ...

    def session_guarantees(self, session_id: str) -> list[GuaranteeView]: ...


class ConfirmAnswer(Protocol):
    @property
    def session_id(self) -> str | None: ...

    @property
    def reference_id(self) -> str | None: ...


class FlinksSession(Protocol):
    """The calls for one Flinks session, all within the deadline it was made with."""

    def details(self) -> Mapping[str, Any]: ...

    def confirm(self, accepted: bool) -> ConfirmAnswer: ...


class FlinksSessions(Protocol):
    def for_session(self, session_id: str, *, deadline: float) -> FlinksSession: ...
