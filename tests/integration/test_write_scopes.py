"""Least privilege for the writes: the receiver and the scheduled jobs may write only the attributes they
own. Each writer's real requests (driven under moto) must name only what its role's `dynamodb:Attributes`
condition in template.yaml allows, and the condition allows nothing the writer has no path to write."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from geft import models
from geft.repository import GuaranteeRepository

from testkit.aws import AwsCalls, aws_calls_recorded
from testkit.flinks import FlinksSandbox, Scenario
from testkit.template import CreatedResources
from testkit.webhooks import guarantee_body, status_body, webhook_event
from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.pipeline import FAR_FUTURE_MS


def allowed_attributes(template: dict[str, Any], role: str, sid: str) -> set[str]:
    [policy] = template["Resources"][role]["Properties"]["Policies"]
    [statement] = [
        s for s in policy["PolicyDocument"]["Statement"] if isinstance(s, dict) and s.get("Sid") == sid
    ]
    return set(statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"])


def assert_writes_what_the_role_allows(
    captured: AwsCalls, template: dict[str, Any], role: str, sid: str
) -> None:
    """The writes name no attribute the role's statement does not allow, and every one it allows (a
    statement wider than the code's writes is a grant nobody uses)."""
    written = named_attributes(captured)
    allowed = allowed_attributes(template, role, sid)
    assert written <= allowed
    assert allowed - written == set()


def named_attributes(faults: AwsCalls) -> set[str]:
    """Every attribute the captured write requests name: item, key, and expression attribute names."""
    names: set[str] = set()
    for call in faults.calls:
        if call.service == "dynamodb" and call.operation in ("PutItem", "UpdateItem"):
            names |= set(call.params.get("Item", {})) | set(call.params.get("Key", {}))
            names |= set(call.params.get("ExpressionAttributeNames", {}).values())
    return names


def _finished(
    aws: Any,
    stack: CreatedResources,
    session_id: str,
    status: models.GuaranteeStatus,
    queue: models.FollowUpQueue,
    due_ms: int,
) -> models.GuaranteeRef:
    """A guarantee the processor finished (REVIEW or CONFIRMED), waiting in ``queue``."""
    repository = GuaranteeRepository(
        stack.ref("GuaranteesTable"),
        retention_days=1,
        actor=models.Actor.function("p"),
        client=aws.client("dynamodb"),
    )
    ref = models.GuaranteeRef(session_id, "amount:250.00")
    now = int(time.time() * 1000)
    repository.insert_guarantee(ref, raw_body="{}", content_sha256="c", received_at_ms=now, event_when=None)
    repository.claim(ref, claim_id="c", now_ms=now, lease_until_ms=now + 60_000)
    change = (
        models.ChangeKind.REVIEW_REQUESTED
        if status is models.GuaranteeStatus.REVIEW
        else models.ChangeKind.CONFIRMED
    )
    confirmed = now if status is models.GuaranteeStatus.CONFIRMED else None
    outcome = models.GuaranteeOutcome(
        status=status, change=change, confirmed_at_ms=confirmed, follow_up=models.FollowUp(queue, due_ms)
    )
    assert repository.finish(ref, claim_id="c", outcome=outcome, now_ms=now)
    return ref


def test_the_receiver_writes_only_what_its_role_allows(
    template: dict[str, Any], invoke_receiver: Callable[..., Any]
) -> None:
    session_id = str(uuid.uuid4())
    with aws_calls_recorded() as captured:
        for body in (
            guarantee_body(session_id),
            guarantee_body(session_id, offer="second"),  # the same key, other content: quarantined
            status_body(session_id),
            b"not json",
        ):
            assert invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET))["statusCode"] == 200

    assert_writes_what_the_role_allows(captured, template, "WebhookReceiverRole", "WriteGuarantees")


def test_the_review_timeout_writes_only_what_its_role_allows(
    aws: Any, stack: CreatedResources, template: dict[str, Any], function_env: Callable[..., dict[str, str]]
) -> None:
    from scheduled_jobs import review_timeout

    _finished(aws, stack, str(uuid.uuid4()), models.GuaranteeStatus.REVIEW, models.FollowUpQueue.REVIEW, 0)
    function_env("ReviewTimeoutFunction")
    review_timeout._dependencies.cache_clear()
    config, repository = review_timeout._dependencies()
    with aws_calls_recorded() as captured:
        assert (
            review_timeout.apply_fallbacks(repository, config, now_ms=FAR_FUTURE_MS)["fallbackDecisions"] == 1
        )
    review_timeout._dependencies.cache_clear()

    assert_writes_what_the_role_allows(captured, template, "ReviewTimeoutRole", "RecordFallbackDecision")


def test_the_sweeper_writes_only_what_its_role_allows(
    aws: Any, stack: CreatedResources, template: dict[str, Any], function_env: Callable[..., dict[str, str]]
) -> None:
    from scheduled_jobs import sweeper

    # a stuck RECEIVED guarantee, one under a live claim, one already finished
    repository = GuaranteeRepository(
        stack.ref("GuaranteesTable"),
        retention_days=1,
        actor=models.Actor.function("r"),
        client=aws.client("dynamodb"),
    )
    stuck, live = (models.GuaranteeRef(str(uuid.uuid4()), "single") for _ in range(2))
    for ref in (stuck, live):
        repository.insert_guarantee(ref, raw_body="{}", content_sha256="c", received_at_ms=0, event_when=None)
    repository.claim(live, claim_id="live", now_ms=FAR_FUTURE_MS, lease_until_ms=FAR_FUTURE_MS + 60_000)
    function_env("SweeperFunction")
    sweeper._dependencies.cache_clear()
    config, swept = sweeper._dependencies()
    with aws_calls_recorded() as captured:
        summary = sweeper.sweep(swept, config, now_ms=FAR_FUTURE_MS)
    sweeper._dependencies.cache_clear()

    assert (summary.stuck, summary.in_progress) == (1, 1)
    assert_writes_what_the_role_allows(captured, template, "SweeperRole", "RedriveGuarantees")


def test_the_reconciler_writes_only_what_its_role_allows(
    aws: Any,
    stack: CreatedResources,
    template: dict[str, Any],
    function_env: Callable[..., dict[str, str]],
    sandbox: FlinksSandbox,
) -> None:
    from scheduled_jobs import reconciler

    # one session final at Flinks, one not final yet, one whose status cannot be read
    final, pending, broken = (sandbox.add_session(scenario=Scenario.preset("accept")) for _ in range(3))
    sandbox.set_status(final, "Completed", "EFT0301")
    sandbox.add_faults(broken, "status", ["400"] * 5)
    for session_id in (final, pending, broken):
        _finished(aws, stack, session_id, models.GuaranteeStatus.CONFIRMED, models.FollowUpQueue.RECONCILE, 0)
    function_env("ReconcilerFunction", FLINKS_BASE_URL=sandbox.base_url)
    reconciler._dependencies.cache_clear()
    config, repository, flinks = reconciler._dependencies()
    with aws_calls_recorded() as captured:
        summary = reconciler.reconcile(
            repository, flinks, config, deadline=time.monotonic() + 20, clock=lambda: FAR_FUTURE_MS / 1000
        )
    reconciler._dependencies.cache_clear()

    assert summary.as_dict()["reconciled"] == 1
    assert_writes_what_the_role_allows(captured, template, "ReconcilerRole", "RecordSessionStatus")
