"""The policy lab under moto: backtest, shadow report and review statistics on a seeded table whose
answers are known, through the operator CLI; plus the shadow policy and the decision's policy identity
through the real processor handler with the Flinks sandbox.

The seeded table is written with the repository's own transitions, in the order the processor makes
them (claim -> finish, review requested -> reviewed -> claim -> finish), so its items have the shape
the functions give them."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from decision_processor import processor as live_processor
from geft import models
from geft.policy import DEFAULT_POLICY_JSON, DecisionPolicy
from geft.repository import GuaranteeRepository
from geft_ops import policy_lab
from geft_ops.decision_history import Window, read_history
from geft_ops.resources import StackResources

from testkit.emf import metric_data, metric_names, metric_values
from testkit.flinks import Scenario
from testkit.inprocess import InProcessStack
from testkit.reset import MotoSnapshot
from tests.support.pipeline import Cli, Invoke, Pipeline

DAY_MS = 86_400_000
NOW_MS = int(time.time() * 1000)
LIVE = DecisionPolicy.from_json(DEFAULT_POLICY_JSON)
TIGHTENED_DOCUMENT: dict[str, Any] = {
    **json.loads(DEFAULT_POLICY_JSON),
    "name": "tightened-shortfall",
    "version": "3",
}
TIGHTENED_DOCUMENT["rules"] = [
    *TIGHTENED_DOCUMENT["rules"][:2],
    {
        "name": "low-balance",
        "when": {"availableBalance": {"lt": 500}},
        "decision": "reject",
        "reason": "LOW_BALANCE",
    },
    *TIGHTENED_DOCUMENT["rules"][2:],
]
TIGHTENED = DecisionPolicy.from_document(TIGHTENED_DOCUMENT)
PERSON = "arn:aws:sts::123456789012:assumed-role/risk-reviewers/m.tremblay"
OTHER_PERSON = "arn:aws:sts::123456789012:assumed-role/risk-reviewers/a.roy"
WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "ExecuteStatement"}
)


def facts(*, balance: str = "5000.00", risk: str | None = "Low", shortfall: str = "0") -> dict[str, Any]:
    """The facts the processor reads from /details for the sandbox's sessions."""
    found: dict[str, Any] = {
        "amount": "250.00",
        "currency": "CAD",
        "guaranteeOffered": True,
        "highestDebitAmountToGuarantee": str(250 - int(shortfall)),
        "shortfall": shortfall,
        "availableBalance": balance,
    }
    if risk is not None:
        found["overallRiskLevel"] = risk
    return found


@dataclass(frozen=True)
class Answer:
    """How a review ended: who answered (a person's STS ARN, or None for the review timeout), what, when."""

    verdict: models.Verdict
    person: str | None
    note: str | None = None
    after_s: int = 60


class Seeder:
    """Writes guarantees the way the functions do, at chosen times, with the repository's transitions."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self.processor = self._repository(models.Actor.function("geft-DecisionProcessor"))

    def _repository(self, actor: models.Actor) -> GuaranteeRepository:
        return GuaranteeRepository(self._table, retention_days=400, actor=actor, client=self._client)

    def received(self, *, days_ago: float = 1.0) -> tuple[models.GuaranteeRef, int]:
        session_id = str(uuid.uuid4())
        ref = models.GuaranteeRef(session_id, "amount:250.00")
        at_ms = NOW_MS - int(days_ago * DAY_MS)
        body = json.dumps({"type": "GuaranteeEmitted", "sessionId": session_id, "amount": 250})
        self.processor.insert_guarantee(
            ref,
            raw_body=body,
            content_sha256=hashlib.sha256(body.encode()).hexdigest(),
            received_at_ms=at_ms,
            event_when=None,
        )
        return ref, at_ms

    def decided(
        self,
        found: Mapping[str, Any] | None,
        *,
        days_ago: float = 1.0,
        answer: Answer | None = None,
        final: str | None = None,
        shadow: DecisionPolicy | None = None,
        decision: models.Decision | None = None,
    ) -> str:
        """A guarantee the live policy decided on ``found`` (or ``decision`` as given), answered after
        a review by ``answer``, whose session ended ``final``."""
        ref, at_ms = self.received(days_ago=days_ago)
        decided = decision or LIVE.decide(found or {})
        shadowed = shadow.decide(found or {}) if shadow is not None else None
        decided_at = at_ms + 200
        self._claim(ref, "first", at_ms + 100)
        if decided.verdict is models.Verdict.REVIEW:
            self._finish(
                ref,
                "first",
                decided_at,
                models.GuaranteeOutcome(
                    status=models.GuaranteeStatus.REVIEW,
                    change=models.ChangeKind.REVIEW_REQUESTED,
                    decision=decided,
                    shadow=shadowed,
                    decided_at_ms=decided_at,
                    follow_up=models.FollowUp(models.FollowUpQueue.REVIEW, decided_at + 300_000),
                ),
            )
            if answer is None:
                return ref.session_id
            reviewed_at = decided_at + answer.after_s * 1000
            actor = (
                models.Actor.operator(answer.person, answer.note)
                if answer.person
                else models.Actor.function("geft-ReviewTimeout")
            )
            assert self._repository(actor).record_review_decision(
                ref, verdict=answer.verdict, reason="checked", now_ms=reviewed_at
            )
            rule = live_processor.MANUAL_REVIEW_RULE if answer.person else live_processor.REVIEW_TIMEOUT_RULE
            reason = "MANUAL_REVIEW" if answer.person else "REVIEW_TIMEOUT"
            self._claim(ref, "second", reviewed_at + 100)
            decided = models.Decision(answer.verdict, rule, {}, reason=reason)
            shadowed, decided_at = None, reviewed_at + 200
        self._finish(
            ref,
            "second" if answer else "first",
            decided_at + 50,
            models.GuaranteeOutcome(
                status=models.GuaranteeStatus.CONFIRMED,
                change=models.ChangeKind.CONFIRMED,
                decision=decided,
                shadow=shadowed,
                decided_at_ms=decided_at,
                confirmed_at_ms=decided_at + 50,
                webhook_to_confirm_ms=decided_at + 50 - at_ms,
            ),
        )
        if final is not None:
            assert self.processor.record_session_status(
                ref.session_id,
                status=final,
                status_details=None,
                raw_body="{}",
                received_at_ms=decided_at + 60_000,
                source="webhook",
            )
        return ref.session_id

    def held(self) -> str:
        ref, at_ms = self.received()
        self._claim(ref, "first", at_ms + 100)
        self._finish(
            ref,
            "first",
            at_ms + 200,
            models.GuaranteeOutcome(
                status=models.GuaranteeStatus.REVIEW,
                change=models.ChangeKind.HELD,
                hold_reason="a confirm may have reached Flinks, and /details shows a decision",
                follow_up=models.FollowUp(models.FollowUpQueue.HOLD, at_ms + 200),
            ),
        )
        return ref.session_id

    def _claim(self, ref: models.GuaranteeRef, claim_id: str, now_ms: int) -> None:
        claim = self.processor.claim(ref, claim_id=claim_id, now_ms=now_ms, lease_until_ms=now_ms + 60_000)
        assert claim.guarantee is not None, claim

    def _finish(
        self, ref: models.GuaranteeRef, claim_id: str, now_ms: int, outcome: models.GuaranteeOutcome
    ) -> None:
        assert self.processor.finish(ref, claim_id=claim_id, outcome=outcome, now_ms=now_ms)


@dataclass(frozen=True)
class Seeded:
    sessions: dict[str, str]  # label -> session id
    table: str


@pytest.fixture(scope="module")
def _seeded_once(moto_deployment: tuple[InProcessStack, MotoSnapshot]) -> tuple[Seeded, MotoSnapshot]:
    """Seventeen guarantees in the last 30 days (and one older), each with a known backtest answer
    against TIGHTENED (the live policy plus ``availableBalance < 500 -> reject``), written once for the
    module; moto's state then, for each test to start from."""
    stack, deployment = moto_deployment
    deployment.restore()
    table = stack.ref("GuaranteesTable")
    seed = Seeder(stack.session.client("dynamodb"), table)
    low_risk_review = {"risk": "Unknown"}
    sessions = {
        "accepted": seed.decided(facts(), final="Completed", shadow=TIGHTENED),
        "accepted-open": seed.decided(facts()),
        "shortfall": seed.decided(facts(shortfall="150"), final="Canceled"),
        "high-risk": seed.decided(facts(risk="High"), final="Failed"),
        "low-balance-failed": seed.decided(facts(balance="200.00"), final="Failed", shadow=TIGHTENED),
        "low-balance-completed": seed.decided(facts(balance="450.00"), final="Completed", shadow=TIGHTENED),
        "low-balance-open": seed.decided(facts(balance="100.00")),
        "high-risk-low-balance": seed.decided(facts(risk="High", balance="100.00")),
        "review-accepted": seed.decided(
            facts(balance="300.00", **low_risk_review),
            answer=Answer(models.Verdict.ACCEPT, PERSON, "m.tremblay", after_s=120),
            final="Completed",
            shadow=TIGHTENED,
        ),
        "review-timed-out": seed.decided(
            facts(**low_risk_review), answer=Answer(models.Verdict.REJECT, None, after_s=300)
        ),
        "review-waiting": seed.decided(facts(**low_risk_review)),
        "missing-facts": seed.decided(
            facts(risk=None), answer=Answer(models.Verdict.REJECT, OTHER_PERSON, "a.roy", after_s=30)
        ),
        "review-accepted-2": seed.decided(
            facts(**low_risk_review), answer=Answer(models.Verdict.ACCEPT, PERSON, "m.tremblay", after_s=60)
        ),
        "recovered": seed.decided(
            None,
            decision=models.Decision(
                models.Verdict.ACCEPT,
                live_processor.RECOVERED_RULE,
                {"guaranteeAccepted": True},
                "RECORDED_AT_FLINKS",
            ),
        ),
        "held": seed.held(),
        "undecided": seed.received()[0].session_id,
        "legacy": seed.decided(None, decision=models.Decision(models.Verdict.ACCEPT, "default", {})),
        "old": seed.decided(facts(balance="100.00"), days_ago=40, final="Failed"),
    }
    return Seeded(sessions, table), MotoSnapshot.take()


@pytest.fixture
def seeded(aws: Any, _seeded_once: tuple[Seeded, MotoSnapshot]) -> Seeded:
    """The seeded table, as written (whatever an earlier test did to it)."""
    seeded, state = _seeded_once
    state.restore()
    return seeded


@pytest.fixture
def tightened_file(tmp_path: Path) -> Path:
    path = tmp_path / "tightened.json"
    path.write_text(json.dumps(TIGHTENED_DOCUMENT))
    return path


@pytest.fixture
def dynamodb_operations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DynamoDB operation the CLI's clients send (botocore's before-call event sees each)."""
    sent: list[str] = []
    original = StackResources.client

    def recording(self: StackResources, service: str) -> Any:
        client = original(self, service)
        client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(str(model.name)))
        return client

    monkeypatch.setattr(StackResources, "client", recording)
    return sent


# -- backtest ---------------------------------------------------------------------------------------------


def test_backtest_on_a_seeded_table_gives_the_known_answers(
    seeded: Seeded, cli: Cli, tightened_file: Path
) -> None:
    # WHEN the tightened policy is backtested over the last 30 days (the default window)
    code, out, err = cli("policy", "backtest", str(tightened_file), "--json", "--show-changed", "10")

    # THEN every number is the one worked out by hand from the seeded decisions
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["candidate"] == TIGHTENED.identity.label()
    assert report["todayPolicies"] == {LIVE.identity.label(): 13}
    assert report["considered"] == 17  # "old" (40 days ago) is outside the window
    # no stored inputs: counted and named, never guessed
    assert report["notEvaluated"] == {
        "total": 4,
        "byReason": {
            policy_lab.NotEvaluated.RECOVERED.value: 1,
            policy_lab.NotEvaluated.HELD.value: 1,
            policy_lab.NotEvaluated.UNDECIDED.value: 1,
            policy_lab.NotEvaluated.NO_INPUTS.value: 1,
        },
    }
    assert (report["evaluated"], report["changed"], report["unchanged"]) == (13, 4, 9)
    assert report["sameDecisionOtherRule"] == 1  # high risk and low balance: rejected either way
    assert report["transitions"] == [
        {"change": "accept->reject", "count": 3, "finalStatus": {"Completed": 1, "Failed": 1, "unknown": 1}},
        {"change": "review->reject", "count": 1, "finalStatus": {"Completed": 1}},
    ]
    assert report["unchangedFinalStatus"] == [  # the baseline to read the changed ones against
        {"decision": "accept", "count": 2, "finalStatus": {"Completed": 1, "unknown": 1}},
        {"decision": "reject", "count": 3, "finalStatus": {"Failed": 1, "Canceled": 1, "unknown": 1}},
        {"decision": "review", "count": 4, "finalStatus": {"unknown": 4}},
    ]
    assert report["rules"] == [  # in the candidate's order; rules that never fire (no-guarantee) left out
        {"rule": "shortfall", "today": 1, "candidate": 1},
        {"rule": "low-balance", "today": 0, "candidate": 5},
        {"rule": "high-risk", "today": 2, "candidate": 1},
        {"rule": "unknown-risk", "today": 4, "candidate": 3},
        {"rule": "missing-facts", "today": 1, "candidate": 1},
        {"rule": "default", "today": 5, "candidate": 2},
    ]
    assert report["candidateMissingFacts"] == {"overallRiskLevel": 1}
    examples = {example["sessionId"]: example for example in report["examples"]}
    sessions = seeded.sessions
    assert set(examples) == {
        sessions[label]
        for label in ("low-balance-failed", "low-balance-completed", "low-balance-open", "review-accepted")
    }
    reviewed = examples[sessions["review-accepted"]]
    # today's decision of a reviewed guarantee is the policy's review; the person's answer is beside it
    assert reviewed["today"] == {"decision": "review", "rule": "unknown-risk", "reason": "RISK_UNKNOWN"}
    assert (reviewed["answer"], reviewed["answeredBy"]) == ("accept", "person")
    assert reviewed["candidate"] == {"decision": "reject", "rule": "low-balance", "reason": "LOW_BALANCE"}
    assert reviewed["finalStatus"] == "Completed"
    assert examples[sessions["low-balance-open"]]["finalStatus"] is None


def test_backtest_of_the_live_policy_itself_changes_nothing(seeded: Seeded, cli: Cli, tmp_path: Path) -> None:
    # GIVEN the live policy, written to a file with other spacing and key order
    live_file = tmp_path / "live.json"
    live_file.write_text(json.dumps(json.loads(DEFAULT_POLICY_JSON), indent=4, sort_keys=True))

    # WHEN it is backtested
    code, out, _ = cli("policy", "backtest", str(live_file), "--json")

    # THEN the recorded inputs replay to the recorded decisions, every one
    report = json.loads(out)
    assert code == 0
    assert (report["evaluated"], report["changed"], report["sameDecisionOtherRule"]) == (13, 0, 0)
    assert report["candidate"] == LIVE.identity.label()


def test_backtest_window_and_status_options_select_guarantees(
    seeded: Seeded, cli: Cli, tightened_file: Path
) -> None:
    _, everything, _ = cli("policy", "backtest", str(tightened_file), "--since", "60d", "--json")
    _, in_review, _ = cli(
        "policy", "backtest", str(tightened_file), "--status", "REVIEW", "RECEIVED", "--json"
    )
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((NOW_MS - 10 * DAY_MS) / 1000))
    _, old_only, _ = cli(
        "policy", "backtest", str(tightened_file), "--since", "60d", "--until", until, "--json"
    )

    assert json.loads(everything)["considered"] == 18
    assert json.loads(everything)["changed"] == 5  # "old" changes too
    # REVIEW: the one waiting and the hold; RECEIVED: the undecided one
    assert json.loads(in_review)["considered"] == 3
    assert json.loads(in_review)["window"]["statuses"] == ["RECEIVED", "REVIEW"]
    old = json.loads(old_only)
    assert (old["considered"], old["changed"]) == (1, 1)
    assert old["transitions"] == [{"change": "accept->reject", "count": 1, "finalStatus": {"Failed": 1}}]


def test_backtest_text_names_every_number(seeded: Seeded, cli: Cli, tightened_file: Path) -> None:
    code, out, _ = cli("policy", "backtest", str(tightened_file), "--show-changed", "2")

    assert code == 0
    lines = out.splitlines()
    assert f"candidate      {TIGHTENED.identity.label()}" in lines
    assert "considered     17 guarantees" in lines
    assert "not evaluated  4 (no policy inputs recorded: never guessed)" in lines
    assert f"            1  {policy_lab.NotEvaluated.RECOVERED.value}" in lines
    assert "evaluated      13: 4 decided differently (30.8%), 9 the same (1 of them by another rule)" in lines
    assert any(line.split() == ["accept", "->", "reject", "3", "1", "1", "-", "-", "1"] for line in lines)
    assert any(line.split() == ["review", "(unchanged)", "4", "-", "-", "-", "-", "4"] for line in lines)
    assert any(line.split() == ["low-balance", "0", "5"] for line in lines)
    assert "changed, newest 2 of 4:" in lines


def test_backtest_never_writes(
    seeded: Seeded,
    cli: Cli,
    tightened_file: Path,
    aws: Any,
    dynamodb_operations: list[str],
) -> None:
    # GIVEN the table as it is
    client = aws.client("dynamodb")
    before = client.scan(TableName=seeded.table, ConsistentRead=True)["Items"]

    # WHEN each lab command runs
    for command in (
        ("policy", "backtest", str(tightened_file), "--show-changed", "5"),
        ("policy", "shadow-report"),
        ("review", "stats"),
    ):
        code, _, err = cli(*command)
        assert code == 0, err

    # THEN only Scan reached DynamoDB, and the table is unchanged item for item
    assert dynamodb_operations
    assert set(dynamodb_operations) == {"Scan"}
    assert not WRITES & set(dynamodb_operations)
    after = client.scan(TableName=seeded.table, ConsistentRead=True)["Items"]
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, before))


def test_the_history_is_read_page_by_page_with_progress(seeded: Seeded, aws: Any) -> None:
    seen: list[tuple[int, int]] = []

    history = read_history(
        aws.client("dynamodb"),
        seeded.table,
        Window(since_ms=NOW_MS - 30 * DAY_MS),
        progress=lambda scanned, kept: seen.append((scanned, kept)),
        page_items=5,
    )

    assert len(history.guarantees) == 17
    assert history.pages == len(seen) > 3
    assert [scanned for scanned, _ in seen] == sorted({scanned for scanned, _ in seen})  # grows per page
    assert seen[-1] == (history.scanned, 17)
    # every known final status was read in the same pass ("old"'s too: sessions are not windowed)
    assert len(history.final_statuses) == 7
    assert all(view.raw_body == "" for view in history.guarantees)  # bodies are not read


def test_progress_goes_to_stderr_every_ten_thousand_items_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from geft_ops.cli import _ScanProgress

    progress = _ScanProgress()
    for page in range(1, 26):
        progress(page * 1000, page * 400)
    progress.done()

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "scanned 10,000 items, 4,000 guarantees so far",
        "scanned 20,000 items, 8,000 guarantees so far",
    ]


def test_a_bad_candidate_policy_is_refused_before_anything_is_read(
    stack: InProcessStack, cli: Cli, tmp_path: Path, dynamodb_operations: list[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": "maybe", "rules": []}')

    code, out, err = cli("policy", "backtest", str(bad))

    assert (code, out) == (1, "")
    assert "policy: default: unknown decision" in err
    assert dynamodb_operations == []
    code, _, err = cli("policy", "backtest", str(tmp_path / "missing.json"))
    assert code == 2
    assert "cannot read" in err
    code, _, err = cli("policy", "backtest", str(bad), "--since", "1d", "--until", "2d")
    assert code == 1  # the policy is checked first


# -- shadow report ----------------------------------------------------------------------------------------


def test_shadow_report_on_a_seeded_table(seeded: Seeded, cli: Cli) -> None:
    code, out, _ = cli("policy", "shadow-report", "--json", "--limit", "2")

    report = json.loads(out)
    assert code == 0
    assert (report["considered"], report["withShadow"], report["withoutShadow"]) == (17, 4, 13)
    assert report["shadowPolicies"] == {f"version 3 ({TIGHTENED.identity.content_hash})": 4}
    assert (report["agree"], report["disagree"], report["agreementRate"]) == (1, 3, 0.25)
    assert report["byDecision"] == [
        {"live": "accept", "shadow": "reject", "count": 2},
        {"live": "review", "shadow": "reject", "count": 1},
    ]
    assert report["byRule"] == [
        {
            "liveRule": "default",
            "shadowRule": "low-balance",
            "live": "accept",
            "shadow": "reject",
            "count": 2,
        },
        {
            "liveRule": "unknown-risk",
            "shadowRule": "low-balance",
            "live": "review",
            "shadow": "reject",
            "count": 1,
        },
    ]
    assert len(report["disagreements"]) == 2  # --limit
    code, text, _ = cli("policy", "shadow-report")
    assert "agreement      1 of 4 (25.0%); 3 disagree; 0 agree by another rule" in text.splitlines()
    assert "disagreements, newest 3 of 3:" in text.splitlines()


def test_shadow_report_without_shadow_decisions_says_so(stack: InProcessStack, cli: Cli) -> None:
    code, out, _ = cli("policy", "shadow-report")

    assert code == 0
    assert "no shadow decisions in this window: is ShadowDecisionPolicy set?" in out


# -- review statistics --------------------------------------------------------------------------------------


def test_review_stats_on_a_seeded_table(seeded: Seeded, cli: Cli) -> None:
    code, out, err = cli("review", "stats", "--json")

    assert (code, err) == (0, "")
    stats = json.loads(out)
    assert stats["queue"]["total"] == 2
    assert (stats["queue"]["policyReviews"], stats["queue"]["holds"]) == (1, 1)
    assert stats["queue"]["oldestReviewAgeMs"] >= DAY_MS - 1000
    assert (stats["answered"], stats["answeredByPeople"], stats["answeredByTimeout"]) == (4, 3, 1)
    assert (stats["timeoutShare"], stats["holdsAnswered"]) == (0.25, 0)
    # nearest rank over 30 s, 60 s, 120 s (people) and 300 s (the timeout)
    assert stats["timeToDecisionMs"] == {
        "all": {"count": 4, "p50": 60_000, "p90": 300_000},
        "people": {"count": 3, "p50": 60_000, "p90": 120_000},
    }
    # overturned: a person answered other than the fallback (reject): both accepts
    assert (stats["fallback"], stats["overturned"], stats["overturnRate"]) == ("reject", 2, 0.6667)
    assert stats["reviewers"] == [
        {
            "reviewer": f"operator:{PERSON}",
            "note": "m.tremblay",
            "answered": 2,
            "accepted": 2,
            "rejected": 0,
            "overturned": 2,
            "medianTimeToDecisionMs": 60_000,
        },
        {
            "reviewer": f"operator:{OTHER_PERSON}",
            "note": "a.roy",
            "answered": 1,
            "accepted": 0,
            "rejected": 1,
            "overturned": 0,
            "medianTimeToDecisionMs": 30_000,
        },
    ]
    assert stats["byRule"] == [
        {"rule": "unknown-risk", "answered": 3, "answers": {"accept": 2, "reject (timeout)": 1}},
        {"rule": "missing-facts", "answered": 1, "answers": {"reject": 1}},
    ]


def test_review_stats_against_an_accept_fallback_warns_when_the_timeouts_said_otherwise(
    seeded: Seeded, cli: Cli
) -> None:
    code, out, err = cli("review", "stats", "--fallback", "accept")

    assert code == 0
    assert "the review timeout answered reject in this window, not --fallback accept" in err
    assert "overturned      1 of 3 people's answers (33.3%) differ from the review timeout's fallback" in out


def test_the_labs_rule_names_are_the_processors() -> None:
    assert policy_lab.MANUAL_REVIEW_RULE == live_processor.MANUAL_REVIEW_RULE
    assert policy_lab.REVIEW_TIMEOUT_RULE == live_processor.REVIEW_TIMEOUT_RULE
    assert policy_lab.RECOVERED_RULE == live_processor.RECOVERED_RULE


# -- through the processor handler, with the Flinks sandbox --------------------------------------------------


@pytest.fixture
def processor_with(configure_processor: Callable[..., Invoke]) -> Callable[[str | None], Invoke]:
    """The processor on policies/default.json (named, versioned, with reasons) with this shadow policy."""

    def build(shadow: str | None) -> Invoke:
        overrides = {"SHADOW_DECISION_POLICY": shadow} if shadow is not None else {}
        return configure_processor(DECISION_POLICY=DEFAULT_POLICY_JSON, **overrides)

    return build


@pytest.fixture
def deliver(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[list[str], str]]:
    """Register sessions in the sandbox, deliver their webhooks, process them in one batch; the session
    ids and what the invocation printed (its EMF metrics)."""

    def run(processor: Invoke, *scenarios: Scenario) -> tuple[list[str], str]:
        sessions = [pipeline.sandbox.add_session(scenario=scenario) for scenario in scenarios]
        for session_id in sessions:
            pipeline.receive(session_id)
        event = pipeline.feed.next_event()
        capsys.readouterr()
        assert processor(event) == {"batchItemFailures": []}
        return sessions, capsys.readouterr().out

    return run


@pytest.mark.parametrize("failure", ["invalid at start", "raises while deciding"])
def test_a_failing_shadow_policy_is_counted_and_the_live_decision_is_confirmed(
    failure: str,
    pipeline: Pipeline,
    processor_with: Callable[[str | None], Invoke],
    deliver: Callable[..., tuple[list[str], str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from decision_processor import handler

    # GIVEN a shadow policy that does not validate, or one whose evaluation raises (a validated document
    # cannot: this stands for a bug in the policy engine)
    shadow = '{"default": "maybe", "rules": []}'
    if failure == "raises while deciding":

        class Failing(DecisionPolicy):
            def decide(self, facts: Mapping[str, object]) -> models.Decision:
                raise ArithmeticError("shadow bug")

        base = DecisionPolicy.from_json(DEFAULT_POLICY_JSON)
        failing = Failing(default=base.default, rules=base.rules)
        monkeypatch.setattr(handler, "_shadow_policy", lambda document: failing)
        shadow = json.dumps(TIGHTENED_DOCUMENT)

    # WHEN a shortfall is processed
    [session_id], emitted = deliver(processor_with(shadow), Scenario.preset("shortfall"))

    # THEN the live reject is confirmed once and recorded as usual; the shadow's failure is counted
    assert pipeline.confirms(session_id) == [False]
    assert metric_values(emitted, "ShadowPolicyErrors") == [1]
    assert "Confirmed" in metric_names(emitted)
    assert "ShadowDisagreement" not in metric_names(emitted)
    item = pipeline.item(session_id)
    assert (item["status"], item["decisionRule"], item["decisionReason"]) == (
        "CONFIRMED",
        "shortfall",
        "SHORTFALL",
    )
    assert "shadowDecision" not in item


def test_a_shadow_policy_is_recorded_counted_by_rule_and_reported(
    pipeline: Pipeline,
    processor_with: Callable[[str | None], Invoke],
    deliver: Callable[..., tuple[list[str], str]],
    cli: Cli,
    tightened_file: Path,
) -> None:
    # GIVEN the tightened policy as shadow, a payor with 300.00 available and one with 5,000.00
    processor = processor_with(json.dumps(TIGHTENED_DOCUMENT))

    # WHEN both are processed
    [thin, rich], emitted = deliver(
        processor, Scenario.preset("accept", available_balance="300.00"), Scenario.preset("accept")
    )

    # THEN the live accepts are confirmed; the shadow's reject is recorded and counted by rule
    assert (pipeline.confirms(thin), pipeline.confirms(rich)) == ([True], [True])
    [disagreement] = [datum for datum in metric_data(emitted) if datum.name == "ShadowDisagreement"]
    assert (disagreement.dimensions["LiveRule"], disagreement.dimensions["ShadowRule"]) == (
        "default",
        "low-balance",
    )
    item = pipeline.item(thin)
    assert (item["shadowDecision"], item["shadowRule"], item["shadowReason"]) == (
        "reject",
        "low-balance",
        "LOW_BALANCE",
    )
    assert (item["shadowPolicyHash"], item["shadowPolicyVersion"]) == (TIGHTENED.identity.content_hash, "3")
    code, out, _ = cli("policy", "shadow-report", "--json")
    report = json.loads(out)
    assert (code, report["withShadow"], report["agree"], report["disagree"]) == (0, 2, 1, 1)
    assert [entry["sessionId"] for entry in report["disagreements"]] == [thin]
    # and the stored inputs backtest the shadow to the very decisions it recorded
    code, out, _ = cli("policy", "backtest", str(tightened_file), "--json", "--show-changed", "5")
    backtested = json.loads(out)
    assert (backtested["evaluated"], backtested["changed"]) == (2, 1)
    assert backtested["examples"][0]["candidate"]["rule"] == "low-balance"


def test_reason_codes_and_the_policy_are_recorded_and_shown_by_list_and_show(
    pipeline: Pipeline,
    processor_with: Callable[[str | None], Invoke],
    deliver: Callable[..., tuple[list[str], str]],
    cli: Cli,
) -> None:
    # GIVEN the shipped policy (name "default", version "2") deciding a shortfall
    [session_id], _ = deliver(processor_with(None), Scenario.preset("shortfall"))

    # THEN the decision records its reason code and its policy's name, version and hash
    item = pipeline.item(session_id)
    assert (item["decisionRule"], item["decisionReason"]) == ("shortfall", "SHORTFALL")
    assert (item["policyName"], item["policyVersion"], item["policyHash"]) == (
        "default",
        "2",
        LIVE.identity.content_hash,
    )
    # and list shows the reason, show the reason and the policy label
    code, out, _ = cli("list")
    assert code == 0
    header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
    assert row[header.index("reason")] == "SHORTFALL"
    code, out, _ = cli("show", session_id)
    assert code == 0
    assert "    decision   reject by rule shortfall (SHORTFALL)" in out.splitlines()
    assert f"    policy     default 2 ({LIVE.identity.content_hash})" in out.splitlines()
