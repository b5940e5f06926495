"""The policy lab: what a candidate policy would have decided, how the shadow policy compares with the
live one, and how reviews are answered. Plain functions over the recorded decisions, returning plain
data (the CLI renders it); no AWS, no Flinks call, no write.

**Today's decision** of a guarantee is what the live policy decided when the guarantee came in, on the
facts it recorded (``decisionInputs``):

* decided by a policy rule (``default``, ``missing-facts`` or a named rule): that verdict and rule;
* answered after a review (rule ``manual-review`` or ``review-timeout``): the policy's own decision was
  ``review`` by the rule that asked for it (``reviewRequestedByRule``), on the inputs the review request
  kept; what the person (or the timeout's fallback) answered is reported beside it as the *answer*;
* recorded from Flinks after a crash (``recovered-from-flinks``), held for a person because a recovery
  was uncertain, or not decided yet: the policy's inputs were never recorded, so the guarantee is
  counted as **not evaluated** and never guessed.

A candidate re-decides the recorded inputs. Inputs the live policy had no need for may be absent (the
processor skips ``/details`` when the webhook carries every fact the live policy reads), so a candidate
that reads other facts can decide ``missing-facts`` where, deployed, it would have read them: the
backtest counts those facts (``candidateMissingFacts``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from geft.items import GuaranteeView
from geft.models import Actor, GuaranteeStatus, PolicyIdentity, Verdict
from geft.policy import DEFAULT_RULE, MISSING_FACTS_RULE, DecisionPolicy

from geft_ops.commands import iso, policy_label

# The processor's rule names for decisions no policy rule made (decision_processor/processor.py; a unit
# test keeps them equal: ops does not import a function's package).
MANUAL_REVIEW_RULE = "manual-review"
REVIEW_TIMEOUT_RULE = "review-timeout"
RECOVERED_RULE = "recovered-from-flinks"
_ANSWERED_AFTER_REVIEW = frozenset({MANUAL_REVIEW_RULE, REVIEW_TIMEOUT_RULE})
UNKNOWN_STATUS = "unknown"
FINAL_STATUSES = ("Completed", "Failed", "Canceled", "Expired")


class NotEvaluated(StrEnum):
    """Why a guarantee's decision cannot be re-evaluated: no policy inputs were recorded for it."""

    UNDECIDED = "not decided yet"
    HELD = "held for a person (uncertain recovery): no policy decision"
    RECOVERED = "decision recorded from Flinks after a crash: no policy inputs"
    NO_INPUTS = "decision recorded without its inputs"


class AnsweredBy(StrEnum):
    POLICY = "policy"
    PERSON = "person"
    REVIEW_TIMEOUT = "review-timeout"


@dataclass(frozen=True)
class PolicyCall:
    """One policy's decision: the verdict, the rule that made it, its reason code."""

    verdict: Verdict
    rule: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.verdict.value, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True)
class RecordedDecision:
    today: PolicyCall
    inputs: Mapping[str, object]
    policy: PolicyIdentity | None
    answer: Verdict | None  # what was (or is being) sent to Flinks; None while waiting for a person
    answered_by: AnsweredBy | None


def recorded_decision(view: GuaranteeView) -> RecordedDecision | NotEvaluated:
    """Today's decision of a guarantee and the inputs it was made on, or why there is none."""
    decision = view.decision
    review = view.review
    if decision is None:
        return NotEvaluated.HELD if review is not None and review.hold_reason else NotEvaluated.UNDECIDED
    if decision.rule == RECOVERED_RULE:
        return NotEvaluated.RECOVERED
    today = _live_call(view)
    if today is None:
        return NotEvaluated.HELD  # a person answered a hold: no policy ever decided it
    if not decision.inputs and decision.policy is None:
        # A recorded policy decision with no inputs saw no facts; one without even its policy's hash was
        # written before decisions carried their inputs: nothing to replay.
        return NotEvaluated.NO_INPUTS
    answer, answered_by = _answer(view, today)
    return RecordedDecision(today, decision.inputs, decision.policy, answer, answered_by)


def _answer(view: GuaranteeView, today: PolicyCall) -> tuple[Verdict | None, AnsweredBy | None]:
    if today.verdict is not Verdict.REVIEW:
        return today.verdict, AnsweredBy.POLICY
    review = view.review
    if review is None or review.decision is None:
        return None, None
    return review.decision, AnsweredBy.PERSON if _is_person(review.reviewer) else AnsweredBy.REVIEW_TIMEOUT


def _is_person(reviewer: str | None) -> bool:
    return reviewer is not None and Actor(reviewer).is_person


# -- backtest -------------------------------------------------------------------------------------------


def backtest(
    views: Iterable[GuaranteeView],
    final_statuses: Mapping[str, str],
    candidate: DecisionPolicy,
    *,
    show_changed: int = 0,
) -> dict[str, Any]:
    """Re-decide every guarantee's recorded inputs with ``candidate``; compare with today's decisions.

    ``final_statuses`` maps a session id to its final status (Completed, Failed, Canceled, Expired).
    """
    considered = 0
    not_evaluated: Counter[str] = Counter()
    today_rules: Counter[str] = Counter()
    candidate_rules: Counter[str] = Counter()
    today_policies: Counter[str] = Counter()
    transitions: dict[str, Counter[str]] = {}
    unchanged: dict[str, Counter[str]] = {}  # today's verdict -> final statuses: the baseline
    missing: Counter[str] = Counter()
    changed: list[tuple[GuaranteeView, RecordedDecision, PolicyCall]] = []
    same = other_rule = 0
    for view in views:
        considered += 1
        recorded = recorded_decision(view)
        if isinstance(recorded, NotEvaluated):
            not_evaluated[recorded.value] += 1
            continue
        decided = candidate.decide(recorded.inputs)
        call = PolicyCall(decided.verdict, decided.rule, decided.reason)
        today_rules[recorded.today.rule] += 1
        candidate_rules[call.rule] += 1
        today_policies[policy_label(recorded.policy) or "unrecorded"] += 1
        if decided.rule == MISSING_FACTS_RULE:
            missing.update(decided.missing_facts)
        final = final_statuses.get(view.ref.session_id, UNKNOWN_STATUS)
        if call.verdict is recorded.today.verdict:
            same += 1
            other_rule += call.rule != recorded.today.rule
            unchanged.setdefault(recorded.today.verdict.value, Counter())[final] += 1
            continue
        transitions.setdefault(f"{recorded.today.verdict}->{call.verdict}", Counter())[final] += 1
        changed.append((view, recorded, call))
    evaluated = considered - sum(not_evaluated.values())
    changed.sort(key=lambda entry: entry[0].received_at_ms, reverse=True)
    return {
        "candidate": candidate.identity.label(),
        "todayPolicies": dict(today_policies.most_common()),
        "considered": considered,
        "notEvaluated": {"total": considered - evaluated, "byReason": dict(not_evaluated.most_common())},
        "evaluated": evaluated,
        "unchanged": same,
        "sameDecisionOtherRule": other_rule,
        "changed": len(changed),
        "transitions": [
            {"change": key, "count": sum(statuses.values()), "finalStatus": _statuses(statuses)}
            for key, statuses in sorted(transitions.items(), key=lambda entry: -sum(entry[1].values()))
        ],
        "unchangedFinalStatus": [
            {
                "decision": verdict.value,
                "count": sum(unchanged[verdict].values()),
                "finalStatus": _statuses(unchanged[verdict]),
            }
            for verdict in Verdict
            if verdict.value in unchanged
        ],
        "rules": _rule_rows(candidate, today_rules, candidate_rules),
        "candidateMissingFacts": dict(missing.most_common()),
        "examples": [
            {
                "sessionId": view.ref.session_id,
                "guaranteeKey": view.ref.guarantee_key,
                "receivedAt": iso(view.received_at_ms),
                "today": recorded.today.as_dict(),
                "answer": recorded.answer.value if recorded.answer else None,
                "answeredBy": recorded.answered_by.value if recorded.answered_by else None,
                "candidate": call.as_dict(),
                "finalStatus": final_statuses.get(view.ref.session_id),
            }
            for view, recorded, call in changed[:show_changed]
        ],
    }


def _rule_rows(
    candidate: DecisionPolicy, today: Counter[str], tomorrow: Counter[str]
) -> list[dict[str, Any]]:
    """The candidate's rules in its order, then its own outcomes, then rules only today's policy has."""
    order = [rule.name for rule in candidate.rules] + [MISSING_FACTS_RULE, DEFAULT_RULE]
    order += sorted(set(today) - set(order))
    return [
        {"rule": rule, "today": today[rule], "candidate": tomorrow[rule]}
        for rule in order
        if today[rule] or tomorrow[rule]
    ]


def _statuses(statuses: Counter[str]) -> dict[str, int]:
    order = [*FINAL_STATUSES, UNKNOWN_STATUS]
    known = {status: statuses[status] for status in order if statuses[status]}
    return known | {status: count for status, count in statuses.items() if status not in order}


# -- shadow report ----------------------------------------------------------------------------------------


def shadow_report(
    views: Iterable[GuaranteeView], final_statuses: Mapping[str, str], *, limit: int = 20
) -> dict[str, Any]:
    """Live vs shadow over the guarantees that carry a shadow decision. The live side is the live
    policy's decision on the same facts (``review`` and its rule for a guarantee a person answered since),
    which is what the processor compared when it counted ``ShadowDisagreement``."""
    considered = with_shadow = agree = other_rule = 0
    by_verdict: Counter[tuple[str, str]] = Counter()
    by_rule: Counter[tuple[str, str, str, str]] = Counter()
    shadow_policies: Counter[str] = Counter()
    disagreements: list[tuple[GuaranteeView, PolicyCall, PolicyCall]] = []
    for view in views:
        considered += 1
        shadow = view.shadow
        live = _live_call(view)
        if shadow is None or live is None:
            continue
        with_shadow += 1
        shadow_call = PolicyCall(shadow.verdict, shadow.rule or DEFAULT_RULE, shadow.reason)
        shadow_policies[policy_label(shadow.policy) or "unrecorded"] += 1
        if shadow_call.verdict is live.verdict:
            agree += 1
            other_rule += shadow_call.rule != live.rule
            continue
        by_verdict[(live.verdict.value, shadow_call.verdict.value)] += 1
        by_rule[(live.rule, shadow_call.rule, live.verdict.value, shadow_call.verdict.value)] += 1
        disagreements.append((view, live, shadow_call))
    disagreements.sort(key=lambda entry: entry[0].received_at_ms, reverse=True)
    return {
        "considered": considered,
        "withShadow": with_shadow,
        "withoutShadow": considered - with_shadow,
        "shadowPolicies": dict(shadow_policies.most_common()),
        "agree": agree,
        "sameDecisionOtherRule": other_rule,
        "disagree": with_shadow - agree,
        "agreementRate": round(agree / with_shadow, 4) if with_shadow else None,
        "byDecision": [
            {"live": live, "shadow": shadow, "count": count}
            for (live, shadow), count in by_verdict.most_common()
        ],
        "byRule": [
            {"liveRule": live_rule, "shadowRule": shadow_rule, "live": live, "shadow": shadow, "count": count}
            for (live_rule, shadow_rule, live, shadow), count in by_rule.most_common()
        ],
        "disagreements": [
            {
                "sessionId": view.ref.session_id,
                "guaranteeKey": view.ref.guarantee_key,
                "receivedAt": iso(view.received_at_ms),
                "live": live.as_dict(),
                "shadow": shadow_call.as_dict(),
                "finalStatus": final_statuses.get(view.ref.session_id),
            }
            for view, live, shadow_call in disagreements[:limit]
        ],
    }


def _live_call(view: GuaranteeView) -> PolicyCall | None:
    """The live policy's decision (never a person's answer, never Flinks' record)."""
    decision = view.decision
    if decision is None or decision.rule == RECOVERED_RULE:
        return None
    if decision.rule in _ANSWERED_AFTER_REVIEW:
        review = view.review
        if review is None or review.requested_by_rule is None:
            return None
        return PolicyCall(Verdict.REVIEW, review.requested_by_rule, review.requested_reason)
    return PolicyCall(decision.verdict, decision.rule or DEFAULT_RULE, decision.reason)


# -- review analytics -------------------------------------------------------------------------------------


def review_stats(
    views: Iterable[GuaranteeView], *, now_ms: int, since_ms: int | None, fallback: Verdict
) -> dict[str, Any]:
    """How reviews are answered. ``views``: the guarantees received since ``since_ms`` and those in REVIEW
    now. A review's rule asks for a person and suggests no verdict, so a person **overturns** it when they
    answer the opposite of ``fallback``, the verdict the review timeout would have given it."""
    waiting: list[GuaranteeView] = []
    answered: list[tuple[GuaranteeView, bool]] = []  # (guarantee, answered by a person)
    holds_answered = 0
    for view in views:
        review = view.review
        if view.status is GuaranteeStatus.REVIEW:
            waiting.append(view)
        if review is None or review.decision is None:
            continue
        if since_ms is not None and view.received_at_ms < since_ms:
            continue
        if review.requested_by_rule is None:  # a hold: no fallback applies, a person must answer
            holds_answered += 1
            continue
        answered.append((view, _is_person(review.reviewer)))
    by_people = [view for view, person in answered if person]
    timeouts = [view for view, person in answered if not person]
    return {
        "fallback": fallback.value,
        "queue": _queue(waiting, now_ms),
        "answered": len(answered),
        "answeredByPeople": len(by_people),
        "answeredByTimeout": len(timeouts),
        "timeoutShare": round(len(timeouts) / len(answered), 4) if answered else None,
        "holdsAnswered": holds_answered,
        "timeToDecisionMs": {
            "all": _percentiles([_wait_ms(view) for view, _ in answered]),
            "people": _percentiles([_wait_ms(view) for view in by_people]),
        },
        "overturned": sum(_overturned(view, fallback) for view in by_people),
        "overturnRate": round(sum(_overturned(view, fallback) for view in by_people) / len(by_people), 4)
        if by_people
        else None,
        "timeoutVerdicts": dict(Counter(_verdict(view) for view in timeouts).most_common()),
        "reviewers": _reviewers(by_people, fallback),
        "byRule": _by_rule(answered),
    }


def _queue(waiting: Sequence[GuaranteeView], now_ms: int) -> dict[str, Any]:
    reviews = [view for view in waiting if not (view.review and view.review.hold_reason)]
    holds = [view for view in waiting if view.review and view.review.hold_reason]
    review_since = [
        view.review.requested_at_ms for view in reviews if view.review and view.review.requested_at_ms
    ]
    hold_since = [view.follow_up.due_ms if view.follow_up else view.updated_at_ms for view in holds]
    return {
        "total": len(waiting),
        "policyReviews": len(reviews),
        "holds": len(holds),
        "oldestReviewAgeMs": now_ms - min(review_since) if review_since else None,
        "oldestHoldAgeMs": now_ms - min(hold_since) if hold_since else None,
    }


def _wait_ms(view: GuaranteeView) -> int | None:
    review = view.review
    if review is None or review.requested_at_ms is None or review.reviewed_at_ms is None:
        return None
    return max(0, review.reviewed_at_ms - review.requested_at_ms)


def _verdict(view: GuaranteeView) -> str:
    return view.review.decision.value if view.review and view.review.decision else UNKNOWN_STATUS


def _overturned(view: GuaranteeView, fallback: Verdict) -> bool:
    return bool(view.review and view.review.decision and view.review.decision is not fallback)


def _reviewers(by_people: Sequence[GuaranteeView], fallback: Verdict) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[GuaranteeView]] = {}
    for view in by_people:
        reviewer, note = (view.review.reviewer, view.review.reviewer_note) if view.review else (None, None)
        groups.setdefault((reviewer or UNKNOWN_STATUS, note), []).append(view)
    rows = [
        {
            "reviewer": reviewer,
            "note": note,
            "answered": len(group),
            "accepted": sum(_verdict(view) == Verdict.ACCEPT for view in group),
            "rejected": sum(_verdict(view) == Verdict.REJECT for view in group),
            "overturned": sum(_overturned(view, fallback) for view in group),
            "medianTimeToDecisionMs": _percentiles([_wait_ms(view) for view in group])["p50"],
        }
        for (reviewer, note), group in groups.items()
    ]
    return sorted(rows, key=lambda row: (-row["answered"], row["reviewer"], row["note"] or ""))


def _by_rule(answered: Sequence[tuple[GuaranteeView, bool]]) -> list[dict[str, Any]]:
    counts: dict[str, Counter[str]] = {}
    for view, person in answered:
        rule = (view.review.requested_by_rule if view.review else None) or UNKNOWN_STATUS
        counts.setdefault(rule, Counter())[f"{_verdict(view)}{'' if person else ' (timeout)'}"] += 1
    return [
        {"rule": rule, "answered": sum(counter.values()), "answers": dict(counter.most_common())}
        for rule, counter in sorted(counts.items(), key=lambda entry: -sum(entry[1].values()))
    ]


def percentile(values: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile (the smallest value with at least ``share`` of the values at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _percentiles(values: Iterable[int | None]) -> dict[str, int | None]:
    known = [value for value in values if value is not None]
    return {"count": len(known), "p50": percentile(known, 0.5), "p90": percentile(known, 0.9)}
