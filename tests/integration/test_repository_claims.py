"""The repository's conditional writes under contention: exactly one winner, as in DynamoDB.

moto needs geft_local.moto_atomic for this (tests/conftest.py applies it); these tests are what
shows the claim protocol itself holds once writes are atomic.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from geft.models import GuaranteeOutcome, GuaranteeRef, GuaranteeStatus
from geft.repository import ClaimResult, GuaranteeRepository
from geft_local.template_resources import CreatedResources


def _repository(aws: Any, stack: CreatedResources) -> GuaranteeRepository:
    return GuaranteeRepository(stack.ref("GuaranteesTable"), retention_days=1, client=aws.client("dynamodb"))


def _race(count: int, action: Any) -> list[Any]:
    results: list[Any] = []
    start = threading.Barrier(count)

    def run() -> None:
        start.wait()
        results.append(action())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_inserts_of_one_guarantee_store_it_once(aws: Any, stack: CreatedResources) -> None:
    repository = _repository(aws, stack)
    ref = GuaranteeRef(str(uuid.uuid4()), "single")

    results = _race(
        16, lambda: repository.insert_guarantee(ref, raw_body="{}", received_at_ms=1, event_when=None)
    )

    assert sorted(results) == [False] * 15 + [True]


def test_concurrent_claims_have_exactly_one_winner(aws: Any, stack: CreatedResources) -> None:
    repository = _repository(aws, stack)
    now_ms = int(time.time() * 1000)
    for _ in range(10):  # races are probabilistic: without atomic writes about 1 in 5 rounds double-claims
        # GIVEN a stored guarantee
        ref = GuaranteeRef(str(uuid.uuid4()), "single")
        repository.insert_guarantee(ref, raw_body="{}", received_at_ms=1, event_when=None)

        # WHEN eight invocations try to claim it at once
        claims = _race(
            8,
            lambda ref=ref: repository.claim(
                ref, claim_id=str(uuid.uuid4()), now_ms=now_ms, lease_until_ms=now_ms + 60_000
            ),
        )

        # THEN one holds it and every other one sees it held
        assert sorted(claim.result.value for claim in claims) == ["claimed"] + ["held"] * 7


def test_expired_lease_is_taken_over_and_flagged_uncertain(aws: Any, stack: CreatedResources) -> None:
    # GIVEN a claim whose holder died (its lease has run out)
    repository = _repository(aws, stack)
    ref = GuaranteeRef(str(uuid.uuid4()), "single")
    repository.insert_guarantee(ref, raw_body="{}", received_at_ms=1, event_when=None)
    first = repository.claim(ref, claim_id="dead", now_ms=1_000, lease_until_ms=2_000)

    # WHEN another invocation claims it after the lease
    second = repository.claim(ref, claim_id="alive", now_ms=3_000, lease_until_ms=9_000)

    # THEN it takes over, knowing a confirm may already have gone out
    assert first.result is ClaimResult.CLAIMED
    assert not first.confirm_may_have_been_sent
    assert second.result is ClaimResult.CLAIMED
    assert second.confirm_may_have_been_sent
    assert second.guarantee is not None
    assert second.guarantee.attempts == 2
    # and the dead holder, were it to come back, can no longer write an outcome
    late_write = repository.finish(
        ref, claim_id="dead", outcome=GuaranteeOutcome(status=GuaranteeStatus.CONFIRMED), now_ms=4_000
    )
    assert late_write is False
    stored = repository.get_guarantee(ref)
    assert stored is not None
    assert stored.status is GuaranteeStatus.DECIDING


def test_release_without_confirm_returns_the_item_to_received(aws: Any, stack: CreatedResources) -> None:
    repository = _repository(aws, stack)
    ref = GuaranteeRef(str(uuid.uuid4()), "single")
    repository.insert_guarantee(ref, raw_body="{}", received_at_ms=1, event_when=None)
    repository.claim(ref, claim_id="c1", now_ms=1_000, lease_until_ms=99_000)

    repository.release(ref, claim_id="c1", now_ms=2_000, confirm_attempted=False)
    retry = repository.claim(ref, claim_id="c2", now_ms=3_000, lease_until_ms=99_000)

    assert retry.result is ClaimResult.CLAIMED
    assert not retry.confirm_may_have_been_sent


def test_release_after_a_confirm_attempt_keeps_the_item_uncertain(aws: Any, stack: CreatedResources) -> None:
    repository = _repository(aws, stack)
    ref = GuaranteeRef(str(uuid.uuid4()), "single")
    repository.insert_guarantee(ref, raw_body="{}", received_at_ms=1, event_when=None)
    repository.claim(ref, claim_id="c1", now_ms=1_000, lease_until_ms=99_000)

    repository.release(ref, claim_id="c1", now_ms=2_000, confirm_attempted=True)
    retry = repository.claim(ref, claim_id="c2", now_ms=3_000, lease_until_ms=99_000)

    assert retry.result is ClaimResult.CLAIMED
    assert retry.confirm_may_have_been_sent
