"""Load: a burst of webhooks (distinct and redelivered, mixed) through the whole local stack.

Over real HTTP on 127.0.0.1: gateway -> receiver container -> moto -> stream pump -> processor
container -> Flinks sandbox. Every distinct session must be confirmed exactly once, every delivery
answered 200, and nothing may reach the dead-letter queue. Throughput and latencies are recorded for
docs/reliability.md. Part of ``make reliability`` only (``slow``).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from geft_local.stack import LocalStack, poll_until

from testkit.flinks import Scenario
from testkit.webhooks import guarantee_body
from tests.e2e.conftest import StartStack
from tests.e2e.helpers import console_dump
from tests.support import reliability_report
from tests.support.constants import TEST_WEBHOOK_SECRET

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DISTINCT = int(os.environ.get("REL_LOAD_DISTINCT", "700"))
REDELIVERIES = int(os.environ.get("REL_LOAD_REDELIVERIES", "350"))
SENDERS = 16
SETTLE_TIMEOUT_S = 600.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def test_burst_of_webhooks_confirms_each_distinct_session_exactly_once(start_stack: StartStack) -> None:
    from geft.signature import compute_signature

    stack: LocalStack = start_stack("load")
    sandbox = stack.sandbox
    assert sandbox is not None
    # GIVEN DISTINCT sessions Flinks guarantees (a mix the default policy accepts and rejects), and
    # a burst of their webhooks with REDELIVERIES duplicates of some of them, shuffled together
    presets = ["accept", "accept", "accept", "high-risk", "shortfall"]
    sessions = [
        sandbox.add_session(scenario=Scenario.preset(presets[i % len(presets)])) for i in range(DISTINCT)
    ]
    bodies = {session_id: guarantee_body(session_id) for session_id in sessions}
    rng = random.Random(20261123)
    deliveries = sessions + [rng.choice(sessions) for _ in range(REDELIVERIES)]
    rng.shuffle(deliveries)
    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=SENDERS))

    def deliver(session_id: str) -> tuple[int, float]:
        body = bodies[session_id]
        headers = {
            "content-type": "application/json",
            "x-webhook-signature": compute_signature(body, TEST_WEBHOOK_SECRET),
        }
        started = time.perf_counter()
        response = http.post(stack.webhook_url, data=body, headers=headers, timeout=30)
        return response.status_code, time.perf_counter() - started

    # WHEN the burst arrives from SENDERS concurrent senders
    burst_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        answers = list(pool.map(deliver, deliveries))
    burst_seconds = time.perf_counter() - burst_started

    # THEN every delivery was acknowledged
    assert [status for status, _ in answers] == [200] * len(deliveries)

    # AND every distinct session ends CONFIRMED, confirmed exactly once with its decision
    def settled() -> list[dict[str, Any]] | None:
        items = [item for session_id in sessions for item in stack.guarantees(session_id)]
        done = [item for item in items if item.get("status") in ("CONFIRMED", "FAILED")]
        return items if len(done) == len(sessions) else None

    items = poll_until(settled, timeout=SETTLE_TIMEOUT_S, interval=1.0)
    settle_seconds = time.perf_counter() - burst_started
    assert items is not None, console_dump(stack)
    assert len(items) == DISTINCT  # one item per session: no redelivery stored twice
    duplicated = [s for s in sessions if len(sandbox.confirms_for(s)) > 1]
    lost = [item["pk"] for item in items if item["status"] != "CONFIRMED"]
    assert (duplicated, lost) == ([], [])
    for item in items:
        assert sandbox.confirms_for(item["pk"]) == [item["decision"] == "accept"]

    # AND nothing went to the dead-letter queue
    queue_url = stack.on_failure_queue_url()
    assert queue_url is not None
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"

    latencies_ms = [seconds * 1000 for _, seconds in answers]
    to_confirm_ms = [float(item["webhookToConfirmMs"]) for item in items]
    outcome = (
        f"{len(deliveries) / burst_seconds:.0f} webhooks/s acknowledged "
        f"(ack p50 {statistics.median(latencies_ms):.0f} ms, p99 {_percentile(latencies_ms, 0.99):.0f} ms); "
        f"all {DISTINCT} confirmed in {settle_seconds:.1f} s = {DISTINCT / settle_seconds:.1f} guarantees/s "
        f"(webhook-to-confirm p50 {statistics.median(to_confirm_ms) / 1000:.1f} s, "
        f"p99 {_percentile(to_confirm_ms, 0.99) / 1000:.1f} s); DLQ empty"
    )
    print(outcome)
    reliability_report.record(
        "load",
        f"{len(deliveries)} webhooks ({DISTINCT} distinct + {REDELIVERIES} redeliveries), {SENDERS} senders",
        tried=len(deliveries),
        outcome=outcome,
        lost=len(lost),
        duplicated=len(duplicated),
    )
