"""The processor's state machine on fakes of its ports: every transition, crash point and recovery.

The fakes (testkit.fakes) enforce the repository's conditional writes and play Flinks' confirms that
fail before Flinks saw them, after it applied them, or while it is still applying them; the clock is
fake, so waits for a lease or a settle delay take no time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from decision_processor.processor import (
    MANUAL_REVIEW_RULE,
    RECOVERED_RULE,
    Disposition,
    GuaranteeProcessor,
    RecordResult,
    StreamRecord,
)
from geft.errors import (
    FlinksAuthError,
    FlinksConfirmOutcomeUnknownError,
    FlinksPermanentError,
    FlinksProtocolError,
    FlinksResponseTooLargeError,
    FlinksSessionNotFoundError,
    FlinksTransientError,
)
from geft.items import ConfirmView
from geft.models import Actor, ChangeKind, FollowUpQueue, GuaranteeRef, GuaranteeStatus, Verdict
from geft.policy import DEFAULT_POLICY_JSON, MISSING_FACTS_RULE, DecisionPolicy
from geft.ports import ClaimResult

from testkit.fakes import ConfirmAnswerRecord, FakeClock, FakeFlinks, FakeGuaranteeStore, InlineExecutor

DEFAULT_POLICY = DecisionPolicy.from_json(DEFAULT_POLICY_JSON)
SETTLE_SECONDS = 20.0
LEASE_SECONDS = 60.0


def webhook(session_id: str, amount: str | None = "250.00", **fields: Any) -> str:
    body: dict[str, Any] = {
        "type": "GuaranteeEmitted",
        "when": "2027-01-15T10:00:00Z",
        "sessionId": session_id,
    }
    if amount is not None:
        body["amount"] = float(amount) if "." in amount else int(amount)
    body.update(fields)
    return json.dumps(body)


class Pipeline:
    """The processor wired to fakes, with the helpers a scenario needs."""

    def __init__(
        self,
        *,
        sticky: bool = False,
        expose_ids: bool = False,
        shadow: DecisionPolicy | None = None,
        policy: DecisionPolicy = DEFAULT_POLICY,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.clock = FakeClock()
        self.store = FakeGuaranteeStore(clock=self.clock)
        self.flinks = FakeFlinks(self.clock, sticky=sticky, expose_ids=expose_ids)
        self.credential_refreshes = 0
        self.processor = self.build(policy=policy, shadow=shadow, settle_seconds=settle_seconds)
        self._sequence = 0

    def build(
        self,
        *,
        policy: DecisionPolicy,
        shadow: DecisionPolicy | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        executor: Any = None,
        sleep: Any = None,
    ) -> GuaranteeProcessor:
        def refreshed() -> None:
            self.credential_refreshes += 1

        return GuaranteeProcessor(
            store=self.store,
            flinks=self.flinks,
            policy=policy,
            shadow_policy=shadow,
            executor=executor or InlineExecutor(),
            finish_reserve_seconds=1.0,
            review_timeout_seconds=300,
            reconcile_delay_seconds=900,
            confirm_settle_seconds=settle_seconds,
            on_credentials_rejected=refreshed,
            clock=self.clock.time,
            monotonic=self.clock.monotonic,
            sleep=sleep or self.clock.sleep,
        )

    def session(self, **scenario: Any) -> str:
        session_id = str(uuid.uuid4())
        self.flinks.add_session(session_id, **scenario)
        return session_id

    def receive(self, session_id: str, key: str = "amount:250.00", **body: Any) -> GuaranteeRef:
        ref = GuaranteeRef(session_id, key)
        self.store.insert(ref, webhook(session_id, **body))
        return ref

    def guarantee(self, *confirm_faults: str, **scenario: Any) -> tuple[str, GuaranteeRef]:
        """A session Flinks knows, its guarantee stored, and the faults its confirms will meet."""
        session_id = self.session(**scenario)
        if confirm_faults:
            self.flinks.add_fault(session_id, "confirm", *confirm_faults)
        return session_id, self.receive(session_id)

    def deliver(self, *refs: GuaranteeRef, processor: GuaranteeProcessor | None = None) -> list[RecordResult]:
        """One invocation with one stream record per ref (its own lease and deadline)."""
        records = []
        for ref in refs:
            self._sequence += 1
            records.append(StreamRecord(str(self._sequence), ref))
        return (processor or self.processor).process_batch(
            records,
            deadline=self.clock.monotonic() + LEASE_SECONDS,
            lease_until_ms=self.clock.ms() + int(LEASE_SECONDS * 1000) + 2000,
        )

    def one(self, ref: GuaranteeRef) -> RecordResult:
        [result] = self.deliver(ref)
        return result

    def status(self, ref: GuaranteeRef) -> GuaranteeStatus:
        return self.store.get(ref).status


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


# -- the happy paths and the policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "verdict", "rule", "reason"),
    [
        ({}, Verdict.ACCEPT, "default", None),
        ({"risk": "High"}, Verdict.REJECT, "high-risk", "HIGH_RISK"),
        ({"highest_debit": "100.00"}, Verdict.REJECT, "shortfall", "SHORTFALL"),
        ({"offered": False}, Verdict.REJECT, "no-guarantee", "NO_GUARANTEE"),
    ],
)
def test_a_guarantee_is_decided_confirmed_once_and_recorded_with_rule_reason_and_policy(
    pipeline: Pipeline, scenario: dict[str, Any], verdict: Verdict, rule: str, reason: str | None
) -> None:
    # GIVEN a stored guarantee of a Flinks session
    session_id, ref = pipeline.guarantee(**scenario)

    # WHEN the stream delivers it
    result = pipeline.one(ref)

    # THEN one confirm with the policy's decision, and the item says which rule, why and which policy
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [verdict is Verdict.ACCEPT]
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.CONFIRMED
    assert item.decision is not None
    assert (item.decision.verdict, item.decision.rule, item.decision.reason) == (verdict, rule, reason)
    assert item.decision.policy == DEFAULT_POLICY.identity
    assert item.follow_up is not None
    assert item.follow_up.queue is FollowUpQueue.RECONCILE
    assert item.confirm is not None
    assert not item.confirm.recovered_from_details


def test_a_policy_review_waits_for_a_person_with_a_deadline_and_sends_nothing(pipeline: Pipeline) -> None:
    _, ref = pipeline.guarantee(risk="Unknown")

    result = pipeline.one(ref)

    assert result.disposition is Disposition.REVIEW
    assert pipeline.flinks.confirms == []
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.REVIEW
    assert item.review is not None
    assert item.review.requested_by_rule == "unknown-risk"
    assert item.follow_up is not None
    assert item.follow_up.queue is FollowUpQueue.REVIEW
    assert item.follow_up.due_ms == pipeline.clock.ms() + 300_000


def test_an_operator_decision_is_confirmed_as_the_operators(pipeline: Pipeline) -> None:
    # GIVEN a guarantee in review, decided by an operator
    session_id, ref = pipeline.guarantee(risk="Unknown")
    pipeline.one(ref)
    pipeline.store.actor = Actor.operator("arn:aws:iam::123456789012:user/m.tremblay", "m.tremblay")
    assert pipeline.store.record_review_decision(
        ref, verdict=Verdict.ACCEPT, reason="verified", now_ms=pipeline.clock.ms()
    )

    # WHEN the REVIEWED record reaches the processor
    result = pipeline.one(ref)

    # THEN the operator's decision is sent once, recorded as a manual review; no /details needed
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [True]
    item = pipeline.store.get(ref)
    assert item.decision is not None
    assert item.decision.rule == MANUAL_REVIEW_RULE
    assert pipeline.flinks.details_calls == [session_id]  # only the first decision read /details


def test_webhook_facts_replace_details_only_when_they_carry_every_fact_the_policy_reads(
    pipeline: Pipeline,
) -> None:
    complete = {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 250, "overallRiskLevel": "Low"}
    first = pipeline.session()
    second = pipeline.session()
    ref_complete = pipeline.receive(first, guaranteeDetails=complete)
    ref_empty = pipeline.receive(second, guaranteeDetails={})

    pipeline.one(ref_complete)
    pipeline.one(ref_empty)

    assert pipeline.flinks.details_calls == [second]  # {} is not every fact: /details was read
    assert pipeline.status(ref_complete) is GuaranteeStatus.CONFIRMED
    assert pipeline.status(ref_empty) is GuaranteeStatus.CONFIRMED


@pytest.mark.parametrize(
    ("block", "missing"),
    [
        ({"guaranteeOffered": True}, ("shortfall",)),
        (
            {"guaranteeOffered": True, "highestDebitAmountToGuarantee": 250, "overallRiskLevel": "HIGH"},
            ("overallRiskLevel",),
        ),
        ({}, ("guaranteeOffered",)),
    ],
)
def test_missing_or_undocumented_facts_never_accept_they_go_to_review(
    pipeline: Pipeline, block: dict[str, Any], missing: tuple[str, ...]
) -> None:
    # GIVEN /details whose guarantee block lacks a fact a reject rule needs (or spells it "HIGH")
    session_id = pipeline.session()
    pipeline.flinks.sessions[session_id].guarantee_block_override = block
    ref = pipeline.receive(session_id)

    result = pipeline.one(ref)

    # THEN nothing is sent: a person decides, and the decision names the missing fact
    assert result.disposition is Disposition.REVIEW
    assert pipeline.flinks.confirms == []
    item = pipeline.store.get(ref)
    assert item.decision is not None
    assert item.decision.rule == MISSING_FACTS_RULE
    assert set(missing) <= set(item.decision.missing_facts)


def test_a_missing_amount_goes_to_review(pipeline: Pipeline) -> None:
    session_id = pipeline.session()
    pipeline.flinks.sessions[session_id].details_extra = {"amount": None}
    ref = pipeline.receive(session_id, amount=None, key="single")

    result = pipeline.one(ref)

    assert result.disposition is Disposition.REVIEW
    assert pipeline.store.get(ref).decision.missing_facts == ("shortfall",)  # type: ignore[union-attr]


# -- transient failures and the settle delay -----------------------------------------------------------------


def test_a_transient_details_failure_releases_the_claim_and_the_retry_decides(pipeline: Pipeline) -> None:
    session_id, ref = pipeline.guarantee()
    pipeline.flinks.add_fault(session_id, "details", "unavailable")

    first = pipeline.one(ref)
    assert first.disposition is Disposition.RETRY
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.RECEIVED
    assert not item.confirm_attempted
    assert item.last_change is not None
    assert item.last_change.kind is ChangeKind.RELEASED

    second = pipeline.one(ref)
    assert second.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [True]


def test_a_confirm_applied_but_unanswered_is_recorded_from_details_after_it_settles(
    pipeline: Pipeline,
) -> None:
    # GIVEN a confirm that reached Flinks, which applied it, but whose answer was lost
    session_id, ref = pipeline.guarantee("unknown-applied")

    first = pipeline.one(ref)

    # THEN the claim is released as "a confirm may have gone", not to be looked at before it settles
    assert first.disposition is Disposition.RETRY
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.DECIDING
    assert item.confirm_attempted
    assert item.confirm_settles_at_ms == pipeline.clock.ms() + int(SETTLE_SECONDS * 1000)
    assert pipeline.store.claim(ref, claim_id="x", now_ms=pipeline.clock.ms(), lease_until_ms=0).result is (
        ClaimResult.SETTLING
    )

    # WHEN the stream retries at once: it waits out the settle delay, then reads /details
    started = pipeline.clock.now
    second = pipeline.one(ref)

    # THEN Flinks' record is taken, never sent again
    assert second.disposition is Disposition.CONFIRMED
    assert pipeline.clock.now - started >= SETTLE_SECONDS
    assert pipeline.flinks.confirms_for(session_id) == [True]
    item = pipeline.store.get(ref)
    assert item.confirm is not None
    assert item.confirm.recovered_from_details
    assert item.decision is not None
    assert item.decision.rule == RECOVERED_RULE


def test_a_slow_confirm_is_never_posted_twice(pipeline: Pipeline) -> None:
    # GIVEN Flinks still applying the confirm when the read timeout fires (applied 15 s later)
    session_id, ref = pipeline.guarantee("slow:15")

    # WHEN the attempt fails and the retry comes at once
    assert pipeline.one(ref).disposition is Disposition.RETRY
    assert pipeline.one(ref).disposition is Disposition.CONFIRMED

    # THEN the retry looked only after the 20 s settle: one confirm, recovered from /details
    assert pipeline.flinks.confirms_for(session_id) == [True]
    assert pipeline.store.get(ref).confirm.recovered_from_details  # type: ignore[union-attr]


def test_residual_risk_a_confirm_applied_after_the_settle_delay_is_sent_again() -> None:
    # The documented residual risk (decisions.md): if Flinks applies a confirm later than the settle
    # delay, /details still shows nothing and the decision is sent again. Here Flinks answers it 409, and
    # with /details still empty the guarantee is FAILED with both facts, which pages an operator.
    pipeline = Pipeline(settle_seconds=5.0)
    session_id, ref = pipeline.guarantee("slow:30")

    assert pipeline.one(ref).disposition is Disposition.RETRY
    result = pipeline.one(ref)

    assert pipeline.flinks.confirms_for(session_id) == [True, True]
    assert result.disposition is Disposition.FAILED
    assert "409" in (pipeline.store.get(ref).failure_reason or "")
    pipeline.clock.advance(30)
    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, True)]  # the first, applied late
    assert pipeline.flinks.details_of(session_id)["guaranteeDetails"]["guaranteeAccepted"] is True


def test_a_lost_confirm_is_sent_again_once_details_still_shows_no_decision(pipeline: Pipeline) -> None:
    session_id, ref = pipeline.guarantee("unknown-lost")

    assert pipeline.one(ref).disposition is Disposition.RETRY
    assert pipeline.one(ref).disposition is Disposition.CONFIRMED

    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, True)]
    assert not pipeline.store.get(ref).confirm.recovered_from_details  # type: ignore[union-attr]


def test_a_failed_final_write_releases_the_claim_and_the_retry_records_flinks_answer(
    pipeline: Pipeline,
) -> None:
    # GIVEN the confirm went through but the final write failed
    session_id, ref = pipeline.guarantee(risk="High")
    pipeline.store.fail_next.append("finish")
    assert pipeline.one(ref).disposition is Disposition.RETRY
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.DECIDING
    assert item.confirm_attempted
    assert item.lease_expires_at_ms == 0

    # WHEN the stream retries
    result = pipeline.one(ref)

    # THEN Flinks' record of the reject is kept, and nothing is sent again
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [False]
    item = pipeline.store.get(ref)
    assert item.decision is not None
    assert item.decision.verdict is Verdict.REJECT
    assert item.confirm is not None
    assert item.confirm.recovered_from_details


def test_a_crash_after_the_confirm_is_recovered_once_the_lease_has_ended(pipeline: Pipeline) -> None:
    # GIVEN an invocation that claimed the guarantee, sent its confirm and died before any write
    session_id, ref = pipeline.guarantee()
    now = pipeline.clock.ms()
    assert pipeline.store.claim(ref, claim_id="dead", now_ms=now, lease_until_ms=now + 62_000).guarantee
    pipeline.flinks.sessions[session_id].offers[0].decision = True

    # WHEN the stream retries within the lease, then again after it
    assert pipeline.one(ref).disposition is Disposition.RETRY  # its budget ran out waiting for the lease
    pipeline.clock.advance(5)
    result = pipeline.one(ref)

    # THEN the takeover reads /details first and records Flinks' answer without confirming
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms == []
    assert pipeline.store.get(ref).confirm.recovered_from_details  # type: ignore[union-attr]


def test_refused_credentials_retry_and_reread_the_secret(pipeline: Pipeline) -> None:
    _, ref = pipeline.guarantee("auth")

    assert pipeline.one(ref).disposition is Disposition.RETRY
    assert pipeline.credential_refreshes == 1
    assert pipeline.one(ref).disposition is Disposition.CONFIRMED


def test_a_permanent_refusal_is_failed_with_its_reason(pipeline: Pipeline) -> None:
    _, ref = pipeline.guarantee("refused")

    result = pipeline.one(ref)

    assert result.disposition is Disposition.FAILED
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.FAILED
    assert item.failure_reason is not None
    assert "400" in item.failure_reason


# -- 409 on confirm ---------------------------------------------------------------------------------------


def test_a_409_whose_details_show_our_decision_is_recorded_not_failed(pipeline: Pipeline) -> None:
    session_id, ref = pipeline.guarantee()
    pipeline.flinks.sessions[session_id].offers[0].decision = True  # Flinks already holds our accept
    result = pipeline.one(ref)

    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.store.get(ref).confirm.recovered_from_details  # type: ignore[union-attr]


def test_a_409_whose_details_show_the_opposite_decision_fails_and_pages(pipeline: Pipeline) -> None:
    session_id, ref = pipeline.guarantee(risk="High")
    pipeline.flinks.sessions[session_id].offers[0].decision = True  # accepted: we would reject

    result = pipeline.one(ref)

    assert result.disposition is Disposition.FAILED
    assert "opposite" in (pipeline.store.get(ref).failure_reason or "")


def test_a_409_with_no_decision_at_flinks_fails_with_both_facts(pipeline: Pipeline) -> None:
    _, ref = pipeline.guarantee("conflict")

    result = pipeline.one(ref)

    assert result.disposition is Disposition.FAILED
    assert "no decision" in (pipeline.store.get(ref).failure_reason or "")


# -- each error the Flinks client raises, at each call -------------------------------------------------------
# tests/integration/test_flinks_client.py, test_flinks_client_outcomes.py and test_flinks_limits.py prove
# which error each HTTP answer becomes (a 5xx after arriving, a timeout or a drop on confirm: outcome
# unknown; 503/429/408, refused connections and exhausted retries: transient; a malformed or oversized
# body: transient; 400/404: permanent; a second 401: auth). Here: what the state machine does with each.

_RETRIED = "retried"  # reported for retry, the claim released as "no confirm reached Flinks"
_UNKNOWN = "unknown"  # reported for retry, released as "a confirm may have gone", after a settle delay
_FAILED = "failed"  # FAILED with Flinks' reason, nothing (more) sent

_CLIENT_ERRORS: dict[str, tuple[Exception, str]] = {
    "transient-503": (
        FlinksTransientError("gave up after 5 attempts: answered 503", status_code=503),
        _RETRIED,
    ),
    "malformed-body": (
        FlinksProtocolError("answered 200 with a body that is not JSON", status_code=200),
        _RETRIED,
    ),
    "oversized-body": (FlinksResponseTooLargeError("answer over 1048576 bytes"), _RETRIED),
    "credentials-refused": (
        FlinksAuthError("refused a freshly issued token (401)", status_code=401),
        _RETRIED,
    ),
    "refused-400": (FlinksPermanentError("rejected the request (400)", status_code=400), _FAILED),
    "session-not-found-404": (
        FlinksSessionNotFoundError("Session Not Found (404)", status_code=404),
        _FAILED,
    ),
}
_CONFIRM_ONLY: dict[str, tuple[Exception, str]] = {
    "outcome-unknown": (
        FlinksConfirmOutcomeUnknownError("answered 500 after arriving", status_code=500),
        _UNKNOWN,
    ),
}


@pytest.mark.parametrize(
    ("call", "name"),
    [("details", name) for name in _CLIENT_ERRORS]
    + [("confirm", name) for name in {**_CLIENT_ERRORS, **_CONFIRM_ONLY}],
)
def test_each_client_error_ends_the_attempt_as_its_kind_and_the_retry_confirms_once(
    pipeline: Pipeline, call: str, name: str
) -> None:
    # GIVEN a stored guarantee whose details or confirm call raises the error once
    error, kind = {**_CLIENT_ERRORS, **_CONFIRM_ONLY}[name]
    session_id, ref = pipeline.guarantee()
    pipeline.flinks.add_fault(session_id, call, error)

    # WHEN the stream delivers it
    first = pipeline.one(ref)

    # THEN a transient error releases the claim untouched, an unknown outcome marks the confirm as
    # attempted and settling, and a refusal is FAILED with Flinks' reason; nothing reached Flinks
    item = pipeline.store.get(ref)
    assert pipeline.flinks.confirms == []
    if kind == _FAILED:
        assert (first.disposition, item.status) == (Disposition.FAILED, GuaranteeStatus.FAILED)
        assert (item.failure_reason or "").startswith("Flinks refused")
        return
    assert first.disposition is Disposition.RETRY
    assert item.lease_expires_at_ms == 0  # released: the stream's retry may take it at once
    assert item.confirm_attempted is (kind == _UNKNOWN)
    assert item.status is (GuaranteeStatus.DECIDING if kind == _UNKNOWN else GuaranteeStatus.RECEIVED)
    assert (item.confirm_settles_at_ms is not None) is (kind == _UNKNOWN)
    assert pipeline.credential_refreshes == int(isinstance(error, FlinksAuthError))

    # WHEN the stream retries, THEN the guarantee is confirmed once (after /details, if it may have gone)
    details_before = len(pipeline.flinks.details_calls)
    assert pipeline.one(ref).disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [True]
    assert len(pipeline.flinks.details_calls) == details_before + 1
    assert not pipeline.store.get(ref).confirm.recovered_from_details  # type: ignore[union-attr]


def test_a_confirm_answered_without_a_readable_body_is_confirmed(pipeline: Pipeline) -> None:
    # GIVEN Flinks applying the confirm and answering 2xx with a body that cannot be read (the client's
    # answer then carries no ids: test_flinks_client.py, test_flinks_limits.py)
    session_id, ref = pipeline.guarantee()
    real = pipeline.flinks._confirm

    def unreadable_answer(sid: str, accepted: bool) -> Any:
        real(sid, accepted)
        return ConfirmAnswerRecord(session_id=None, reference_id=None)

    pipeline.flinks._confirm = unreadable_answer  # type: ignore[method-assign,assignment]

    # WHEN / THEN the 2xx is the outcome: CONFIRMED once, without Flinks' ids
    assert pipeline.one(ref).disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [True]
    confirm = pipeline.store.get(ref).confirm
    assert confirm is not None
    assert (confirm.flinks_session_id, confirm.flinks_reference_id) == (None, None)


# -- a crash at every step -----------------------------------------------------------------------------------
# The path is claim -> details -> decide -> confirm -> record. A crash is a SystemExit raised from the step
# (before or after its real work), which no ``except Exception`` catches: the invocation dies there as a
# killed container would, its claim held until its lease ends. (A crash in the client's authorize leaves
# what "before-details" leaves: nothing at Flinks and a claim that runs out.)


class ContainerKilledError(SystemExit):
    """Raised from a patched step: the invocation dies there."""


_CRASH_STEPS = {
    "before-claim": ("store", "claim", False),
    "after-claim": ("store", "claim", True),
    "before-details": ("flinks", "_details", False),
    "after-details": ("flinks", "_details", True),
    "before-confirm": ("flinks", "_confirm", False),
    "after-confirm-answered": ("flinks", "_confirm", True),
    "before-record": ("store", "finish", False),
    "after-record": ("store", "finish", True),
}


@pytest.mark.parametrize("risk", ["Low", "High"])
@pytest.mark.parametrize("step", list(_CRASH_STEPS))
def test_a_crash_at_any_step_is_taken_over_after_the_lease_and_confirmed_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, step: str, risk: str
) -> None:
    # GIVEN a stored guarantee (accepted, or rejected for risk) and an invocation killed at the step
    session_id, ref = pipeline.guarantee(risk=risk)
    owner_name, method, after = _CRASH_STEPS[step]
    owner = pipeline.store if owner_name == "store" else pipeline.flinks
    real = getattr(owner, method)

    def killed(*args: Any, **kwargs: Any) -> Any:
        if after:
            real(*args, **kwargs)
        raise ContainerKilledError("container killed")

    with monkeypatch.context() as patch:
        patch.setattr(owner, method, killed)
        with pytest.raises(SystemExit):
            pipeline.one(ref)

    # THEN Flinks holds a confirm exactly when the crash came after it answered
    reached = method == "finish" or (method == "_confirm" and after)
    assert pipeline.flinks.confirms_for(session_id) == ([risk == "Low"] if reached else [])

    # WHEN the stream retries after the dead invocation's lease
    pipeline.clock.advance(LEASE_SECONDS + 3)
    result = pipeline.one(ref)

    # THEN one confirm in all, with the policy's decision; one that reached Flinks but was never
    # recorded is learnt from /details, and a recorded one is left alone
    recorded = step == "after-record"
    assert result.disposition is (Disposition.SKIPPED if recorded else Disposition.CONFIRMED)
    assert pipeline.flinks.confirms_for(session_id) == [risk == "Low"]
    item = pipeline.store.get(ref)
    assert item.status is GuaranteeStatus.CONFIRMED
    assert item.decision is not None
    assert item.decision.verdict is (Verdict.ACCEPT if risk == "Low" else Verdict.REJECT)
    assert item.confirm is not None
    assert item.confirm.recovered_from_details is (reached and not recorded)


# -- a second guarantee of the session (Next Best Offer) -----------------------------------------------------


def _first_offer_answered(pipeline: Pipeline, *, risk: str = "Low") -> tuple[str, GuaranteeRef]:
    session_id = pipeline.session(risk=risk)
    first = pipeline.receive(session_id)
    assert pipeline.one(first).disposition is Disposition.CONFIRMED
    return session_id, first


@pytest.mark.parametrize("sticky", [False, True])
def test_second_guarantee_meeting_503s_is_decided_and_sent_not_recovered_from_the_first(sticky: bool) -> None:
    # GIVEN G1 accepted and confirmed, then a second offer G2 that the policy rejects (a shortfall)
    pipeline = Pipeline(sticky=sticky)
    session_id, _ = _first_offer_answered(pipeline)
    pipeline.flinks.add_offer(session_id, amount="200.00", highest_debit="150.00")
    second = pipeline.receive(session_id, key="amount:200.00", amount="200.00")
    # WHEN G2's confirm meets 503s for a whole invocation (Flinks never took it)
    pipeline.flinks.add_fault(session_id, "confirm", "unavailable")
    assert pipeline.one(second).disposition is Disposition.RETRY

    # THEN the retry decides G2 itself and sends its reject: nothing is inherited from G1
    result = pipeline.one(second)
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, True), (1, False)]
    item = pipeline.store.get(second)
    assert item.decision is not None
    assert item.decision.verdict is Verdict.REJECT
    assert item.decision.rule == "shortfall"


def _second_offer_after_a_reject_with_a_lost_confirm(*, sticky: bool) -> tuple[Pipeline, str, GuaranteeRef]:
    """G1 rejected and confirmed; G2 (which the policy accepts) sent, its confirm lost: one RETRY."""
    pipeline = Pipeline(sticky=sticky)
    session_id, _ = _first_offer_answered(pipeline, risk="High")
    pipeline.flinks.sessions[session_id].risk = "Low"
    pipeline.flinks.add_offer(session_id, amount="200.00")
    second = pipeline.receive(session_id, key="amount:200.00", amount="200.00")
    pipeline.flinks.add_fault(session_id, "confirm", "unknown-lost")
    assert pipeline.one(second).disposition is Disposition.RETRY
    return pipeline, session_id, second


def test_second_guarantee_with_an_unknown_confirm_is_sent_when_details_show_no_decision_for_it() -> None:
    # GIVEN G1 rejected; G2's first confirm is lost; /details shows G2 undecided
    pipeline, session_id, second = _second_offer_after_a_reject_with_a_lost_confirm(sticky=False)

    result = pipeline.one(second)

    # THEN G2's accept is sent and recorded, never "FAILED: opposite decision"
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, False), (1, True)]


def test_second_guarantee_whose_details_keep_the_first_decision_is_held_for_a_person() -> None:
    # GIVEN a Flinks that keeps guaranteeAccepted session-wide (the pessimistic reading): G1 rejected,
    # then G2's confirm outcome is unknown and /details still says "rejected", for G1 or G2 alike
    pipeline, session_id, second = _second_offer_after_a_reject_with_a_lost_confirm(sticky=True)

    result = pipeline.one(second)

    # THEN no decision is taken from /details: G2 waits in REVIEW with a reason, no fallback applies
    assert result.disposition is Disposition.REVIEW
    item = pipeline.store.get(second)
    assert item.status is GuaranteeStatus.REVIEW
    assert item.review is not None
    assert item.review.hold_reason is not None
    assert "cannot tell" in item.review.hold_reason
    assert item.follow_up is not None
    assert item.follow_up.queue is FollowUpQueue.HOLD
    assert not pipeline.store.record_review_decision(
        second,
        verdict=Verdict.REJECT,
        reason="timeout",
        now_ms=pipeline.clock.ms(),
        only_from=FollowUpQueue.REVIEW,
    )
    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, False)]

    # WHEN an operator who checked with Flinks decides, THEN that decision is sent
    pipeline.store.actor = Actor.operator("arn:aws:iam::123456789012:user/ops", "ops")
    assert pipeline.store.record_review_decision(
        second, verdict=Verdict.ACCEPT, reason="Flinks confirmed G2 open", now_ms=pipeline.clock.ms()
    )
    assert pipeline.one(second).disposition is Disposition.CONFIRMED
    assert pipeline.flinks.applied_confirms_for(session_id) == [(0, False), (1, True)]


def test_guarantee_ids_attribute_a_recorded_decision_with_certainty() -> None:
    pipeline = Pipeline(sticky=True, expose_ids=True)
    session_id = pipeline.session(guarantee_id="g-1")
    first = pipeline.receive(session_id, key="id:g-1", guaranteeId="g-1")
    pipeline.flinks.add_fault(session_id, "confirm", "unknown-applied")
    assert pipeline.one(first).disposition is Disposition.RETRY

    result = pipeline.one(first)

    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.store.get(first).confirm.recovered_from_details  # type: ignore[union-attr]


# -- operators, clocks, defence in depth ---------------------------------------------------------------------


def test_an_item_that_records_a_confirm_is_never_claimed_again(pipeline: Pipeline) -> None:
    # GIVEN a confirmed guarantee whose status someone flipped back to RECEIVED
    session_id, ref = pipeline.guarantee()
    pipeline.one(ref)
    pipeline.store.put(replace(pipeline.store.get(ref), status=GuaranteeStatus.RECEIVED))

    result = pipeline.one(ref)

    assert result.disposition is Disposition.REFUSED
    assert pipeline.flinks.confirms_for(session_id) == [True]


def test_a_fast_operator_clock_cannot_take_a_live_claim(pipeline: Pipeline) -> None:
    # GIVEN a guarantee claimed by a live invocation (lease 62 s from now)
    ref = pipeline.receive(pipeline.session())
    claim = pipeline.store.claim(
        ref, claim_id="live", now_ms=pipeline.clock.ms(), lease_until_ms=pipeline.clock.ms() + 62_000
    )
    assert claim.result is ClaimResult.CLAIMED

    # WHEN an operator whose clock runs 9 minutes ahead redrives it
    skewed = pipeline.clock.ms() + 9 * 60_000

    # THEN it is refused; only a lease over by more than the margin can be taken
    assert not pipeline.store.mark_redrive(ref, now_ms=skewed, reason="operator redrive")
    assert pipeline.store.mark_redrive(
        ref, now_ms=pipeline.clock.ms() + 62_000 + 10 * 60_000 + 1, reason="operator redrive"
    )


def test_a_redrive_of_a_live_claim_cannot_be_claimed_by_a_second_invocation(pipeline: Pipeline) -> None:
    # Even if a REDRIVE landed on a live lease, the processor's claim still waits for the lease.
    ref = pipeline.receive(pipeline.session())
    now = pipeline.clock.ms()
    pipeline.store.claim(ref, claim_id="live", now_ms=now, lease_until_ms=now + 62_000)
    pipeline.store.put(replace(pipeline.store.get(ref), status=GuaranteeStatus.REDRIVE))

    claim = pipeline.store.claim(ref, claim_id="second", now_ms=now + 1_000, lease_until_ms=now + 70_000)

    assert claim.result is ClaimResult.HELD


def test_a_decided_review_stranded_by_failed_claims_is_redriven_and_confirmed(pipeline: Pipeline) -> None:
    # GIVEN an operator's decision whose REVIEWED record died in the stream (every claim throttled)
    session_id, ref = pipeline.guarantee(risk="Unknown")
    pipeline.one(ref)
    pipeline.store.actor = Actor.operator("arn:aws:iam::123456789012:user/ops")
    pipeline.store.record_review_decision(
        ref, verdict=Verdict.REJECT, reason="no", now_ms=pipeline.clock.ms()
    )
    pipeline.store.fail_next.extend(["claim"] * 3)
    for _ in range(3):
        assert pipeline.one(ref).disposition is Disposition.RETRY
    assert pipeline.status(ref) is GuaranteeStatus.REVIEWED

    # WHEN it is sent back (a redrive, or the sweep)
    assert pipeline.store.mark_redrive(ref, now_ms=pipeline.clock.ms(), reason="stuck in REVIEWED")
    result = pipeline.one(ref)

    # THEN the operator's decision is confirmed once
    assert result.disposition is Disposition.CONFIRMED
    assert pipeline.flinks.confirms_for(session_id) == [False]
    assert pipeline.store.get(ref).decision.rule == MANUAL_REVIEW_RULE  # type: ignore[union-attr]


def test_a_stale_redelivered_record_of_a_finished_guarantee_changes_nothing(pipeline: Pipeline) -> None:
    session_id, ref = pipeline.guarantee()
    pipeline.one(ref)
    before = pipeline.store.get(ref)

    result = pipeline.one(ref)

    assert result.disposition is Disposition.SKIPPED
    assert pipeline.store.get(ref) == before
    assert pipeline.flinks.confirms_for(session_id) == [True]


def test_a_held_claim_is_waited_for_and_a_finished_one_not_redone(pipeline: Pipeline) -> None:
    # GIVEN another invocation holding the claim, which finishes while we wait for it
    _, ref = pipeline.guarantee()
    now = pipeline.clock.ms()
    assert pipeline.store.claim(ref, claim_id="other", now_ms=now, lease_until_ms=now + 30_000).guarantee

    def sleep_while_the_other_finishes(seconds: float) -> None:
        pipeline.clock.sleep(seconds)
        view = pipeline.store.get(ref)
        if view.claim_id == "other":
            confirm = ConfirmView(pipeline.clock.ms(), None, None, False, 1)
            pipeline.store.put(
                replace(view, status=GuaranteeStatus.CONFIRMED, claim_id=None, confirm=confirm)
            )

    processor = pipeline.build(policy=DEFAULT_POLICY, sleep=sleep_while_the_other_finishes)
    [result] = pipeline.deliver(ref, processor=processor)

    assert result.disposition is Disposition.SKIPPED
    assert result.reason == ClaimResult.ALREADY_DONE.value
    assert pipeline.flinks.confirms == []
    assert pipeline.clock.ms() - now < 1_000  # it polled the lease, it did not wait it out


# -- concurrency and the batch -------------------------------------------------------------------------------


def test_a_worker_that_raises_does_not_return_the_batch_while_others_still_run() -> None:
    # GIVEN a real thread pool, one session whose claim raises a bug, one whose confirm is slow
    pipeline = Pipeline()
    broken = pipeline.receive(pipeline.session())
    slow_session = pipeline.session()
    slow = pipeline.receive(slow_session)
    finished = threading.Event()
    original_confirm = pipeline.flinks._confirm

    def slow_confirm(session_id: str, accepted: bool) -> Any:
        time.sleep(0.3)
        answer = original_confirm(session_id, accepted)
        finished.set()
        return answer

    original_claim = pipeline.store.claim

    def claim(ref: GuaranteeRef, **kwargs: Any) -> Any:
        if ref == broken:
            raise RuntimeError("a bug")
        return original_claim(ref, **kwargs)

    pipeline.flinks._confirm = slow_confirm  # type: ignore[method-assign]
    pipeline.store.claim = claim  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=4) as pool:
        processor = pipeline.build(policy=DEFAULT_POLICY, executor=pool)

        # WHEN the batch runs
        results = pipeline.deliver(broken, slow, processor=processor)

        # THEN it returned only once the slow worker finished; the broken record is retried
        assert finished.is_set()
    assert [r.disposition for r in results] == [Disposition.RETRY, Disposition.CONFIRMED]


def test_two_concurrent_invocations_of_one_record_confirm_once() -> None:
    pipeline = Pipeline()
    session_id, ref = pipeline.guarantee()
    barrier = threading.Barrier(2)

    def invoke() -> RecordResult:
        barrier.wait()
        return pipeline.one(ref)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: invoke(), range(2)))

    # one confirms; the other found it finished, or (its fake clock racing ahead) gave up waiting
    dispositions = sorted(r.disposition for r in results)
    assert dispositions in (
        sorted([Disposition.CONFIRMED, Disposition.SKIPPED]),
        sorted([Disposition.CONFIRMED, Disposition.RETRY]),
    )
    assert pipeline.flinks.confirms_for(session_id) == [True]


def test_records_of_one_session_run_in_order_and_stop_at_the_first_retry(pipeline: Pipeline) -> None:
    session_id = pipeline.session()
    first = pipeline.receive(session_id)
    pipeline.flinks.add_offer(session_id, amount="200.00")
    second = pipeline.receive(session_id, key="amount:200.00", amount="200.00")
    pipeline.flinks.add_fault(session_id, "details", "unavailable")

    results = pipeline.deliver(first, second)

    assert [r.disposition for r in results] == [Disposition.RETRY, Disposition.RETRY]
    assert results[1].reason == "an earlier record of the session"
    assert pipeline.status(second) is GuaranteeStatus.RECEIVED


# -- the shadow policy ---------------------------------------------------------------------------------------


def test_the_shadow_policy_is_recorded_and_never_acted_on() -> None:
    stricter = DecisionPolicy.from_json(
        '{"name": "stricter", "version": "1", "default": "accept", "rules": ['
        '{"name": "large", "when": {"amount": {"gt": 100}}, "decision": "reject", "reason": "LARGE"}]}'
    )
    pipeline = Pipeline(shadow=stricter)
    session_id, ref = pipeline.guarantee()

    result = pipeline.one(ref)

    assert pipeline.flinks.confirms_for(session_id) == [True]  # the live policy's accept
    item = pipeline.store.get(ref)
    assert item.shadow is not None
    assert (item.shadow.verdict, item.shadow.rule) == (Verdict.REJECT, "large")
    assert result.outcome is not None
    assert result.outcome.shadow is not None


def test_a_shadow_policy_that_errors_leaves_the_live_decision_alone() -> None:
    class Exploding(DecisionPolicy):
        def decide(self, facts: Any) -> Any:
            raise ZeroDivisionError("shadow bug")

    base = DecisionPolicy.from_json('{"default": "reject", "rules": []}')
    exploding = Exploding(default=base.default, rules=base.rules)
    pipeline = Pipeline(shadow=exploding)
    session_id, ref = pipeline.guarantee()

    result = pipeline.one(ref)

    assert result.disposition is Disposition.CONFIRMED
    assert result.shadow_failed
    assert pipeline.flinks.confirms_for(session_id) == [True]
