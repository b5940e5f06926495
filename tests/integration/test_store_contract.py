"""One contract, two stores: the DynamoDB repository (under moto) and testkit's fake enforce the same
conditional writes, so the state-machine tests on the fake prove what the repository does.

moto needs testkit.aws.make_conditional_writes_atomic for the races here (tests/conftest.py applies it).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from geft import models
from geft.items import GuaranteeView
from geft.ports import ClaimResult, Release
from geft.repository import OPERATOR_LEASE_MARGIN_MS, GuaranteeRepository

from testkit.fakes import FakeGuaranteeStore
from testkit.template import CreatedResources
from tests.support.concurrency import all_at_once

NOW = 1_800_000_000_000
OPERATOR = models.Actor.operator("arn:aws:iam::123456789012:user/ops", "ops")


class Store:
    """The two stores behind one face: seed, read, and the repository's own operations."""

    def __init__(self, store: Any, *, reopen: Callable[[models.Actor], Any] | None = None) -> None:
        self.store = store
        self._reopen = reopen

    def as_actor(self, actor: models.Actor) -> Store:
        """The same table, written by ``actor``."""
        if self._reopen is None:
            self.store.actor = actor
            return self
        return Store(self._reopen(actor))

    def seed(self, ref: models.GuaranteeRef) -> None:
        if isinstance(self.store, FakeGuaranteeStore):
            self.store.insert(ref, "{}", received_at_ms=NOW)
        else:
            assert self.store.insert_guarantee(
                ref, raw_body="{}", content_sha256="c", received_at_ms=NOW, event_when=None
            ).stored

    def get(self, ref: models.GuaranteeRef) -> GuaranteeView:
        view = (
            self.store.get(ref)
            if isinstance(self.store, FakeGuaranteeStore)
            else self.store.get_guarantee(ref)
        )
        assert view is not None
        return view

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(params=["fake", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "fake":
        return Store(FakeGuaranteeStore())
    aws, stack = request.getfixturevalue("aws"), request.getfixturevalue("stack")
    client = aws.client("dynamodb")

    def repository(actor: models.Actor) -> GuaranteeRepository:
        return GuaranteeRepository(stack.ref("GuaranteesTable"), retention_days=1, actor=actor, client=client)

    return Store(repository(models.Actor.function("contract")), reopen=repository)


def _ref() -> models.GuaranteeRef:
    return models.GuaranteeRef(str(uuid.uuid4()), "amount:250.00")


def _confirmed() -> models.GuaranteeOutcome:
    return models.GuaranteeOutcome(
        status=models.GuaranteeStatus.CONFIRMED,
        change=models.ChangeKind.CONFIRMED,
        confirmed_at_ms=NOW + 5,
        follow_up=models.FollowUp(models.FollowUpQueue.RECONCILE, NOW + 900_000),
    )


def _with_a_new_claim_id(claim: Callable[..., Any]) -> Any:
    return claim(claim_id=str(uuid.uuid4()))


def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    for _ in range(10):  # races are probabilistic: without atomic writes about 1 in 5 rounds double-claims
        ref = _ref()
        store.seed(ref)
        claim = functools.partial(store.claim, ref, now_ms=NOW, lease_until_ms=NOW + 60_000)
        claims = all_at_once(8, functools.partial(_with_a_new_claim_id, claim))
        assert sorted(claim.result.value for claim in claims) == ["claimed"] + ["held"] * 7


def test_an_expired_lease_is_taken_over_flagged_uncertain_and_the_dead_holder_cannot_write(
    store: Store,
) -> None:
    ref = _ref()
    store.seed(ref)
    first = store.claim(ref, claim_id="dead", now_ms=NOW, lease_until_ms=NOW + 1_000)

    second = store.claim(ref, claim_id="alive", now_ms=NOW + 2_000, lease_until_ms=NOW + 9_000)

    assert first.result is ClaimResult.CLAIMED
    assert not first.confirm_may_have_been_sent
    assert second.result is ClaimResult.CLAIMED
    assert second.confirm_may_have_been_sent
    assert second.guarantee is not None
    assert second.guarantee.attempts == 2
    assert not store.finish(ref, claim_id="dead", outcome=_confirmed(), now_ms=NOW + 3_000)
    assert store.get(ref).status is models.GuaranteeStatus.DECIDING


@pytest.mark.parametrize(
    ("release", "status", "uncertain"),
    [
        (Release("503"), models.GuaranteeStatus.RECEIVED, False),
        (Release("timeout", confirm_attempted=True), models.GuaranteeStatus.DECIDING, True),
    ],
)
def test_a_release_returns_the_claim_and_says_whether_a_confirm_may_have_gone(
    store: Store, release: Release, status: models.GuaranteeStatus, uncertain: bool
) -> None:
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="c1", now_ms=NOW, lease_until_ms=NOW + 99_000)

    assert store.release(ref, claim_id="c1", now_ms=NOW + 1, release=release)

    item = store.get(ref)
    assert (item.status, item.claim_id, item.lease_expires_at_ms) == (status, None, 0)
    assert item.last_change is not None
    assert item.last_change.kind is models.ChangeKind.RELEASED
    assert item.last_change.reason == release.reason
    retry = store.claim(ref, claim_id="c2", now_ms=NOW + 2, lease_until_ms=NOW + 99_000)
    assert retry.result is ClaimResult.CLAIMED
    assert retry.confirm_may_have_been_sent is uncertain


def test_a_confirm_once_attempted_keeps_every_later_claim_uncertain(store: Store) -> None:
    # After an unknown confirm outcome the retry may fail transiently before reaching the confirm (a
    # /details 503, say) and release the claim clean, as RECEIVED: from then on only the recorded
    # attempt makes the next claim read /details before any confirm.
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="c1", now_ms=NOW, lease_until_ms=NOW + 99_000)
    assert store.release(
        ref, claim_id="c1", now_ms=NOW + 1, release=Release("timeout", confirm_attempted=True)
    )
    store.claim(ref, claim_id="c2", now_ms=NOW + 2, lease_until_ms=NOW + 99_000)

    assert store.release(ref, claim_id="c2", now_ms=NOW + 3, release=Release("details 503"))

    item = store.get(ref)
    assert (item.status, item.confirm_attempted) == (models.GuaranteeStatus.RECEIVED, True)
    after = store.claim(ref, claim_id="c3", now_ms=NOW + 4, lease_until_ms=NOW + 99_000)
    assert after.result is ClaimResult.CLAIMED
    assert after.confirm_may_have_been_sent


def test_a_settling_confirm_refuses_every_claim_until_it_has_settled(store: Store) -> None:
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="c1", now_ms=NOW, lease_until_ms=NOW + 99_000)
    store.release(
        ref,
        claim_id="c1",
        now_ms=NOW,
        release=Release("timeout", confirm_attempted=True, settle_until_ms=NOW + 20_000),
    )

    early = store.claim(ref, claim_id="c2", now_ms=NOW + 19_999, lease_until_ms=NOW + 99_000)
    late = store.claim(ref, claim_id="c3", now_ms=NOW + 20_000, lease_until_ms=NOW + 99_000)

    assert (early.result, early.wait_until_ms) == (ClaimResult.SETTLING, NOW + 20_000)
    assert late.result is ClaimResult.CLAIMED
    assert late.confirm_may_have_been_sent
    assert store.get(ref).confirm_settles_at_ms is None


def test_a_finished_guarantee_is_never_claimed_again(store: Store) -> None:
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="c1", now_ms=NOW, lease_until_ms=NOW + 99_000)
    assert store.finish(ref, claim_id="c1", outcome=_confirmed(), now_ms=NOW + 5)

    again = store.claim(ref, claim_id="c2", now_ms=NOW + 10, lease_until_ms=NOW + 99_000)

    assert again.result is ClaimResult.ALREADY_DONE
    assert not store.mark_redrive(
        ref, now_ms=NOW + OPERATOR_LEASE_MARGIN_MS * 2, reason="redrive", include_failed=True
    )


def test_the_lease_margin_protects_a_live_claim_from_an_operator_clock(store: Store) -> None:
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="live", now_ms=NOW, lease_until_ms=NOW + 62_000)

    assert not store.mark_redrive(ref, now_ms=NOW + 62_000 + OPERATOR_LEASE_MARGIN_MS - 1, reason="skewed")
    assert store.mark_redrive(ref, now_ms=NOW + 62_000 + OPERATOR_LEASE_MARGIN_MS + 1, reason="stale")
    item = store.get(ref)
    assert (item.status, item.confirm_attempted, item.claim_id) == (
        models.GuaranteeStatus.REDRIVE,
        True,
        None,
    )
    assert item.follow_up is not None
    assert item.follow_up.queue is models.FollowUpQueue.SWEEP


def test_a_redrive_with_a_live_lease_is_still_held(store: Store) -> None:
    # A REDRIVE written over a live lease (a clock hours off, say) cannot be claimed until the lease ends.
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="live", now_ms=NOW, lease_until_ms=NOW + 62_000)
    assert store.mark_redrive(
        ref, now_ms=NOW + 62_000 + OPERATOR_LEASE_MARGIN_MS + 1, reason="far future clock"
    )

    held = store.claim(ref, claim_id="second", now_ms=NOW + 1_000, lease_until_ms=NOW + 70_000)

    assert held.result is ClaimResult.HELD


def _finished_as(store: Store, outcome: models.GuaranteeOutcome) -> models.GuaranteeRef:
    """A new guarantee claimed and finished with ``outcome``."""
    ref = _ref()
    store.seed(ref)
    store.claim(ref, claim_id="c1", now_ms=NOW, lease_until_ms=NOW + 99_000)
    assert store.finish(ref, claim_id="c1", outcome=outcome, now_ms=NOW)
    return ref


def test_a_failed_outcome_records_flinks_reason(store: Store) -> None:
    reason = "Flinks refused: details 400 (invalid request)"
    failed = models.GuaranteeOutcome(
        status=models.GuaranteeStatus.FAILED,
        change=models.ChangeKind.FAILED,
        failure_reason=reason,
        follow_up=models.FollowUp(models.FollowUpQueue.RECONCILE, NOW + 900_000),
    )

    item = store.get(_finished_as(store, failed))

    assert (item.status, item.failure_reason) == (models.GuaranteeStatus.FAILED, reason)
    assert item.last_change is not None
    assert (item.last_change.kind, item.last_change.reason) == (models.ChangeKind.FAILED, reason)


def test_a_decided_review_can_be_redriven_and_keeps_the_decision(store: Store) -> None:
    review = models.GuaranteeOutcome(
        status=models.GuaranteeStatus.REVIEW,
        change=models.ChangeKind.REVIEW_REQUESTED,
        decided_at_ms=NOW,
        follow_up=models.FollowUp(models.FollowUpQueue.REVIEW, NOW + 300_000),
    )
    ref = _finished_as(store, review)
    operator = store.as_actor(OPERATOR)

    assert operator.record_review_decision(
        ref, verdict=models.Verdict.REJECT, reason="checked", now_ms=NOW + 1
    )
    assert not operator.record_review_decision(
        ref, verdict=models.Verdict.ACCEPT, reason="twice", now_ms=NOW + 2
    )
    assert store.mark_redrive(ref, now_ms=NOW + 3, reason="stranded REVIEWED")

    item = store.get(ref)
    assert item.status is models.GuaranteeStatus.REDRIVE
    assert item.review is not None
    assert (item.review.decision, item.review.reviewer) == (models.Verdict.REJECT, OPERATOR.identity)


def test_the_review_timeout_never_decides_a_hold(store: Store) -> None:
    hold = models.GuaranteeOutcome(
        status=models.GuaranteeStatus.REVIEW,
        change=models.ChangeKind.HELD,
        hold_reason="cannot tell",
        follow_up=models.FollowUp(models.FollowUpQueue.HOLD, NOW),
    )
    ref = _finished_as(store, hold)

    assert not store.record_review_decision(
        ref,
        verdict=models.Verdict.REJECT,
        reason="timeout",
        now_ms=NOW + 1,
        only_from=models.FollowUpQueue.REVIEW,
    )
    assert store.record_review_decision(ref, verdict=models.Verdict.ACCEPT, reason="a person", now_ms=NOW + 2)


def test_the_repository_records_what_who_when_and_from_which_status(
    aws: Any, stack: CreatedResources
) -> None:
    repository = GuaranteeRepository(
        stack.ref("GuaranteesTable"), retention_days=1, actor=OPERATOR, client=aws.client("dynamodb")
    )
    ref = _ref()
    repository.insert_guarantee(ref, raw_body="{}", content_sha256="c", received_at_ms=NOW, event_when=None)

    repository.mark_redrive(ref, now_ms=NOW + 5, reason="replay of session")

    item = repository.get_guarantee(ref)
    assert item is not None
    assert item.last_change is not None
    change = item.last_change
    assert (change.kind, change.by, change.by_note, change.at_ms, change.reason, change.previous_status) == (
        models.ChangeKind.REDRIVEN,
        OPERATOR.identity,
        "ops",
        NOW + 5,
        "replay of session",
        models.GuaranteeStatus.RECEIVED,
    )


def test_concurrent_inserts_of_one_guarantee_store_it_once(aws: Any, stack: CreatedResources) -> None:
    repository = GuaranteeRepository(
        stack.ref("GuaranteesTable"),
        retention_days=1,
        actor=models.Actor.function("r"),
        client=aws.client("dynamodb"),
    )
    ref = _ref()

    results = all_at_once(
        16,
        lambda: repository.insert_guarantee(
            ref, raw_body="{}", content_sha256="abc", received_at_ms=1, event_when=None
        ),
    )

    assert sorted(result.stored for result in results) == [False] * 15 + [True]
    assert {result.existing_content_sha256 for result in results if not result.stored} == {"abc"}
