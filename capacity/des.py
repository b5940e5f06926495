"""The smallest discrete-event kernel that does the job: a clock and a heap of timed callbacks.

Deterministic: events at the same instant run in the order they were scheduled.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Simulation:
    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = 0

    def at(self, when: float, action: Callable[..., None], *arguments: Any) -> None:
        """Run ``action(*arguments)`` at simulated time ``when`` (never in the past)."""
        self._sequence += 1
        heapq.heappush(self._queue, (max(when, self.now), self._sequence, action, arguments))

    def after(self, delay: float, action: Callable[..., None], *arguments: Any) -> None:
        self.at(self.now + delay, action, *arguments)

    def run(self, until: float = float("inf")) -> None:
        """Process events in time order until none is left or the next is later than ``until``."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, action, arguments = heapq.heappop(queue)
            self.now = when
            action(*arguments)
