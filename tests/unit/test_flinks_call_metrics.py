"""FlinksCallMetrics on its own: many threads observing, EMF's 100-value limit, what counts as failed,
and the token pool's counters written as deltas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from geft.flinks_client import CallObservation
from geft.flinks_metrics import FlinksCallMetrics, is_failure
from geft.flinks_tokens import TokenPoolCounters
from geft.observability import metrics

from testkit.emf import metric_data, metric_values


def _observation(status_code: int | None, status_class: str, operation: str = "details") -> CallObservation:
    return CallObservation(operation, status_code, status_class, latency_ms=12.5, attempt=1)  # type: ignore[arg-type]


@pytest.fixture
def emitted(capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """What was written since the last read, the application metrics flushed as the handler does."""
    capsys.readouterr()

    def read() -> str:
        metrics.flush_metrics()
        return capsys.readouterr().out

    return read


@pytest.mark.parametrize(
    ("status_code", "status_class", "failed"),
    [
        (200, "2xx", False),
        (401, "4xx", False),  # re-authorized; a refused confirm shows as ConfirmFailed instead
        (404, "4xx", False),
        (429, "4xx", True),  # throttled: Flinks' side
        (500, "5xx", True),
        (None, "timeout", True),
        (None, "connection-error", True),
        (200, "too-large", True),
    ],
)
def test_what_counts_as_a_failed_call(status_code: int | None, status_class: str, failed: bool) -> None:
    assert is_failure(_observation(status_code, status_class)) is failed


def test_observations_from_many_threads_are_all_written_once(emitted: Callable[[], str]) -> None:
    collector = FlinksCallMetrics()
    workers = [
        threading.Thread(
            target=lambda: [collector.observe(_observation(200, "2xx", "confirm")) for _ in range(50)]
        )
        for _ in range(5)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    collector.flush()
    output = emitted()
    collector.flush()  # nothing new: nothing more written
    again = emitted()

    latencies = [datum for datum in metric_data(output) if datum.name == "FlinksCallLatency"]
    assert [len(datum.values) for datum in latencies] == [100, 100, 50]  # EMF's limit per document
    assert metric_values(output, "FlinksCalls", Operation="confirm", StatusClass="2xx") == [250]
    assert metric_values(output, "FlinksCallCount") == [250]
    assert metric_values(output, "FlinksCallFailed") == [0]
    assert not metric_values(again, "FlinksCallCount")


def test_token_pool_counters_are_written_as_deltas(emitted: Callable[[], str]) -> None:
    counters = TokenPoolCounters(minted=3, used=1)
    collector = FlinksCallMetrics()
    collector.watch_token_pool(lambda: counters)

    collector.flush()
    first = emitted()
    counters = replace(counters, minted=5, used=3, wasted=1)
    collector.flush()
    second = emitted()
    collector.flush()
    third = emitted()

    assert (metric_values(first, "TokenPoolMinted"), metric_values(first, "TokenPoolUsed")) == ([3], [1])
    assert metric_values(second, "TokenPoolMinted") == [2]
    assert metric_values(second, "TokenPoolUsed") == [2]
    assert metric_values(second, "TokenPoolWasted") == [1]
    assert not [datum for datum in metric_data(third) if datum.name.startswith("TokenPool")]
