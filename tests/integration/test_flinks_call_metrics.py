"""Every call to Flinks is a metric: latency and a count by status class per operation, the aggregate
the error-rate alarm divides, and the token pool's counters (issue 12 "on-call cannot see Flinks").

The processor runs as Lambda runs it (handler, sandbox on 127.0.0.1, moto); the metrics are read from
the EMF documents it prints and compared with the calls the sandbox's journal received.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from testkit.emf import metric_data, metric_values
from testkit.flinks import FlinksSandbox
from tests.support.pipeline import Pipeline

Invoke = Callable[..., dict[str, Any]]
_ENDPOINT_OF_OPERATION = {"authorize": "authorize", "details": "details", "confirm": "confirm"}


def _calls_by_operation_and_class(output: str) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for datum in metric_data(output):
        if datum.name == "FlinksCalls":
            key = (datum.dimensions["Operation"], datum.dimensions["StatusClass"])
            counted[key] += int(sum(datum.values))
    return counted


def _journal_by_operation(sandbox: FlinksSandbox) -> Counter[str]:
    return Counter(
        entry.endpoint for entry in sandbox.calls() if entry.endpoint in _ENDPOINT_OF_OPERATION.values()
    )


def test_each_call_is_counted_by_operation_and_status_class_with_its_latency(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a session whose /details answers 500 once, then normally
    _, event = pipeline.guarantee(faults={"details": ["500"]})
    capsys.readouterr()

    # WHEN the processor confirms it
    assert pipeline.process(event) == {"batchItemFailures": []}
    output = capsys.readouterr().out

    # THEN each exchange the sandbox received is one FlinksCalls datum of its operation and class
    counted = _calls_by_operation_and_class(output)
    assert counted == {
        ("authorize", "2xx"): 1,
        ("details", "5xx"): 1,
        ("details", "2xx"): 1,
        ("confirm", "2xx"): 1,
    }
    journal = _journal_by_operation(pipeline.sandbox)
    assert {operation: journal[operation] for operation in ("authorize", "details", "confirm")} == {
        "authorize": 1,
        "details": 2,
        "confirm": 1,
    }
    # AND one latency per exchange, under its operation
    for operation, calls in (("authorize", 1), ("details", 2), ("confirm", 1)):
        latencies = metric_values(output, "FlinksCallLatency", Operation=operation)
        assert len(latencies) == calls
        assert all(latency > 0 for latency in latencies)
    # AND the alarm's aggregate: four calls, one failed on Flinks' side
    assert metric_values(output, "FlinksCallCount") == [4]
    assert metric_values(output, "FlinksCallFailed") == [1]


def test_an_outage_is_counted_as_failed_calls(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a /details that answers 503 for longer than the invocation
    _, event = pipeline.guarantee(faults={"details": ["503"] * 50})
    capsys.readouterr()

    # WHEN the processor tries within a short invocation (the record goes back to the stream; 1.5 s of
    # it for Flinks: a few attempts, not the five a longer one spends 3 s of backoff on)
    answer = pipeline.process(event, timeout_seconds=3.0)
    output = capsys.readouterr().out

    # THEN every 503 the sandbox answered is a failed call, and the rate the alarm computes is high
    assert len(answer["batchItemFailures"]) == 1
    details_calls = _journal_by_operation(pipeline.sandbox)["details"]
    assert details_calls >= 2
    assert _calls_by_operation_and_class(output)[("details", "5xx")] == details_calls
    assert metric_values(output, "FlinksCallFailed") == [details_calls]
    assert metric_values(output, "FlinksCallCount") == [details_calls + 1]  # and the authorize


def test_the_token_pool_reports_what_it_minted_and_handed_out(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a processor with a pool of two tokens, warmed by a first guarantee
    monkeypatch.setenv("FLINKS_TOKEN_POOL_SIZE", "2")
    first, second = (pipeline.session() for _ in range(2))
    pipeline.receive(first)
    assert pipeline.process(pipeline.feed.next_event()) == {"batchItemFailures": []}
    _wait_for(lambda: pipeline.sandbox.authorize_count >= 3)  # the first session's own token + two pooled

    # WHEN a second guarantee arrives (its token comes from the pool)
    pipeline.receive(second)
    assert pipeline.process(pipeline.feed.next_event()) == {"batchItemFailures": []}
    output = capsys.readouterr().out

    # THEN, once the pool has topped up again, its counters add up to the authorizes the sandbox saw
    # beyond the first session's inline one, and one pooled token was handed out
    def settled(output: str) -> bool:
        minted = sum(metric_values(output, "TokenPoolMinted"))
        return pipeline.sandbox.authorize_count >= 4 and minted == pipeline.sandbox.authorize_count - 1

    output = _flush_processor_metrics_until(settled, output, capsys)
    assert sum(metric_values(output, "TokenPoolUsed")) == 1
    assert not metric_values(output, "TokenPoolWasted")
    # AND every authorize, inline or pooled, is a FlinksCalls datum
    assert _calls_by_operation_and_class(output)[("authorize", "2xx")] == pipeline.sandbox.authorize_count


def _flush_processor_metrics_until(
    settled: Callable[[str], bool], output: str, capsys: pytest.CaptureFixture[str]
) -> str:
    """Write out, as the next invocation's handler would, what the pool did after the last one,
    until ``settled`` holds for everything written so far (the refill runs on its own thread)."""
    from decision_processor import handler

    deadline = time.monotonic() + 10.0
    while not settled(output):
        if time.monotonic() > deadline:
            raise AssertionError("the token pool's counters never matched the sandbox's authorizes")
        time.sleep(0.05)
        handler._FLINKS_CALLS.flush()
        handler.metrics.flush_metrics()
        output += capsys.readouterr().out
    return output


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the token pool did not refill in time")
        time.sleep(0.02)
