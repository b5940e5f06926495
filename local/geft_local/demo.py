"""``make demo``: start the local stack, play Flinks for a handful of sessions, check every outcome.

Each scenario registers a session in the sandbox and delivers its guarantee webhook the way Flinks does
(``emit_guarantee_webhook``: signed, up to three attempts). The demo waits (bounded) for each guarantee's
end state, prints a table, and exits 0 only when every scenario ended as expected, checked against the
table and against the sandbox's journal (exactly one confirm per decided session, with the right
boolean; none for the bad signature and the unknown session).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from geft.items import GuaranteeView, guarantee_view

from geft_local.console import Console
from geft_local.stack import LocalStack, LocalStackError, configured
from testkit.flinks import DeliveryResult, FlinksSandbox, Scenario

WAIT_BUDGET_S = 30.0
_WRONG_SECRET = "not-the-webhook-secret"  # noqa: S105 - a deliberately wrong test value


@dataclass(frozen=True)
class Play:
    """One scenario: what Flinks does, and what must come of it."""

    name: str
    preset: str
    status: str | None
    """The guarantee's end state; None: nothing may be stored."""
    decision: str | None = None
    rule: str | None = None
    confirms: tuple[bool, ...] = ()
    deliveries: int = 1
    wrong_secret: bool = False


PLAYS = (
    Play("accepted", "accept", "CONFIRMED", "accept", "default", (True,)),
    Play("high risk", "high-risk", "CONFIRMED", "reject", "high-risk", (False,)),
    Play("shortfall", "shortfall", "CONFIRMED", "reject", "shortfall", (False,)),
    Play("no guarantee", "no-guarantee", "CONFIRMED", "reject", "no-guarantee", (False,)),
    Play("duplicate delivery", "accept", "CONFIRMED", "accept", "default", (True,), deliveries=2),
    Play("bad signature", "accept", None, wrong_secret=True),
    Play("outage, then recovery", "outage-then-recover", "CONFIRMED", "accept", "default", (True,)),
    Play("unknown session", "not-found", "FAILED"),
)


@dataclass
class Run:
    play: Play
    session_id: str
    sent_at_ms: int
    deliveries: list[DeliveryResult]
    guarantee: GuaranteeView | None = None
    items: int = 0
    confirms: tuple[bool, ...] = ()
    confirm_calls: int = 0
    problems: tuple[str, ...] = ()

    @property
    def latency_ms(self) -> str:
        if self.guarantee is None:
            return "-"
        confirm = self.guarantee.confirm
        done = (confirm.confirmed_at_ms if confirm else None) or self.guarantee.updated_at_ms
        return str(done - self.sent_at_ms) if done else "-"


def deliver(stack: LocalStack, sandbox: FlinksSandbox, play: Play) -> Run:
    session_id = sandbox.add_session(scenario=Scenario.preset(play.preset))
    secret = _WRONG_SECRET if play.wrong_secret else stack.config.webhook_secret
    sent_at_ms = int(time.time() * 1000)
    deliveries = [
        sandbox.emit_guarantee_webhook(stack.webhook_url, secret, session_id) for _ in range(play.deliveries)
    ]
    return Run(play, session_id, sent_at_ms, deliveries)


def settle(stack: LocalStack, sandbox: FlinksSandbox, run: Run, deadline: float) -> None:
    """Wait for the end state (bounded), then check it against the table and the sandbox journal."""
    play = run.play
    if play.status is not None:
        item = stack.wait_for_guarantee(run.session_id, timeout=max(0.0, deadline - time.monotonic()))
        run.guarantee = guarantee_view(item) if item is not None else None
    run.items = len(stack.guarantees(run.session_id))
    run.confirms = tuple(sandbox.confirms_for(run.session_id))
    run.confirm_calls = len(sandbox.calls("/guarantees/confirm", session_id=run.session_id))
    run.problems = tuple(check(run))


def check(run: Run) -> list[str]:
    play, guarantee = run.play, run.guarantee
    problems = []
    if play.wrong_secret:
        statuses = [status for result in run.deliveries for status, _ in result.attempts]
        if statuses != [401, 401, 401]:
            problems.append(f"deliveries answered {statuses}, expected three 401s")
    elif not all(result.delivered for result in run.deliveries):
        problems.append("a delivery was not accepted")
    if play.status is None:
        if run.items:
            problems.append(f"{run.items} item(s) stored, expected none")
    elif guarantee is None:
        problems.append(f"no {play.status} guarantee within the wait")
    else:
        verdict, rule = _decided(guarantee)
        if guarantee.status != play.status:
            problems.append(f"status {guarantee.status}, expected {play.status}")
        if verdict != play.decision or rule != play.rule:
            problems.append(f"decided {verdict}/{rule}")
        if run.items != 1:
            problems.append(f"{run.items} items stored, expected exactly one")
    if run.confirms != play.confirms:
        problems.append(f"Flinks received confirms {list(run.confirms)}, expected {list(play.confirms)}")
    if not play.confirms and run.confirm_calls:
        problems.append(f"{run.confirm_calls} confirm call(s) reached Flinks, expected none")
    return problems


def _decided(guarantee: GuaranteeView | None) -> tuple[str | None, str | None]:
    """The stored decision's verdict and rule (None for each that is not recorded)."""
    decision = guarantee.decision if guarantee is not None else None
    return (decision.verdict.value, decision.rule) if decision is not None else (None, None)


def table(runs: Sequence[Run]) -> str:
    rows = [("session", "scenario", "decision", "rule", "confirm", "e2e ms", "result")]
    for run in runs:
        verdict, rule = _decided(run.guarantee)
        confirm = ",".join(str(value).lower() for value in run.confirms) or "-"
        rows.append(
            (
                run.session_id,
                run.play.name,
                verdict or "-",
                rule or "-",
                confirm,
                run.latency_ms,
                "ok" if not run.problems else "FAIL: " + "; ".join(run.problems),
            )
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]) - 1)]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in [*widths, len(row[-1])]))
    return "\n".join(lines)


def outcome_line(session_id: str) -> re.Pattern[str]:
    """The console line that ends a session's story: ``<sid> ... -> CONFIRMED`` (or FAILED, REVIEW)."""
    return re.compile(rf"{re.escape(session_id)} (.* )?-> [A-Z]")


def main() -> int:
    base = configured("geft-demo")
    if base is None:
        return 2
    if base.flinks_base_url:
        print(
            "geft-demo: the demo plays Flinks with the built-in sandbox; unset FLINKS_BASE_URL",
            file=sys.stderr,
        )
        return 2
    # Free ports and its own run folder: the demo can run next to `make local`.
    config = dataclasses.replace(
        base, port=0, sandbox_port=0, run_dir=base.run_dir / "demo", stack_name="geft-demo"
    )
    started = time.monotonic()
    stack = LocalStack(config, console=Console(sys.stdout))
    try:
        stack.start()
    except LocalStackError as error:
        print(f"geft-demo: {error}", file=sys.stderr)
        return 2
    try:
        sandbox = stack.sandbox
        assert sandbox is not None
        print(f"stack up in {time.monotonic() - started:.1f} s; playing {len(PLAYS)} scenarios", flush=True)
        runs = [deliver(stack, sandbox, play) for play in PLAYS]
        deadline = time.monotonic() + WAIT_BUDGET_S
        for run in runs:
            settle(stack, sandbox, run, deadline)
        for run in runs:  # let each session's outcome line ("<sid> ... -> STATE") reach the console
            if run.guarantee is not None:
                stack.console.wait_for(outcome_line(run.session_id), timeout=2.0)
    finally:
        stack.stop()
    print()
    print(table(runs))
    failed = [run for run in runs if run.problems]
    elapsed = time.monotonic() - started
    print()
    if failed:
        print(f"{len(failed)} of {len(runs)} scenarios did not end as expected ({elapsed:.1f} s)")
        return 1
    print(f"all {len(runs)} scenarios ended as expected ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
