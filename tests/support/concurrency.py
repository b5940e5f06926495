"""One call made by many threads at the same moment: how the tests stand for redeliveries, warm
containers or invocations that race."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def all_at_once(times: int, call: Callable[[], T], *, join_seconds: float = 30.0) -> list[T]:
    """``call()`` in ``times`` threads released together; their answers in the order they finished.
    Whatever a thread raised (a ``SystemExit`` too) is raised here once every thread has ended."""
    start = threading.Barrier(times)
    answers: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(join_seconds)
            answers.append(call())
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, name=f"at-once-{index}") for index in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(join_seconds)
    if errors:
        raise errors[0]
    assert len(answers) == times, f"{times - len(answers)} of {times} calls still running"
    return answers
