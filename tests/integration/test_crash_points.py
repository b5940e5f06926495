"""Races and crashes on the decision path: a container killed mid-way, N invocations at once.

A crash is a ``SystemExit`` raised from a patched step (before or after its real work), which no
``except Exception`` can swallow: the invocation dies there, as if its container were killed. Lambda
then retries the batch; the retry waits out the dead invocation's lease (its deadline + 2 s, short
here) and takes over. Every session must end confirmed exactly once, or failed with a reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import reliability_report
from tests.support.concurrency import all_at_once
from tests.support.ledger import audit
from tests.support.pipeline import Pipeline

# Room for claim -> confirm on a loaded machine (at 2.5 s a busy run once stopped before the crash
# point); the dead invocation's lease ends 4 + 2 s after it started.
CRASH_INVOCATION_SECONDS = 4.0


class ContainerKilledError(SystemExit):
    """Raised from a patched step: the invocation dies there, no handler can catch it."""


@dataclass(frozen=True)
class CrashPoint:
    owner: str  # "repository", "calls" (one session's calls) or "client" (its authorize exchange)
    method: str
    after: bool  # crash after the step's real work (an HTTP exchange or a write completed)


# The path is claim -> authorize -> details -> decide -> confirm -> record (finish). Every step, before
# and after its work, for an accept and a reject, is a case on fakes (test_a_crash_at_any_step_* in
# tests/unit/test_processor_state_machine.py); here one crash per way a retry takes over, through the
# real handler, table and client: a held claim with nothing sent, a token minted and lost with the
# container, a confirm that reached Flinks but was never recorded, and a finished guarantee.
CRASH_POINTS = {
    "after-claim": CrashPoint("repository", "claim", after=True),
    "after-authorize": CrashPoint("client", "_mint", after=True),
    "after-confirm-answered": CrashPoint("calls", "confirm", after=True),
    "after-record": CrashPoint("repository", "finish", after=True),
}


def _confirm_reached_flinks(point: CrashPoint) -> bool:
    return (point.method == "confirm" and point.after) or point.method == "finish"


def _owner(point: CrashPoint) -> type:
    from geft.flinks_client import FlinksClient, SessionCalls
    from geft.repository import GuaranteeRepository

    owners = {"repository": GuaranteeRepository, "calls": SessionCalls, "client": FlinksClient}
    return owners[point.owner]


def test_a_crash_then_the_retry_after_the_lease_confirms_each_session_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN one stored guarantee per crash point, each with its own stream record
    events: dict[str, dict[str, Any]] = {}
    sessions: dict[str, str] = {}
    for name in CRASH_POINTS:
        sessions[name], events[name] = pipeline.guarantee()

    # WHEN each is processed by an invocation killed at its crash point
    for name, point in CRASH_POINTS.items():
        owner = _owner(point)
        real = getattr(owner, point.method)

        def killed(
            *args: Any, _real: Callable[..., Any] = real, _after: bool = point.after, **kw: Any
        ) -> Any:
            if _after:
                _real(*args, **kw)
            raise ContainerKilledError("container killed")

        with monkeypatch.context() as patch:
            patch.setattr(owner, point.method, killed)
            with pytest.raises(SystemExit):
                pipeline.process(events[name], timeout_seconds=CRASH_INVOCATION_SECONDS)

    # THEN no session was confirmed twice, and those killed after Flinks answered hold one confirm
    before_retry = audit(pipeline.sandbox, pipeline.items, awaiting_retry=sessions.values())
    assert before_retry.duplicated == 0
    for name, point in CRASH_POINTS.items():
        assert len(pipeline.confirms(sessions[name])) == int(_confirm_reached_flinks(point)), name

    # WHEN Lambda retries all of them in one batch (each waits out its dead invocation's lease)
    retry = {"Records": [record for event in events.values() for record in event["Records"]]}
    answer = pipeline.process(retry)

    # THEN every session is confirmed exactly once, with its own decision, and nothing is left over
    assert answer == {"batchItemFailures": []}
    summary = audit(pipeline.sandbox, pipeline.items)
    assert summary.confirmed == len(CRASH_POINTS)
    items = {item["pk"]: item for item in pipeline.items() if str(item["sk"]).startswith("GUARANTEE#")}
    for name, point in CRASH_POINTS.items():
        item = items[sessions[name]]
        assert item["decision"] == "accept", name
        # a confirm that reached Flinks but was not recorded before the crash is learnt from /details
        recovered = _confirm_reached_flinks(point) and not (point.method == "finish" and point.after)
        assert bool(item.get("recoveredFromDetails")) is recovered, name
        reliability_report.record(
            "crashes",
            f"killed {name.replace('-', ' ')}",
            tried=2,
            outcome="retry after the lease: CONFIRMED"
            + (" (recovered from /details)" if recovered else "")
            + (" (already recorded)" if point.method == "finish" and point.after else ""),
            lost=summary.lost,
            duplicated=summary.duplicated,
        )


def test_same_record_in_many_concurrent_invocations_confirms_once(pipeline: Pipeline) -> None:
    # GIVEN a slow Flinks and one stream record delivered to 6 invocations at once
    invocations = 6
    session_id, event = pipeline.guarantee(latency_ms=150)
    sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]

    # WHEN they all run
    answers = all_at_once(invocations, lambda: pipeline.process(event))

    # THEN each finished or reported the record for retry (one that waited on the lease past its budget,
    # on a loaded machine); once Lambda has retried a reported one, exactly one confirm was ever sent
    assert all(answer["batchItemFailures"] in ([], [{"itemIdentifier": sequence}]) for answer in answers)
    retried = sum(bool(answer["batchItemFailures"]) for answer in answers)
    if retried:
        assert pipeline.process(event) == {"batchItemFailures": []}
    assert [call.decision for call in pipeline.sandbox.calls(path_suffix="/confirm")] == [True]
    summary = audit(pipeline.sandbox, pipeline.items)
    assert (summary.confirmed, pipeline.confirms(session_id)) == (1, [True])
    reliability_report.record(
        "races",
        f"same stream record in {invocations} concurrent invocations",
        tried=invocations + int(bool(retried)),
        outcome=f"1 confirm sent; {invocations - retried} invocations finished, {retried} reported for retry",
        lost=summary.lost,
        duplicated=summary.duplicated,
    )


def test_cold_processor_creates_its_dynamodb_client_once_not_from_racing_threads(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.session

    # GIVEN a batch of four sessions for a cold processor, and botocore's create_client slowed down a
    # little so that threads entering it together are seen together
    for _ in range(4):
        pipeline.receive(pipeline.session())
    event = pipeline.feed.next_event()
    real_client = botocore.session.Session.create_client
    lock = threading.Lock()
    inside, most_inside, created = 0, 0, 0

    def slow_client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal inside, most_inside, created
        if service != "dynamodb":
            return real_client(self, service, *args, **kwargs)
        with lock:
            inside += 1
            created += 1
            most_inside = max(most_inside, inside)
        try:
            threading.Event().wait(0.1)
            return real_client(self, service, *args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(botocore.session.Session, "create_client", slow_client)

    # WHEN the batch is processed
    answer = pipeline.process(event)

    # THEN one DynamoDB client was created, by one thread at a time
    assert answer == {"batchItemFailures": []}
    assert (created, most_inside) == (1, 1)
