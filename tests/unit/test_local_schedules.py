"""The local stack's schedules with compressed time: LOCAL_SCHEDULE_SECONDS (validated like the other
variables), every rate(...) at that interval, or none on its own (0) and all of them on request."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from geft_local.config import LocalConfig, LocalConfigError
from geft_local.console import Console
from geft_local.schedules import Scheduler, ScheduleRule, parse_rate
from geft_local.workers import InvokeResult

WAIT_S = 5.0


class RecordingInvoker:
    """Stands in for the function containers: records which function each scheduled event reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._called = threading.Condition()

    def __call__(self, logical_id: str, event: dict[str, Any]) -> InvokeResult:
        with self._called:
            self.calls.append((logical_id, event))
            self._called.notify_all()
        return InvokeResult(request_id="r", payload={"reconciled": 0})

    def wait_for(self, count: int) -> bool:
        give_up_at = time.monotonic() + WAIT_S
        with self._called:
            while len(self.calls) < count:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    return False
                self._called.wait(remaining)
            return True

    def functions(self) -> list[str]:
        with self._called:
            return [logical_id for logical_id, _ in self.calls]


def rule(function: str, expression: str, *, enabled: bool = True) -> ScheduleRule:
    return ScheduleRule(function, "Every", expression, parse_rate(expression), enabled=enabled)


RULES = [
    rule("ReviewTimeoutFunction", "rate(1 minute)"),
    rule("ReconcilerFunction", "rate(5 minutes)"),
    rule("NightlyFunction", "cron(0 3 * * ? *)"),
    rule("DisabledFunction", "rate(1 hour)", enabled=False),
    rule("SweeperFunction", "rate(5 minutes)"),
]


@pytest.mark.parametrize(("raw", "seconds"), [("", None), ("0", 0.0), ("5", 5.0), (" 0.25 ", 0.25)])
def test_local_schedule_seconds_is_read(raw: str, seconds: float | None) -> None:
    assert LocalConfig.from_env({"LOCAL_SCHEDULE_SECONDS": raw}).schedule_seconds == seconds


@pytest.mark.parametrize("raw", ["-1", "soon", "1e3", "5s", "0.0001", "nan"])
def test_a_bad_local_schedule_seconds_is_named(raw: str) -> None:
    with pytest.raises(LocalConfigError, match=r"LOCAL_SCHEDULE_SECONDS must be a number of seconds"):
        LocalConfig.from_env({"LOCAL_SCHEDULE_SECONDS": raw, "LOCAL_PORT": "3100"})


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(LocalConfigError) as raised:
        LocalConfig.from_env({"LOCAL_SCHEDULE_SECONDS": "soon", "LOCAL_PORT": "port"})

    assert "LOCAL_SCHEDULE_SECONDS" in str(raised.value)
    assert "LOCAL_PORT" in str(raised.value)


def test_zero_runs_nothing_on_its_own_and_every_rate_once_on_request() -> None:
    # GIVEN schedules whose own intervals would fire at once, with LOCAL_SCHEDULE_SECONDS=0
    invoke, console = RecordingInvoker(), Console(stream=None)
    fast = [replace(r, interval_s=0.01) if r.interval_s else r for r in RULES]
    scheduler = Scheduler(fast, invoke=invoke, console=console, interval_override_s=0)
    scheduler.start()
    try:
        # THEN none runs by the clock
        time.sleep(0.2)
        assert invoke.functions() == []
        assert any(
            "ReconcilerFunction: rate(5 minutes) runs only on request" in line for line in console.lines()
        )

        # WHEN they are asked for (make local: SIGUSR1)
        scheduler.run_all_now("SIGUSR1").join(WAIT_S)

        # THEN each enabled rate(...) rule ran once, in template order, with EventBridge's event
        assert invoke.functions() == ["ReviewTimeoutFunction", "ReconcilerFunction", "SweeperFunction"]
        assert {event["detail-type"] for _, event in invoke.calls} == {"Scheduled Event"}
        assert any("SIGUSR1: every rate(...) schedule runs now" in line for line in console.lines())
    finally:
        scheduler.stop()


def test_a_positive_value_replaces_every_rate_interval() -> None:
    # GIVEN a rule that fires hourly as written, compressed to a twentieth of a second
    invoke, console = RecordingInvoker(), Console(stream=None)
    scheduler = Scheduler(
        [rule("ReconcilerFunction", "rate(1 hour)")], invoke=invoke, console=console, interval_override_s=0.05
    )

    # WHEN the scheduler runs
    scheduler.start()
    try:
        # THEN the rule fires again and again, long before its hour
        assert invoke.wait_for(2)
        assert set(invoke.functions()) == {"ReconcilerFunction"}
        assert any("rate(1 hour) runs every 0.05 s" in line for line in console.lines())
    finally:
        scheduler.stop()


def test_without_an_override_each_rule_keeps_its_own_interval() -> None:
    scheduler = Scheduler(RULES, invoke=RecordingInvoker(), console=Console(stream=None))

    assert [scheduler.interval_of(r) for r in scheduler.runnable] == [60, 300, 300]


def test_a_negative_override_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        Scheduler(RULES, invoke=RecordingInvoker(), console=Console(stream=None), interval_override_s=-1)
