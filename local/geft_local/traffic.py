"""A day's guarantee traffic for a running local stack, compressed into a minute or two.

    PYTHONPATH=local:layers/shared .venv/bin/python -m geft_local.traffic --sessions 200 --seed 1

(``make traffic`` runs it with ``TRAFFIC_ARGS``.) It plays Flinks and the bank's review team:

1. registers each session in the Flinks sandbox through its admin API, drawn from the sandbox's
   presets (accept, high-risk, shortfall, no-guarantee) plus two variations on accept: a payor whose
   available balance is below 500.00, and a risk level of ``Unknown`` (which the shipped policy sends to
   review); amounts and balances vary;
2. sends each one's signed guarantee webhook, as Flinks does;
3. answers most reviews as a person (three reviewers, after a few seconds each) with the same
   conditional write ``geft-ops decide`` makes, and leaves the rest to the review timeout;
4. once a guarantee is answered, ends its session: ``Completed``, ``Failed``, ``Canceled`` by a signed
   ``SessionSetupStatusChanged`` webhook, or only in the sandbox (``Expired``, which Flinks never sends,
   and some whose webhook is "lost"), for the reconciler to find; some sessions get no end at all.

How sessions end is **synthetic**: a thin balance ends ``Failed`` (EFT0404, insufficient balance)
more often than a healthy one, so a backtest has something to find. It is a demonstration, not data.
Everything goes to 127.0.0.1: the stack's state file names the webhook URL, secret, sandbox and moto.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from geft.items import GuaranteeView, guarantee_view
from geft.models import Actor, GuaranteeStatus, Verdict
from geft.repository import GuaranteeRepository

from geft_local.aws import EndpointSession
from testkit.flinks import SandboxAdmin, emit_guarantee_webhook, guarantee_webhook_body

DEFAULT_RUN_DIR = Path(".local")
REVIEWERS = ("m.tremblay", "a.roy", "j.singh")
REVIEWER_ARN = "arn:aws:sts::123456789012:assumed-role/risk-reviewers/{name}"  # moto's account
THIN_BALANCE = Decimal("500.00")
HTTP_TIMEOUT_S = 5.0
_ANSWERED = frozenset({GuaranteeStatus.CONFIRMED, GuaranteeStatus.FAILED})
_T = TypeVar("_T")


class TrafficError(Exception):
    """The stack is not there, or answered something unexpected."""


@dataclass(frozen=True)
class Profile:
    name: str
    weight: int
    preset: str
    thin_balance: bool = False
    risk: str | None = None


PROFILES = (
    Profile("accept", 62, "accept"),
    Profile("thin-balance", 10, "accept", thin_balance=True),
    Profile("high-risk", 8, "high-risk"),
    Profile("shortfall", 8, "shortfall"),
    Profile("no-guarantee", 4, "no-guarantee"),
    Profile("unknown-risk", 8, "accept", risk="Unknown"),
)


@dataclass(frozen=True)
class Planned:
    """One session to play: its sandbox scenario and what the review team and Flinks will do with it."""

    number: int
    profile: Profile
    amount: Decimal
    balance: Decimal
    scenario: dict[str, Any]
    review_answer: Verdict | None  # None: left to the review timeout (if it goes to review at all)
    reviewer: str
    review_delay_s: float
    final: tuple[str, str] | None  # (status, statusDetails); None: the session never ends
    final_by_webhook: bool  # False: only the sandbox knows (the reconciler finds it)


def plan(count: int, seed: int, *, review_delay_s: float = 20.0) -> list[Planned]:
    """``count`` sessions drawn from PROFILES with a seeded generator: the same seed, the same day."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    planned = []
    for number in range(count):
        profile = rng.choices(PROFILES, weights=[p.weight for p in PROFILES])[0]
        amount = Decimal(rng.randrange(2_500, 250_000)) / 100
        balance = (
            Decimal(rng.randrange(1_000, int(THIN_BALANCE * 100))) / 100
            if profile.thin_balance
            else Decimal(rng.randrange(50_000, 2_000_000)) / 100
        )
        scenario: dict[str, Any] = {
            "preset": profile.preset,
            "amount": str(amount),
            "available_balance": str(balance),
            "reference_id": f"TRAFFIC-{seed}-{number:05d}",
        }
        if profile.preset == "shortfall":  # part of the amount guaranteed
            scenario["highest_debit_amount_to_guarantee"] = str(
                (amount * Decimal("0.6")).quantize(Decimal("0.01"))
            )
        if profile.risk is not None:
            scenario["overall_risk_level"] = profile.risk
        answer: Verdict | None = None
        if rng.random() < 0.75:  # a person answers three reviews in four; the timeout takes the rest
            healthy = balance >= THIN_BALANCE
            answer = Verdict.ACCEPT if (rng.random() < 0.85) == healthy else Verdict.REJECT
        final, by_webhook = _final_status(rng, profile, balance)
        planned.append(
            Planned(
                number=number,
                profile=profile,
                amount=amount,
                balance=balance,
                scenario=scenario,
                review_answer=answer,
                reviewer=rng.choice(REVIEWERS),
                review_delay_s=round(rng.uniform(0.2, 1.0) * review_delay_s, 1),
                final=final,
                final_by_webhook=by_webhook,
            )
        )
    return planned


def _final_status(
    rng: random.Random, profile: Profile, balance: Decimal
) -> tuple[tuple[str, str] | None, bool]:
    """How the session ends (synthetic; see the module's docstring), and whether Flinks says so by webhook."""
    if rng.random() < 0.1:
        return None, False  # still open when the day ends
    declined = profile.preset in ("high-risk", "shortfall", "no-guarantee")
    if declined:
        outcomes = [("Canceled", "EFT0501", 50), ("Failed", "EFT0402", 30), ("Expired", "EFT0601", 20)]
    elif balance < THIN_BALANCE:
        outcomes = [("Failed", "EFT0404", 45), ("Completed", "EFT0301", 40), ("Expired", "EFT0601", 10)]
        outcomes.append(("Canceled", "EFT0501", 5))
    else:
        outcomes = [("Completed", "EFT0301", 85), ("Failed", "EFT0403", 5), ("Canceled", "EFT0501", 5)]
        outcomes.append(("Expired", "EFT0601", 5))
    status, details, _ = rng.choices(outcomes, weights=[weight for *_, weight in outcomes])[0]
    # Flinks never sends Expired; one webhook in five of the others is "lost" for the reconciler
    return (status, details), status != "Expired" and rng.random() >= 0.2


# -- the stack ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalStackState:
    webhook_url: str
    webhook_secret: str
    sandbox_url: str
    endpoint_url: str
    table_name: str

    @classmethod
    def read(cls, path: Path) -> LocalStackState:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                webhook_url=str(state["webhookUrl"]),
                webhook_secret=str(state["webhookSecret"]),
                sandbox_url=str(state["flinksBaseUrl"]).rstrip("/"),
                endpoint_url=str(state["endpointUrl"]),
                table_name=str(state["outputs"]["GuaranteesTableName"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TrafficError(f"cannot read the local stack's state {path}: {error}") from error


def running_state(run_dir: Path) -> Path:
    """The state file of the one local stack running under ``run_dir`` (``make local`` writes it)."""
    running = [path for path in sorted(run_dir.glob("*/stack.json")) if _alive(path)]
    if len(running) != 1:
        found = "no local stack is running" if not running else f"{len(running)} local stacks are running"
        raise TrafficError(f"{found} under {run_dir}/: start one with `make local`, or give --state")
    return running[0]


def _alive(path: Path) -> bool:
    try:
        os.kill(int(json.loads(path.read_text(encoding="utf-8")).get("pid", 0)), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


class Flinks:
    """Plays Flinks against the stack: the sandbox's admin API, and signed webhooks to the receiver."""

    def __init__(self, state: LocalStackState) -> None:
        self._state = state
        self.sandbox = _sent(lambda: SandboxAdmin(state.sandbox_url, timeout=HTTP_TIMEOUT_S), "the sandbox")

    def register(self, scenario: Mapping[str, Any]) -> str:
        return _sent(lambda: self.sandbox.add_session(scenario), "register a session")

    def end_session(self, session_id: str, status: str, details: str | None) -> None:
        _sent(lambda: self.sandbox.set_status(session_id, status, details), f"end session {session_id}")

    def webhook(self, session_id: str, planned: Planned, status: tuple[str, str] | None = None) -> None:
        """The session's signed guarantee webhook; with ``status``, its ``SessionSetupStatusChanged``."""
        url = self._state.webhook_url
        if not url.startswith("http://127.0.0.1"):
            raise TrafficError(f"refusing to send traffic anywhere but 127.0.0.1: {url}")
        reference_id = planned.scenario["reference_id"]
        body = guarantee_webhook_body(session_id, reference_id=reference_id, amount=float(planned.amount))
        if status is not None:
            body |= {"type": "SessionSetupStatusChanged", "status": status[0], "statusDetails": status[1]}
        secret, timeout = self._state.webhook_secret, HTTP_TIMEOUT_S
        result = emit_guarantee_webhook(url, secret, session_id, body=body, attempts=1, timeout=timeout)
        if not result.delivered:
            raise TrafficError(f"POST {url}: answered {result.attempts[0][0] or 'nothing'}")


def _sent(call: Callable[[], _T], what: str) -> _T:
    try:
        return call()
    except (OSError, ValueError) as error:
        raise TrafficError(f"{what}: {error}") from error


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class Played:
    planned: Planned
    session_id: str
    reviewed: bool = False
    ended: bool = False
    view: GuaranteeView | None = None


@dataclass
class Tally:
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (profile, decision) -> count
    reviewers: Counter[str] = field(default_factory=Counter)
    left_to_timeout: int = 0
    by_webhook: Counter[str] = field(default_factory=Counter)
    for_reconciler: Counter[str] = field(default_factory=Counter)
    open_sessions: int = 0
    unanswered: int = 0


def play(
    state: LocalStackState, planned: Sequence[Planned], *, wait_s: float, say: Callable[[str], None]
) -> Tally:
    """Register and send every session, then answer reviews and end sessions until each guarantee is
    answered (or ``wait_s`` has passed)."""
    run = _Run(state)
    played = [Played(entry, run.flinks.register(entry.scenario)) for entry in planned]
    for entry in played:
        run.flinks.webhook(entry.session_id, entry.planned)
    say(f"sent {len(played)} guarantee webhooks; answering reviews and ending sessions as they are decided")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        views = _guarantees(run.client, state.table_name)
        pending = 0
        for entry in played:
            entry.view = views.get(entry.session_id)
            pending += run.step(entry)
        if not pending:
            break
        time.sleep(0.5)
    tally = run.tally
    for entry in played:
        view = entry.view
        if view is None or view.status not in _ANSWERED:
            tally.unanswered += 1
        elif view.decision is not None:
            tally.decisions[(entry.planned.profile.name, _first_decision(view))] += 1
        if entry.planned.final is None:
            tally.open_sessions += 1
    return tally


class _Run:
    """What one run holds: its Flinks, its table client, when each review is answered, its tally."""

    def __init__(self, state: LocalStackState) -> None:
        self.state = state
        self.flinks = Flinks(state)
        self.client = EndpointSession(state.endpoint_url).client("dynamodb")
        self.tally = Tally()
        self._review_due: dict[str, float] = {}

    def step(self, entry: Played) -> int:
        """Move one session on; 1 while something is still to happen to it."""
        view, planned = entry.view, entry.planned
        if view is None:
            return 1
        if view.status is GuaranteeStatus.REVIEW and view.review and not view.review.hold_reason:
            self._review(entry, view)
            return 1
        if view.status not in _ANSWERED:
            return 1
        if not entry.ended and planned.final is None:
            # still open at Flinks (the sandbox ends a session when it is confirmed): the reconciler
            # finds it in progress and asks again later
            self.flinks.end_session(entry.session_id, "InProgress", None)
        elif not entry.ended and planned.final is not None:
            status, details = planned.final
            self.flinks.end_session(entry.session_id, status, details)
            if planned.final_by_webhook:
                self.flinks.webhook(entry.session_id, planned, (status, details))
                self.tally.by_webhook[status] += 1
            else:
                self.tally.for_reconciler[status] += 1
        entry.ended = True
        return 0

    def _review(self, entry: Played, view: GuaranteeView) -> None:
        planned = entry.planned
        if entry.reviewed:
            return
        if planned.review_answer is None:
            self.tally.left_to_timeout += 1
            entry.reviewed = True
            return
        due = self._review_due.setdefault(entry.session_id, time.monotonic() + planned.review_delay_s)
        if time.monotonic() >= due:
            if _answer_review(self.client, self.state.table_name, view, planned):
                self.tally.reviewers[planned.reviewer] += 1
            else:  # the review timeout was quicker
                self.tally.left_to_timeout += 1
            entry.reviewed = True


def _answer_review(client: Any, table_name: str, view: GuaranteeView, planned: Planned) -> bool:
    """The reviewer's answer, with the conditional write ``geft-ops decide`` makes."""
    assert planned.review_answer is not None  # only called for answered reviews
    reviewer = Actor.operator(REVIEWER_ARN.format(name=planned.reviewer), planned.reviewer)
    repository = GuaranteeRepository(table_name, retention_days=400, actor=reviewer, client=client)
    why = "balance and identity checked" if planned.review_answer is Verdict.ACCEPT else "balance too thin"
    return repository.record_review_decision(
        view.ref, verdict=planned.review_answer, reason=why, now_ms=int(time.time() * 1000)
    )


def _guarantees(client: Any, table_name: str) -> dict[str, GuaranteeView]:
    views: dict[str, GuaranteeView] = {}
    request: dict[str, Any] = {"TableName": table_name}
    while True:
        page = client.scan(**request)
        for item in page.get("Items", []):
            if (view := guarantee_view(item)) is not None:
                views[view.ref.session_id] = view
        if "LastEvaluatedKey" not in page:
            return views
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _first_decision(view: GuaranteeView) -> str:
    """The policy's decision (review, for one a person or the timeout answered since)."""
    decision = view.decision
    if decision is not None and view.review is not None and view.review.requested_by_rule:
        return Verdict.REVIEW.value
    return decision.verdict.value if decision is not None else "-"


def summary(planned: Sequence[Planned], tally: Tally) -> str:
    profiles = Counter(entry.profile.name for entry in planned)
    lines = [f"{'profile':<14} {'sessions':>8} {'accept':>7} {'reject':>7} {'review':>7}"]
    for profile in PROFILES:
        if profiles[profile.name]:
            counts = [tally.decisions[(profile.name, verdict.value)] for verdict in Verdict]
            lines.append(
                f"{profile.name:<14} {profiles[profile.name]:>8} " + " ".join(f"{c:>7}" for c in counts)
            )
    people = ", ".join(f"{name} {count}" for name, count in sorted(tally.reviewers.items()))
    lines.append(
        f"reviews: {sum(tally.reviewers.values())} answered by people ({people or 'none'}), "
        f"{tally.left_to_timeout} left to the review timeout"
    )
    lines.append(
        f"session ends: {_counts(tally.by_webhook)} by status webhook; "
        f"{_counts(tally.for_reconciler)} only in the sandbox, for the reconciler; "
        f"{tally.open_sessions} never end"
    )
    if tally.unanswered:
        lines.append(f"{tally.unanswered} guarantees were not answered within the wait (--wait)")
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{status} {count}" for status, count in sorted(counter.items())) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geft_local.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="how many sessions (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed plays the same day")
    parser.add_argument("--wait", type=float, default=240.0, help="seconds to wait for every answer")
    parser.add_argument(
        "--review-delay", type=float, default=20.0, help="a reviewer answers within this many seconds"
    )
    parser.add_argument(
        "--state", type=Path, default=None, help="the stack's state file (default: the running one)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 100_000:
        parser.error("--sessions must be within 1..100000")
    try:
        run_dir = Path(os.environ.get("LOCAL_RUN_DIR") or DEFAULT_RUN_DIR)
        state = LocalStackState.read(args.state or running_state(run_dir))
        started = time.monotonic()
        planned = plan(args.sessions, args.seed, review_delay_s=args.review_delay)
        tally = play(state, planned, wait_s=args.wait, say=lambda line: print(line, flush=True))
    except TrafficError as error:
        print(f"geft-traffic: {error}", file=sys.stderr)
        return 1
    print(summary(planned, tally))
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0 if not tally.unanswered else 1


if __name__ == "__main__":
    sys.exit(main())
