"""Secret rotation: the webhook secret's `previous` accepted then retired, and the Flinks API
credentials picked up after the cache age. The secrets' cache clock is moved past the cache age
(``secret_clock``) instead of the test sleeping through it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from testkit.inprocess import InProcessStack
from testkit.webhooks import guarantee_body, webhook_event
from tests.support import reliability_report
from tests.support.constants import TEST_FLINKS_CREDENTIALS, TEST_WEBHOOK_SECRET
from tests.support.ledger import audit, only_failed, retried_sessions
from tests.support.pipeline import Invoke, Pipeline

Items = Callable[[], list[dict[str, Any]]]
CACHE_SECONDS = 60
WEBHOOK_CACHE_SECONDS = 60
NEW_WEBHOOK_SECRET = "test-webhook-secret-rotated"
NEW_CREDENTIALS = {"username": "test-flinks-user-2", "password": "test-flinks-password-rotated"}


class SkippableClock:
    """``time.monotonic()`` plus the seconds a test skipped."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


@pytest.fixture
def secret_clock(monkeypatch: pytest.MonkeyPatch) -> SkippableClock:
    """The clock of every secret cache (``geft.secrets.JsonSecret``) built from now on: a function's
    composition root built after this fixture reads its secrets' age from it."""
    from geft.secrets import JsonSecret

    clock = SkippableClock()
    real_init = JsonSecret.__init__

    def init(self: JsonSecret, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("monotonic", clock)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(JsonSecret, "__init__", init)
    return clock


def _put_secret(aws: Any, secret_id: str, document: dict[str, str]) -> None:
    aws.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(document))


def test_webhook_secret_rotation_previous_accepted_then_retired(
    secret_clock: SkippableClock,
    aws: Any,
    stack: InProcessStack,
    function_env: Callable[..., dict[str, str]],
    invoke_receiver: Invoke,
    table_items: Items,
) -> None:
    from webhook_receiver import handler

    function_env("WebhookReceiverFunction", SECRET_CACHE_SECONDS=str(WEBHOOK_CACHE_SECONDS))
    handler._dependencies.cache_clear()
    secret_id = stack.ref("WebhookSecret")

    def deliver(secret: str) -> int:
        status: int = invoke_receiver(webhook_event(guarantee_body(), secret=secret))["statusCode"]
        return status

    # GIVEN a warm receiver that has cached the original secret
    assert deliver(TEST_WEBHOOK_SECRET) == 200

    # WHEN the secret is rotated with the old one kept as `previous`
    _put_secret(aws, secret_id, {"current": NEW_WEBHOOK_SECRET, "previous": TEST_WEBHOOK_SECRET})

    # THEN deliveries signed with either are accepted (the new one after one re-read on mismatch)
    assert deliver(NEW_WEBHOOK_SECRET) == 200
    assert deliver(TEST_WEBHOOK_SECRET) == 200

    # WHEN `previous` is retired
    _put_secret(aws, secret_id, {"current": NEW_WEBHOOK_SECRET})

    # THEN within the cache age the old secret still verifies (the documented rotation window)...
    assert deliver(TEST_WEBHOOK_SECRET) == 200

    # ...and after it the old secret is refused and nothing it signed is stored
    secret_clock.skip(WEBHOOK_CACHE_SECONDS + 1)
    stored = len(table_items())
    assert deliver(TEST_WEBHOOK_SECRET) == 401
    assert len(table_items()) == stored
    assert deliver(NEW_WEBHOOK_SECRET) == 200
    reliability_report.record(
        "secrets",
        f"webhook secret rotation (SECRET_CACHE_SECONDS={WEBHOOK_CACHE_SECONDS})",
        tried=6,
        outcome="previous accepted; retired one accepted only within the cache age, then 401",
    )


def _process_new_guarantee(invoke: Invoke, pipeline: Pipeline) -> tuple[str, dict[str, Any], dict[str, Any]]:
    session_id, event = pipeline.guarantee()
    return session_id, event, invoke(event, timeout_seconds=3.0)


@pytest.fixture
def warm_processor(secret_clock: SkippableClock, configure_processor: Callable[..., Invoke]) -> Invoke:
    return configure_processor(SECRET_CACHE_SECONDS=str(CACHE_SECONDS), HTTP_CONNECT_TIMEOUT_SECONDS="0.5")


def test_credentials_rotation_is_picked_up_after_the_cache_age(
    pipeline: Pipeline, warm_processor: Invoke, secret_clock: SkippableClock
) -> None:
    invoke, sandbox = warm_processor, pipeline.sandbox
    # GIVEN a warm processor that has used (and cached) the original credentials
    first, _, answer = _process_new_guarantee(invoke, pipeline)
    assert answer == {"batchItemFailures": []}

    # WHEN Flinks and the secret both move to new credentials, and the cache age passes
    sandbox.set_credentials(**NEW_CREDENTIALS)
    _put_secret(pipeline.stack.session, pipeline.stack.ref("FlinksApiSecret"), NEW_CREDENTIALS)
    secret_clock.skip(CACHE_SECONDS + 1)
    second, _, answer = _process_new_guarantee(invoke, pipeline)

    # THEN the new credentials are used: one authorize, accepted, and the guarantee confirmed
    assert answer == {"batchItemFailures": []}
    assert [call.response_status for call in sandbox.calls("/api/v1/authorize")] == [200, 200]
    assert audit(sandbox, pipeline.items).confirmed == 2
    assert (pipeline.confirms(first), pipeline.confirms(second)) == ([True], [True])
    reliability_report.record(
        "secrets",
        f"Flinks credentials rotation (SECRET_CACHE_SECONDS={CACHE_SECONDS})",
        tried=2,
        outcome="new credentials used after the cache age; CONFIRMED",
    )


def test_guarantee_processed_during_a_credentials_rotation_is_not_failed_for_good(
    pipeline: Pipeline, warm_processor: Invoke, secret_clock: SkippableClock
) -> None:
    invoke = warm_processor
    # GIVEN Flinks already on new credentials while the secret still holds the old ones
    pipeline.sandbox.set_credentials(**NEW_CREDENTIALS)
    session_id, event, answer = _process_new_guarantee(invoke, pipeline)

    # WHEN the secret catches up and Lambda retries whatever was reported
    _put_secret(pipeline.stack.session, pipeline.stack.ref("FlinksApiSecret"), NEW_CREDENTIALS)
    secret_clock.skip(CACHE_SECONDS + 1)
    if retried_sessions(event, answer):
        invoke(only_failed(event, answer))

    # THEN the guarantee is confirmed once, not left FAILED because of a credentials race
    assert pipeline.confirms(session_id) == [True]
    assert TEST_FLINKS_CREDENTIALS["password"] != NEW_CREDENTIALS["password"]
