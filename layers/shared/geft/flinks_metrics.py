"""Metrics of every call to Flinks: what on-call reads when "Flinks is slow or failing".

The Flinks client reports each HTTP exchange to an ``on_call`` observer, from whichever thread made
it (the processor's workers, the token pool's refill). ``FlinksCallMetrics`` collects them under a
lock and the handler's own thread writes them out once per invocation, as EMF:

- ``FlinksCallLatency`` (ms, every exchange) and ``FlinksCalls`` (count) per ``Operation``, the
  latter also per ``StatusClass`` (2xx, 4xx, 5xx, timeout, connection-error, too-large);
- ``FlinksCallCount`` and ``FlinksCallFailed`` without those dimensions, for the error-rate alarm
  (failed: a 5xx, a 429, a timeout, no connection or an oversized answer: Flinks' side, not ours);
- the token pool's counters as deltas since the last flush (``TokenPoolMinted``, ``…Used``,
  ``…Wasted``, ``…Refused``, ``…RefillFailures``), so the waste the pool costs is counted.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import astuple, fields
from typing import Final

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from geft.flinks_client import CallObservation
from geft.flinks_tokens import TokenPoolCounters
from geft.observability import metrics

# EMF allows at most 100 values of one metric per document.
_MAX_VALUES_PER_DOCUMENT: Final = 100
_FAILED_STATUS_CLASSES: Final = frozenset({"5xx", "timeout", "connection-error", "too-large"})
_TOO_MANY_REQUESTS: Final = 429
_POOL_METRIC_NAMES: Final = {
    "minted": "TokenPoolMinted",
    "used": "TokenPoolUsed",
    "wasted": "TokenPoolWasted",
    "refused": "TokenPoolRefused",
    "refill_failures": "TokenPoolRefillFailures",
}


def is_failure(observation: CallObservation) -> bool:
    """Whether the exchange failed on Flinks' side (what the error-rate alarm counts)."""
    return observation.status_class in _FAILED_STATUS_CLASSES or observation.status_code == _TOO_MANY_REQUESTS


class FlinksCallMetrics:
    """Thread-safe collector of call observations; ``flush`` from the handler's thread only."""

    def __init__(self, pool_counters: Callable[[], TokenPoolCounters] | None = None) -> None:
        self._lock = threading.Lock()
        self._observed: list[CallObservation] = []
        self._pool_counters = pool_counters
        self._pool_flushed = TokenPoolCounters()

    def observe(self, observation: CallObservation) -> None:
        """The Flinks client's ``on_call`` observer."""
        with self._lock:
            self._observed.append(observation)

    def watch_token_pool(self, pool_counters: Callable[[], TokenPoolCounters]) -> None:
        """Report this pool's counters too (the client is built after its observer); a new pool
        counts from zero."""
        self._pool_counters = pool_counters
        self._pool_flushed = TokenPoolCounters()

    def flush(self) -> None:
        """Write out what was observed since the last flush."""
        with self._lock:
            observed, self._observed = self._observed, []
        _write_calls(observed)
        if self._pool_counters is not None:
            counters = self._pool_counters()
            _write_pool_deltas(counters, self._pool_flushed)
            self._pool_flushed = counters


def _write_calls(observed: Iterable[CallObservation]) -> None:
    latencies: defaultdict[str, list[float]] = defaultdict(list)
    by_status: Counter[tuple[str, str]] = Counter()
    failed = count = 0
    for observation in observed:
        latencies[observation.operation].append(observation.latency_ms)
        by_status[(observation.operation, observation.status_class)] += 1
        count += 1
        failed += is_failure(observation)
    if not count:
        return
    metrics.add_metric(name="FlinksCallCount", unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="FlinksCallFailed", unit=MetricUnit.Count, value=failed)
    for operation, values in sorted(latencies.items()):
        for start in range(0, len(values), _MAX_VALUES_PER_DOCUMENT):
            document = _document({"Operation": operation})
            for value in values[start : start + _MAX_VALUES_PER_DOCUMENT]:
                document.add_metric(name="FlinksCallLatency", unit=MetricUnit.Milliseconds, value=value)
            document.flush_metrics()
    for (operation, status_class), calls in sorted(by_status.items()):
        document = _document({"Operation": operation, "StatusClass": status_class})
        document.add_metric(name="FlinksCalls", unit=MetricUnit.Count, value=calls)
        document.flush_metrics()


def _write_pool_deltas(now: TokenPoolCounters, before: TokenPoolCounters) -> None:
    for field, current, previous in zip(fields(now), astuple(now), astuple(before), strict=True):
        if current > previous:
            metrics.add_metric(
                name=_POOL_METRIC_NAMES[field.name], unit=MetricUnit.Count, value=current - previous
            )


def _document(dimensions: dict[str, str]) -> EphemeralMetrics:
    """One EMF document with its own dimensions (the service dimension comes from the environment)."""
    document = EphemeralMetrics()
    for name, value in dimensions.items():
        document.add_dimension(name=name, value=value)
    return document


__all__ = ["FlinksCallMetrics", "is_failure"]
