"""EventBridge schedules, emulated: the rules SAM makes of ``Type: Schedule`` events, ``rate(...)`` run.

Each rule invokes its function with the event EventBridge sends ("Scheduled Event"), first one interval
after the start (as a new rule fires), then every interval. ``cron(...)`` expressions are listed but not
run; asynchronous-invoke retries and failure destinations are not emulated (a failed run is reported on
the console). ``fire_now`` runs a rule at once (tests, or to skip the wait).

Time can be compressed (``LOCAL_SCHEDULE_SECONDS``): a positive ``interval_override_s`` replaces every
rate's interval; 0 runs nothing on its own, so only ``run_all_now`` (``make local``: SIGUSR1) runs the
rules, each once, at a moment the caller chooses (a scripted run stays the same run after run).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geft_local.console import Console
from geft_local.workers import InvokeResult
from testkit.template import ACCOUNT_ID, REGION, CreatedResources, function_behind, resolve, resources_of_type

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class ScheduleRule:
    function_logical_id: str
    event_name: str
    expression: str
    interval_s: float | None
    """None for expressions the emulation does not run (cron)."""
    enabled: bool = True

    @property
    def rule_arn(self) -> str:
        return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.function_logical_id}-{self.event_name}"


def parse_rate(expression: str) -> float | None:
    """Seconds between runs of a ``rate(N unit)`` expression; None for anything else."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _SECONDS[match.group(2).rstrip("s")]


def schedule_rules(
    template: Mapping[str, Any], created: CreatedResources, parameters: Mapping[str, str]
) -> list[ScheduleRule]:
    """Every scheduled ``AWS::Events::Rule`` of the deployed template that targets one of its functions
    (what SAM makes of a function's ``Type: Schedule`` event: ``<Function><Event>``, ``State`` from its
    ``Enabled``)."""
    rules = []
    for rule_id, rule in resources_of_type(template, "AWS::Events::Rule").items():
        properties = rule["Properties"]
        targets = [function_behind(template, target["Arn"]) for target in properties.get("Targets", [])]
        if "ScheduleExpression" not in properties or not targets or targets[0] is None:
            continue
        expression = resolve(properties["ScheduleExpression"], created, parameters)
        rules.append(
            ScheduleRule(
                function_logical_id=targets[0],
                event_name=rule_id.removeprefix(targets[0]),
                expression=expression,
                interval_s=parse_rate(expression),
                enabled=str(properties.get("State", "ENABLED")).upper() == "ENABLED",
            )
        )
    return rules


def scheduled_event(rule: ScheduleRule, now: float) -> dict[str, Any]:
    """What EventBridge sends to a scheduled target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule.rule_arn],
        "detail": {},
    }


Invoker = Callable[[str, dict[str, Any]], InvokeResult]


class Scheduler:
    """Runs every enabled ``rate`` rule on its own thread."""

    def __init__(
        self,
        rules: list[ScheduleRule],
        *,
        invoke: Invoker,
        console: Console,
        clock: Callable[[], float] = time.time,
        interval_override_s: float | None = None,
    ) -> None:
        """``interval_override_s``: None, each rate as written; positive, every rate's interval instead;
        0, no rule runs on its own (``run_all_now`` only)."""
        if interval_override_s is not None and interval_override_s < 0:
            raise ValueError("interval_override_s must be at least 0")
        self.rules = rules
        self._invoke = invoke
        self._console = console
        self._clock = clock
        self._interval_override_s = interval_override_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def runnable(self) -> list[ScheduleRule]:
        """The rules the emulation runs: enabled ``rate(...)`` rules, in template order."""
        return [rule for rule in self.rules if rule.interval_s is not None and rule.enabled]

    def interval_of(self, rule: ScheduleRule) -> float | None:
        """Seconds between a rule's runs here; None when it runs only on request."""
        if self._interval_override_s is None:
            return rule.interval_s
        return self._interval_override_s or None

    def start(self) -> None:
        for rule in self.rules:
            if rule.interval_s is None or not rule.enabled:
                why = "disabled" if not rule.enabled else "not emulated (only rate(...) runs locally)"
                self._console.emit("schedule", f"{rule.function_logical_id}: {rule.expression} {why}")
                continue
            interval_s = self.interval_of(rule)
            if interval_s is None:
                self._console.emit(
                    "schedule", f"{rule.function_logical_id}: {rule.expression} runs only on request"
                )
                continue
            if interval_s != rule.interval_s:
                self._console.emit(
                    "schedule", f"{rule.function_logical_id}: {rule.expression} runs every {interval_s:g} s"
                )
            thread = threading.Thread(target=self._run, args=(rule, interval_s), daemon=True)
            thread.start()
            self._threads.append(thread)

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def fire_now(self, function_logical_id: str) -> InvokeResult:
        """Run a function's first schedule rule now, as EventBridge would."""
        rule = next(rule for rule in self.rules if rule.function_logical_id == function_logical_id)
        return self._fire(rule)

    def run_all_now(self, cause: str = "asked") -> threading.Thread:
        """Run every runnable rule once, in template order, on a thread of its own (returned);
        ``cause`` (what asked, e.g. SIGUSR1) is said on the console."""

        def run_all() -> None:
            for rule in self.runnable:
                if self._stop.is_set():
                    return
                self._fire(rule)

        self._console.emit("schedule", f"{cause}: every rate(...) schedule runs now")
        thread = threading.Thread(target=run_all, name="schedules-now", daemon=True)
        thread.start()
        self._threads.append(thread)  # stop() waits for it like for the rules' own threads
        return thread

    def _run(self, rule: ScheduleRule, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._fire(rule)

    def _fire(self, rule: ScheduleRule) -> InvokeResult:
        result = self._invoke(rule.function_logical_id, scheduled_event(rule, self._clock()))
        if self._stop.is_set():
            return result
        if result.function_error:
            self._console.emit(
                "schedule",
                f"{rule.function_logical_id} ({rule.expression}) failed: "
                f"{result.error_type}: {result.error_message}",
            )
        elif _did_something(result.payload):
            self._console.emit(
                "schedule", f"{rule.function_logical_id} ({rule.expression}): {result.payload}"
            )
        return result


def _did_something(payload: Any) -> bool:
    """A run worth a console line: its answer counts something (quiet runs stay quiet)."""
    if isinstance(payload, Mapping):
        return any(
            isinstance(value, int | float) and not isinstance(value, bool) and value
            for value in payload.values()
        )
    return False
