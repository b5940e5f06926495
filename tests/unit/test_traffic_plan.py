"""The traffic generator's plan (geft_local.traffic.plan): a seeded day, the same for the same seed,
whose sessions each have the facts their profile promises."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from geft.policy import DEFAULT_POLICY_JSON, DecisionPolicy
from geft_local.traffic import PROFILES, THIN_BALANCE, plan

LIVE = DecisionPolicy.from_json(DEFAULT_POLICY_JSON)


def _facts(scenario: dict[str, object]) -> dict[str, object]:
    """The facts the processor would read from the sandbox's /details for this scenario."""
    amount = Decimal(str(scenario["amount"]))
    highest = Decimal(str(scenario.get("highest_debit_amount_to_guarantee", amount)))
    presets = {"high-risk": "High", "no-guarantee": "Low", "shortfall": "Low", "accept": "Low"}
    return {
        "amount": amount,
        "shortfall": amount - highest,
        "guaranteeOffered": scenario["preset"] != "no-guarantee",
        "overallRiskLevel": scenario.get("overall_risk_level", presets[str(scenario["preset"])]),
        "availableBalance": Decimal(str(scenario["available_balance"])),
    }


def test_the_same_seed_plays_the_same_day_and_another_seed_another() -> None:
    assert plan(50, seed=1) == plan(50, seed=1)
    assert plan(50, seed=1) != plan(50, seed=2)


def test_every_profile_is_played_and_decided_as_the_live_policy_would() -> None:
    # GIVEN a day of 400 sessions
    day = plan(400, seed=1)

    # THEN each profile appears, and the shipped policy decides each as its profile says
    assert set(Counter(entry.profile.name for entry in day)) == {profile.name for profile in PROFILES}
    expected = {
        "accept": "accept",
        "thin-balance": "accept",
        "high-risk": "reject",
        "shortfall": "reject",
        "no-guarantee": "reject",
        "unknown-risk": "review",
    }
    for entry in day:
        decision = LIVE.decide(_facts(entry.scenario))
        assert decision.verdict.value == expected[entry.profile.name], entry
        thin = Decimal(entry.scenario["available_balance"]) < THIN_BALANCE
        assert thin is entry.profile.thin_balance


def test_flinks_never_sends_expired_and_some_sessions_never_end() -> None:
    day = plan(400, seed=1)

    ends = Counter(entry.final[0] if entry.final else None for entry in day)
    assert set(ends) == {"Completed", "Failed", "Canceled", "Expired", None}
    assert not any(entry.final_by_webhook for entry in day if entry.final and entry.final[0] == "Expired")
    assert any(not entry.final_by_webhook for entry in day if entry.final and entry.final[0] == "Completed")
    assert all(0.2 * 20 <= entry.review_delay_s <= 20 for entry in day)
