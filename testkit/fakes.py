"""Fakes of the processor's ports (geft.ports), for state-machine tests that run in milliseconds.

``FakeGuaranteeStore`` applies the same conditions as ``geft.repository.GuaranteeRepository`` (the
contract tests in tests/integration/test_store_contract.py run one scenario list against both).
``FakeFlinks`` plays Flinks' session calls: offers (a second one is a Next Best Offer), decisions per
offer, and confirms that fail in the ways that matter: before Flinks saw them, after it applied them,
or while it is still applying them. Every confirm that reached it is kept, so a test can assert "one".
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

from geft.errors import (
    FlinksAuthError,
    FlinksConfirmOutcomeUnknownError,
    FlinksConflictError,
    FlinksPermanentError,
    FlinksTransientError,
    PersistenceError,
)
from geft.items import ConfirmView, DecisionView, GuaranteeView, LastChange, ReviewView
from geft.models import (
    CLAIMABLE_STATUSES,
    Actor,
    ChangeKind,
    FollowUp,
    FollowUpQueue,
    GuaranteeOutcome,
    GuaranteeRef,
    GuaranteeStatus,
    Verdict,
)
from geft.ports import Claim, ClaimResult, Release
from geft.repository import DEFAULT_STUCK_AFTER_SECONDS, OPERATOR_LEASE_MARGIN_MS, claim_refused

_T = TypeVar("_T")
_NO_REVIEW = ReviewView(None, None, None, None, None, None, None, None, None)


class InlineExecutor(Executor):
    """Runs each task at submit, in the caller's thread: deterministic state-machine tests."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class FakeClock:
    """Wall and monotonic time in one, advanced only by ``sleep`` and ``advance``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)

    def ms(self) -> int:
        return int(self.now * 1000)


class FakeGuaranteeStore:
    """An in-memory guarantees table with the repository's conditional writes (thread-safe)."""

    def __init__(self, *, actor: Actor | None = None, clock: FakeClock | None = None) -> None:
        self.actor = actor or Actor.function("fake-processor")
        self._clock = clock or FakeClock()
        self._items: dict[GuaranteeRef, GuaranteeView] = {}
        self._lock = threading.Lock()
        self.history: list[tuple[GuaranteeRef, ChangeKind, GuaranteeStatus, str | None]] = []
        self.fail_next: deque[str] = deque()  # operation names whose next call raises PersistenceError

    # seeding and reading ----------------------------------------------------------------------------

    def insert(self, ref: GuaranteeRef, raw_body: str, *, received_at_ms: int | None = None) -> GuaranteeView:
        at = self._clock.ms() if received_at_ms is None else received_at_ms
        view = GuaranteeView(
            ref=ref,
            status=GuaranteeStatus.RECEIVED,
            raw_body=raw_body,
            received_at_ms=at,
            updated_at_ms=at,
            follow_up=_swept_after(at),
        )
        with self._lock:
            if ref in self._items:
                raise KeyError(f"{ref} already stored")
            self._store(view, ChangeKind.RECEIVED, None)
        return view

    def get(self, ref: GuaranteeRef) -> GuaranteeView:
        with self._lock:
            return self._items[ref]

    def put(self, view: GuaranteeView) -> None:
        """Overwrite an item as someone with raw table access could (for defence-in-depth tests)."""
        with self._lock:
            self._items[view.ref] = view

    def session_guarantees(self, session_id: str) -> list[GuaranteeView]:
        self._maybe_fail("query")
        with self._lock:
            return [view for ref, view in self._items.items() if ref.session_id == session_id]

    # the processor's port -------------------------------------------------------------------------------

    def claim(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, lease_until_ms: int) -> Claim:
        self._maybe_fail("claim")
        with self._lock:
            current = self._items.get(ref)
            if current is None:
                return claim_refused(current, now_ms)
            live_lease = current.lease_expires_at_ms >= now_ms
            settling = current.confirm_settles_at_ms is not None and current.confirm_settles_at_ms > now_ms
            claimable = not live_lease and current.status in {*CLAIMABLE_STATUSES, GuaranteeStatus.DECIDING}
            if current.confirm is not None or settling or not claimable:
                return claim_refused(current, now_ms)
            claimed = replace(
                current,
                status=GuaranteeStatus.DECIDING,
                claim_id=claim_id,
                lease_expires_at_ms=lease_until_ms,
                attempts=current.attempts + 1,
                confirm_settles_at_ms=None,
                updated_at_ms=now_ms,
            )
            self._store(claimed, ChangeKind.CLAIMED, None, previous=current.status)
        uncertain = current.status is GuaranteeStatus.DECIDING or current.confirm_attempted
        return Claim(ClaimResult.CLAIMED, claimed, confirm_may_have_been_sent=uncertain)

    def release(self, ref: GuaranteeRef, *, claim_id: str, now_ms: int, release: Release) -> bool:
        self._maybe_fail("release")
        with self._lock:
            current = self._holding(ref, claim_id)
            if current is None:
                return False
            released = replace(
                current,
                status=GuaranteeStatus.DECIDING if release.confirm_attempted else GuaranteeStatus.RECEIVED,
                claim_id=None,
                lease_expires_at_ms=0,
                confirm_attempted=current.confirm_attempted or release.confirm_attempted,
                confirm_settles_at_ms=release.settle_until_ms
                if release.settle_until_ms is not None
                else current.confirm_settles_at_ms,
                updated_at_ms=now_ms,
            )
            self._store(released, ChangeKind.RELEASED, release.reason, previous=current.status)
        return True

    def finish(self, ref: GuaranteeRef, *, claim_id: str, outcome: GuaranteeOutcome, now_ms: int) -> bool:
        self._maybe_fail("finish")
        with self._lock:
            if (current := self._holding(ref, claim_id)) is None:
                return False
            finished = _apply_outcome(current, outcome, now_ms)
            reason = outcome.failure_reason or outcome.hold_reason
            self._store(finished, outcome.change, reason, previous=current.status)
        return True

    # operators and jobs --------------------------------------------------------------------------------

    def record_review_decision(
        self,
        ref: GuaranteeRef,
        *,
        verdict: Verdict,
        reason: str,
        now_ms: int,
        only_from: FollowUpQueue | None = None,
    ) -> bool:
        with self._lock:
            current = self._items.get(ref)
            if current is None or current.status is not GuaranteeStatus.REVIEW:
                return False
            if only_from is not None and (
                current.follow_up is None or current.follow_up.queue is not only_from
            ):
                return False
            review = replace(
                current.review or _NO_REVIEW,
                decision=verdict,
                reviewer=self.actor.identity,
                reviewer_note=self.actor.note,
                reason=reason,
                reviewed_at_ms=now_ms,
            )
            self._operator_write(
                current, ChangeKind.REVIEWED, reason, now_ms, GuaranteeStatus.REVIEWED, review=review
            )
        return True

    def mark_redrive(
        self, ref: GuaranteeRef, *, now_ms: int, reason: str, include_failed: bool = False
    ) -> bool:
        with self._lock:
            current = self._items.get(ref)
            if current is None or current.confirm is not None:
                return False
            statuses = {*CLAIMABLE_STATUSES, GuaranteeStatus.DECIDING} | (
                {GuaranteeStatus.FAILED} if include_failed else set()
            )
            if (
                current.status not in statuses
                or current.lease_expires_at_ms >= now_ms - OPERATOR_LEASE_MARGIN_MS
            ):
                return False
            changes = {"confirm_attempted": True, "claim_id": None, "redrive_requested_at_ms": now_ms}
            self._operator_write(
                current, ChangeKind.REDRIVEN, reason, now_ms, GuaranteeStatus.REDRIVE, **changes
            )
        return True

    # plumbing -------------------------------------------------------------------------------------------

    def _holding(self, ref: GuaranteeRef, claim_id: str) -> GuaranteeView | None:
        current = self._items.get(ref)
        if current is None or current.claim_id != claim_id or current.status is not GuaranteeStatus.DECIDING:
            return None
        return current

    def _operator_write(
        self,
        current: GuaranteeView,
        kind: ChangeKind,
        reason: str,
        now_ms: int,
        status: GuaranteeStatus,
        **changes: Any,
    ) -> None:
        """An operator's transition: back in the sweep's sight from now."""
        written = replace(
            current, status=status, follow_up=_swept_after(now_ms), updated_at_ms=now_ms, **changes
        )
        self._store(written, kind, reason, previous=current.status)

    def _store(
        self,
        view: GuaranteeView,
        kind: ChangeKind,
        reason: str | None,
        *,
        previous: GuaranteeStatus | None = None,
    ) -> None:
        change = LastChange(kind, self.actor.identity, self.actor.note, view.updated_at_ms, reason, previous)
        self._items[view.ref] = replace(view, last_change=change)
        self.history.append((view.ref, kind, view.status, reason))

    def _maybe_fail(self, operation: str) -> None:
        with self._lock:
            if self.fail_next and self.fail_next[0] == operation:
                self.fail_next.popleft()
                raise PersistenceError(f"DynamoDB {operation} failed: ProvisionedThroughputExceededException")


def _swept_after(at_ms: int) -> FollowUp:
    """The sweep's follow-up: the guarantee counts as stuck if it is still here after this long."""
    return FollowUp(FollowUpQueue.SWEEP, at_ms + DEFAULT_STUCK_AFTER_SECONDS * 1000)


def _apply_outcome(current: GuaranteeView, outcome: GuaranteeOutcome, now_ms: int) -> GuaranteeView:
    decision = current.decision
    if outcome.decision is not None:
        chosen = outcome.decision
        decision = DecisionView(
            verdict=chosen.verdict,
            rule=chosen.rule,
            reason=chosen.reason,
            inputs=dict(chosen.inputs) or (decision.inputs if decision else {}),
            missing_facts=chosen.missing_facts,
            policy=chosen.policy or (decision.policy if decision else None),
            decided_at_ms=outcome.decided_at_ms,
        )
    review = current.review
    if outcome.status is GuaranteeStatus.REVIEW:
        review = replace(
            _NO_REVIEW,
            requested_by_rule=outcome.decision.rule if outcome.decision else None,
            requested_reason=outcome.decision.reason if outcome.decision else None,
            requested_at_ms=outcome.decided_at_ms,
            hold_reason=outcome.hold_reason,
        )
    confirm = current.confirm
    if outcome.confirmed_at_ms is not None:
        confirm = ConfirmView(
            confirmed_at_ms=outcome.confirmed_at_ms,
            flinks_session_id=outcome.flinks_session_id,
            flinks_reference_id=outcome.flinks_reference_id,
            recovered_from_details=outcome.recovered_from_details,
            webhook_to_confirm_ms=outcome.webhook_to_confirm_ms,
        )
    shadow = current.shadow
    if outcome.shadow is not None:
        shadow = DecisionView(
            outcome.shadow.verdict,
            outcome.shadow.rule,
            outcome.shadow.reason,
            {},
            (),
            outcome.shadow.policy,
            outcome.decided_at_ms,
        )
    return replace(
        current,
        status=outcome.status,
        claim_id=None,
        lease_expires_at_ms=0,
        confirm_settles_at_ms=None,
        decision=decision,
        shadow=shadow,
        review=review,
        confirm=confirm,
        failure_reason=outcome.failure_reason if outcome.status is GuaranteeStatus.FAILED else None,
        follow_up=outcome.follow_up,
        updated_at_ms=now_ms,
    )


# -- Flinks -----------------------------------------------------------------------------------------------


@dataclass
class Offer:
    """One guarantee Flinks issued for a session (a second one is a Next Best Offer)."""

    amount: Decimal
    highest_debit: Decimal
    guarantee_id: str | None = None
    decision: bool | None = None
    pending: tuple[bool, float] | None = None  # a confirm being applied: (decision, applied at)


@dataclass
class FakeSessionState:
    session_id: str
    offers: list[Offer]
    risk: str = "Low"
    offered: bool = True
    balance: Decimal = Decimal("5000.00")
    details_extra: dict[str, Any] = field(default_factory=dict)
    guarantee_block_override: dict[str, Any] | None = None
    faults: dict[str, deque[str | Exception]] = field(
        default_factory=lambda: {"details": deque(), "confirm": deque()}
    )


@dataclass(frozen=True)
class ConfirmAnswerRecord:
    session_id: str | None
    reference_id: str | None


@dataclass(frozen=True)
class ConfirmCall:
    session_id: str
    offer_index: int
    accepted: bool
    at: float
    applied: bool  # False: it never took effect (lost on the way, refused as a conflict)


class FakeFlinks:
    """Flinks' session calls in memory. ``sticky``: ``guaranteeAccepted`` keeps the first offer's decision
    (the pessimistic reading of an unpublished behaviour); ``expose_ids``: /details carries guaranteeId.

    Confirm faults (``add_fault(sid, "confirm", kind)``): ``unknown-applied`` (applied, answer lost),
    ``unknown-lost`` (never applied, no answer), ``slow:S`` (applied S seconds later, the call times out
    now), ``conflict`` (409), ``unavailable`` (a 503 the client gave up on: not applied), ``refused``
    (400), ``auth`` (credentials refused). Details faults: ``unavailable``, ``refused``. An exception
    instance, at either call, is raised as it is before the call does anything (any error the client
    may raise).
    """

    def __init__(self, clock: FakeClock, *, sticky: bool = False, expose_ids: bool = False) -> None:
        self._clock = clock
        self._sticky = sticky
        self._expose_ids = expose_ids
        self._lock = threading.Lock()
        self.sessions: dict[str, FakeSessionState] = {}
        self.confirms: list[ConfirmCall] = []
        self.details_calls: list[str] = []

    def add_session(
        self,
        session_id: str,
        *,
        amount: str = "250.00",
        highest_debit: str | None = None,
        guarantee_id: str | None = None,
        risk: str = "Low",
        offered: bool = True,
    ) -> FakeSessionState:
        offer = Offer(Decimal(amount), Decimal(highest_debit or amount), guarantee_id)
        state = FakeSessionState(session_id, [offer], risk=risk, offered=offered)
        self.sessions[session_id] = state
        return state

    def add_offer(
        self,
        session_id: str,
        *,
        amount: str,
        highest_debit: str | None = None,
        guarantee_id: str | None = None,
    ) -> None:
        self.sessions[session_id].offers.append(
            Offer(Decimal(amount), Decimal(highest_debit or amount), guarantee_id)
        )

    def add_fault(self, session_id: str, endpoint: str, *kinds: str | Exception) -> None:
        self.sessions[session_id].faults[endpoint].extend(kinds)

    def confirms_for(self, session_id: str) -> list[bool]:
        """Every confirm that reached Flinks for the session, applied or not."""
        return [call.accepted for call in self.confirms if call.session_id == session_id]

    def applied_confirms_for(self, session_id: str) -> list[tuple[int, bool]]:
        """(offer index, decision) of every confirm Flinks applied for the session."""
        return [
            (c.offer_index, c.accepted) for c in self.confirms if c.session_id == session_id and c.applied
        ]

    def for_session(self, session_id: str, *, deadline: float) -> _FakeSession:
        return _FakeSession(self, session_id)

    # what the calls see ---------------------------------------------------------------------------------

    def details_of(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            state = self.sessions[session_id]
            self._apply_due(state)
            offer = state.offers[-1]
            accepted = offer.decision
            if self._sticky:
                accepted = next((o.decision for o in state.offers if o.decision is not None), None)
            block: dict[str, Any] = {
                "guaranteeOffered": state.offered,
                "guaranteeAccepted": accepted,
                "highestDebitAmountToGuarantee": offer.highest_debit,
                "overallRiskLevel": state.risk,
                "transactionRiskLevel": state.risk,
                "userRiskLevel": state.risk,
                "otherRiskLevel": state.risk,
            }
            if self._expose_ids and offer.guarantee_id:
                block["guaranteeId"] = offer.guarantee_id
            if state.guarantee_block_override is not None:
                block = {**state.guarantee_block_override, "guaranteeAccepted": accepted}
            return {
                "sessionId": session_id,
                "referenceId": f"REF-{session_id[:8]}",
                "amount": offer.amount,
                "currency": "CAD",
                "payor": {"account": {"availableBalance": state.balance}},
                "guaranteeDetails": block,
                **state.details_extra,
            }

    def _apply_due(self, state: FakeSessionState) -> None:
        for offer in state.offers:
            if offer.pending is not None and offer.pending[1] <= self._clock.now:
                offer.decision, offer.pending = offer.pending[0], None

    def _confirm(self, session_id: str, accepted: bool) -> ConfirmAnswerRecord:
        with self._lock:
            state = self.sessions[session_id]
            self._apply_due(state)
            fault = state.faults["confirm"].popleft() if state.faults["confirm"] else None
            if isinstance(fault, Exception):
                raise fault
            if fault in ("unavailable", "refused", "auth"):
                raise _fault_error("confirm", fault)
            index = len(state.offers) - 1
            offer = state.offers[index]
            conflict = fault == "conflict" or offer.decision is not None or offer.pending is not None
            applied = not conflict and fault != "unknown-lost"
            self.confirms.append(ConfirmCall(session_id, index, accepted, self._clock.now, applied))
            if conflict:
                raise FlinksConflictError("Flinks confirm rejected the request (409)", status_code=409)
            if fault == "unknown-lost":
                raise FlinksConfirmOutcomeUnknownError("Flinks confirm timed out")
            if fault is not None and fault.startswith("slow:"):
                offer.pending = (accepted, self._clock.now + float(fault.removeprefix("slow:")))
                raise FlinksConfirmOutcomeUnknownError("Flinks confirm timed out")
            offer.decision = accepted
            if fault == "unknown-applied":
                raise FlinksConfirmOutcomeUnknownError("Flinks confirm: connection failed")
            return ConfirmAnswerRecord(session_id, f"REF-{session_id[:8]}")

    def _details(self, session_id: str) -> Mapping[str, Any]:
        state = self.sessions[session_id]
        with self._lock:
            self.details_calls.append(session_id)
            fault = state.faults["details"].popleft() if state.faults["details"] else None
        if isinstance(fault, Exception):
            raise fault
        if fault is not None:
            raise _fault_error("details", fault)
        return self.details_of(session_id)


class _FakeSession:
    def __init__(self, flinks: FakeFlinks, session_id: str) -> None:
        self._flinks = flinks
        self._session_id = session_id

    def details(self) -> Mapping[str, Any]:
        return self._flinks._details(self._session_id)

    def confirm(self, accepted: bool) -> ConfirmAnswerRecord:
        return self._flinks._confirm(self._session_id, accepted)


def _fault_error(operation: str, fault: str) -> Exception:
    if fault == "unavailable":
        return FlinksTransientError(
            f"Flinks {operation} gave up after 5 attempts: answered 503", status_code=503
        )
    if fault == "auth":
        return FlinksAuthError(f"Flinks {operation} refused a freshly issued token (401)", status_code=401)
    return FlinksPermanentError(f"Flinks {operation} rejected the request (400)", status_code=400)
