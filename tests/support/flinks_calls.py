"""A thread-safe ``on_call`` observer for FlinksClient: keeps every exchange it is told about.

What the integrator's metrics collector will do with observations (count by operation and status
class, time them), for tests and benchmarks to assert on.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from geft.flinks_client import CallObservation


@dataclass(frozen=True)
class RecordedCall:
    observation: CallObservation
    thread: str


class CallRecorder:
    """Pass as ``on_call=``; safe to call from the caller's threads and the token pool's refill thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []

    def __call__(self, observation: CallObservation) -> None:
        with self._lock:
            self._calls.append(RecordedCall(observation, threading.current_thread().name))

    @property
    def observations(self) -> list[CallObservation]:
        with self._lock:
            return [call.observation for call in self._calls]

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def count(self, operation: str | None = None, status_class: str | None = None) -> int:
        return sum(
            1
            for observation in self.observations
            if (operation is None or observation.operation == operation)
            and (status_class is None or observation.status_class == status_class)
        )

    def by_operation(self) -> Counter[str]:
        return Counter(observation.operation for observation in self.observations)

    def summary(self) -> list[tuple[str, int | None, str, int]]:
        """``(operation, status_code, status_class, attempt)`` of every exchange, in order."""
        return [
            (item.operation, item.status_code, item.status_class, item.attempt) for item in self.observations
        ]
