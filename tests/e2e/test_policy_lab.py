"""docs/operations.md "Changing the decision policy with evidence", run on the local stack as it shows it:
a day's traffic (``make traffic``), a backtest, review statistics, a shadow run and its report, the
promotion; every command a subprocess in the documented form (``bin/geft-ops --local ...``).

The traffic is smaller than the documented day (36 sessions, reviewers answering within 2 s) and the
review timeout is 4 s instead of 60 s, so the whole story takes about a minute: the commands are the
documented ones, the counts are checked against the generator's own plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from geft.policy import DecisionPolicy
from geft_local.stack import LocalStack
from geft_local.traffic import plan

from tests.e2e.conftest import StartStack
from tests.e2e.helpers import console_dump

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
README = (REPO / "README.md").read_text(encoding="utf-8")
LIVE_POLICY = json.dumps(json.loads((REPO / "policies" / "default.json").read_text(encoding="utf-8")))
CANDIDATE_FILE = "policies/examples/tightened-shortfall.json"
CANDIDATE = DecisionPolicy.from_json((REPO / CANDIDATE_FILE).read_text(encoding="utf-8"))
CANDIDATE_JSON = json.dumps(json.loads((REPO / CANDIDATE_FILE).read_text(encoding="utf-8")))
SESSIONS = 36
DOCUMENTED_TRAFFIC = re.compile(r'\$ make traffic TRAFFIC_ARGS="--sessions \d+ --seed (\d)"')


def documented(command: str, *, in_readme: bool = False) -> str:
    """``command`` exactly as docs/operations.md shows it (after its ``$`` prompt), and README.md too."""
    assert f"$ {command}\n" in OPERATIONS, f"docs/operations.md does not show `{command}`"
    assert not in_readme or f"`{command}`" in README, f"README.md does not show `{command}`"
    return command


def run(stack: LocalStack, command: str) -> subprocess.CompletedProcess[str]:
    """A shell command from the repository's root, finding this stack as `make local`'s is found:
    under LOCAL_RUN_DIR. No AWS variable of the caller's reaches it."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MAKE"))}
    environment["LOCAL_RUN_DIR"] = str(stack.config.run_dir)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        env=environment,
        check=False,
    )


def traffic(stack: LocalStack, seed: int) -> subprocess.CompletedProcess[str]:
    """``make traffic`` for ``seed`` (as documented, smaller), while the review timeout is fired every
    second the way its schedule would (4 s reviews instead of a minute)."""
    assert str(seed) in DOCUMENTED_TRAFFIC.findall(OPERATIONS), f"docs/operations.md shows no seed {seed}"
    scheduler = stack.scheduler
    assert scheduler is not None
    done = threading.Event()

    def review_timeout() -> None:
        while not done.wait(1.0):
            scheduler.fire_now("ReviewTimeoutFunction")

    firing = threading.Thread(target=review_timeout, daemon=True)
    firing.start()
    try:
        played = run(
            stack,
            f'make traffic TRAFFIC_ARGS="--sessions {SESSIONS} --seed {seed} --review-delay 2 --wait 60"',
        )
    finally:
        done.set()
        firing.join(timeout=10)
    assert played.returncode == 0, played.stdout + played.stderr + console_dump(stack)
    return played


def thin_balance_sessions(seed: int) -> int:
    return sum(entry.profile.thin_balance for entry in plan(SESSIONS, seed))


@pytest.fixture
def one_stack(start_stack: StartStack) -> Iterator[Any]:
    """Starts one stack for the test (as `make local` with the documented variables) and stops it after,
    so the next test's stack, like a restart, begins with an empty table."""
    with ExitStack() as stops:

        def start(name: str, **parameters: str) -> LocalStack:
            stack = start_stack(
                name, compressed_time=True, ReviewTimeoutSeconds="4", ReconcileDelaySeconds="0", **parameters
            )
            stops.callback(stack.stop)
            return stack

        yield start


def test_a_day_of_traffic_then_a_backtest_and_review_statistics(one_stack: Any) -> None:
    documented(
        'DECISION_POLICY="$(jq -c . policies/default.json)" PARAM_ReviewTimeoutSeconds=60 '
        "PARAM_ReconcileDelaySeconds=0 make local"
    )
    stack = one_stack("lab-day", DecisionPolicy=LIVE_POLICY)
    played = traffic(stack, seed=1)
    assert f"sent {SESSIONS} guarantee webhooks" in played.stdout
    assert stack.scheduler is not None
    stack.scheduler.fire_now("ReconcilerFunction")  # the sessions whose end only the sandbox knows

    backtest = documented(
        f"bin/geft-ops --local policy backtest {CANDIDATE_FILE} --show-changed 5", in_readme=True
    )
    shown = run(stack, backtest)
    assert shown.returncode == 0, shown.stderr
    assert f"candidate      {CANDIDATE.identity.label()}" in shown.stdout.splitlines()
    assert f"considered     {SESSIONS} guarantees" in shown.stdout.splitlines()
    report = json.loads(run(stack, f"{backtest} --json").stdout)
    thin = thin_balance_sessions(1)
    assert thin  # the seed plays some
    assert (report["considered"], report["notEvaluated"]["total"]) == (SESSIONS, 0)
    assert report["changed"] == thin  # the new rule rejects exactly the thin balances, all accepted today
    [change] = report["transitions"]
    assert (change["change"], change["count"]) == ("accept->reject", thin)
    assert sum(change["finalStatus"].values()) == thin
    assert {"rule": "thin-balance", "today": 0, "candidate": thin} in report["rules"]
    assert len(report["examples"]) == min(5, thin)

    stats = run(stack, documented("bin/geft-ops --local review stats", in_readme=True))
    assert stats.returncode == 0, stats.stderr
    assert stats.stdout.startswith("window")
    assert "queue now       0 waiting: 0 policy reviews, 0 holds" in stats.stdout.splitlines()
    reviews = sum(entry.profile.risk == "Unknown" for entry in plan(SESSIONS, 1))
    assert f"answered        {reviews} policy reviews:" in stats.stdout


def test_the_candidate_in_the_shadow_then_its_report(one_stack: Any) -> None:
    documented(
        'DECISION_POLICY="$(jq -c . policies/default.json)" '
        f'PARAM_ShadowDecisionPolicy="$(jq -c . {CANDIDATE_FILE})" '
        "PARAM_ReviewTimeoutSeconds=60 PARAM_ReconcileDelaySeconds=0 make local"
    )
    stack = one_stack("lab-shadow", DecisionPolicy=LIVE_POLICY, ShadowDecisionPolicy=CANDIDATE_JSON)
    traffic(stack, seed=2)

    command = documented("bin/geft-ops --local policy shadow-report --limit 5", in_readme=True)
    shown = run(stack, command)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(run(stack, f"{command} --json").stdout)
    thin = thin_balance_sessions(2)
    assert (report["withShadow"], report["disagree"], report["agree"]) == (SESSIONS, thin, SESSIONS - thin)
    assert report["byRule"] == [
        {
            "liveRule": "default",
            "shadowRule": "thin-balance",
            "live": "accept",
            "shadow": "reject",
            "count": thin,
        }
    ]
    assert f"agreement      {SESSIONS - thin} of {SESSIONS}" in shown.stdout


def test_the_promoted_policy_decides_and_names_itself(one_stack: Any) -> None:
    documented(
        f'DECISION_POLICY="$(jq -c . {CANDIDATE_FILE})" PARAM_ReviewTimeoutSeconds=60 '
        "PARAM_ReconcileDelaySeconds=0 make local"
    )
    stack = one_stack("lab-promoted", DecisionPolicy=CANDIDATE_JSON)
    traffic(stack, seed=3)

    listed = run(stack, documented("bin/geft-ops --local list --decision reject --limit 5"))
    assert listed.returncode == 0, listed.stderr
    rejected = json.loads(run(stack, "bin/geft-ops --local list --decision reject --json").stdout)
    thin = [row for row in rejected if row["reason"] == "THIN_BALANCE"]
    assert len(thin) == thin_balance_sessions(3)
    header = listed.stdout.splitlines()[0].split()
    assert header[header.index("rule") + 1] == "reason"  # the documented table shows each reason code
    shown = run(stack, f"bin/geft-ops --local show {thin[0]['sessionId']}")
    assert re.search(r"^\$ bin/geft-ops --local show [0-9a-f-]{36}$", OPERATIONS, re.MULTILINE)
    assert "    decision   reject by rule thin-balance (THIN_BALANCE)" in shown.stdout.splitlines()
    assert f"    policy     {CANDIDATE.identity.label()}" in shown.stdout.splitlines()
    # the policy now live, backtested on its own decisions, changes nothing
    again = run(stack, documented(f"bin/geft-ops --local policy backtest {CANDIDATE_FILE}"))
    assert f"evaluated      {SESSIONS}: 0 decided differently (0.0%)" in again.stdout
