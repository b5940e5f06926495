"""``make day-in-the-life --check``'s comparison, without a run: what changes from run to run (times,
durations, sequence numbers, the console threads' interleaving) passes; a renamed column or state, a
missing history line or a reordered story fails. The committed sections serve as "a run"."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest
from geft.models import Verdict
from geft.policy import DecisionPolicy
from geft_local.day_in_the_life import (
    OPERATIONS_DOC,
    README_DOC,
    SESSIONS,
    DayError,
    day_policy,
    normalize,
    replace_section,
    section_diff,
    section_of,
)

OPERATIONS = OPERATIONS_DOC.read_text(encoding="utf-8")
README = README_DOC.read_text(encoding="utf-8")
COMMITTED = section_of(OPERATIONS, OPERATIONS_DOC)["body"]


def another_run(body: str) -> str:
    """``body`` as a later run would print it: other times, durations and sequence numbers, and the
    console's threads interleaved the other way round where two neighbours come from different ones."""

    def shifted(match: re.Match[str]) -> str:
        return "".join(str((int(ch) + 7) % 10) if ch.isdigit() else ch for ch in match[0])

    body = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)", lambda m: "2027-01-02T03:04:05.678" + m[1], body)
    body = re.sub(r"^\d\d:\d\d:\d\d\.\d{3}", shifted, body, flags=re.MULTILINE)
    body = re.sub(r"\d+ ms\b", shifted, body)
    body = re.sub(r"\d{15,}", shifted, body)
    body = re.sub(r"(?<=  )\d+$", "98765", body, flags=re.MULTILINE)
    return swap_first_neighbours(body, "gateway", "flow")


def swap_first_neighbours(body: str, first: str, second: str) -> str:
    lines = body.split("\n")
    for index, (line, following) in enumerate(itertools.pairwise(lines)):
        if f" {first} " in line[:22] and f" {second} " in following[:22]:
            lines[index], lines[index + 1] = following, line
            return "\n".join(lines)
    raise AssertionError(f"no {first} line followed by a {second} line")


def test_what_changes_from_run_to_run_passes() -> None:
    later = another_run(COMMITTED)

    assert later != COMMITTED
    assert section_diff(OPERATIONS, OPERATIONS_DOC, later) == ""


@pytest.mark.parametrize(
    ("change", "old", "new"),
    [
        ("a renamed column", "webhookToConfirmMs", "confirmMs"),
        ("a renamed state", "RECEIVED -> DECIDING", "RECEIVED -> CLAIMED"),
        ("a missing history line", "review-requested  DECIDING -> REVIEW", None),
        ("a new word in the review notice", "Why:      rule", "Why:      the rule"),
        ("another reconciliation count", "'reconciled': 1", "'reconciled': 2"),
        ("another session", SESSIONS[0], "00000000-0000-4000-8000-000000000000"),
    ],
)
def test_a_changed_story_fails(change: str, old: str, new: str | None) -> None:
    # GIVEN a later run that differs from the committed docs in one meaningful way
    later = another_run(COMMITTED)
    assert old in later, change
    if new is None:
        later = "\n".join(line for line in later.split("\n") if old not in line)
    else:
        later = later.replace(old, new, 1)

    # WHEN the docs are checked against it
    diff = section_diff(OPERATIONS, OPERATIONS_DOC, later)

    # THEN the check fails with a diff naming what changed
    assert diff.startswith("--- docs/operations.md (committed)\n+++ docs/operations.md (this run)\n"), change
    removed = [line for line in diff.splitlines()[2:] if line.startswith("-")]
    assert any(normalize(old) in line for line in removed), diff


def test_one_session_telling_its_story_in_another_order_fails() -> None:
    lines = COMMITTED.split("\n")
    story = [i for i, line in enumerate(lines) if " flow " in line[:22] and SESSIONS[0] in line]
    first, second = story[0], story[1]
    lines[first], lines[second] = lines[second], lines[first]

    assert section_diff(OPERATIONS, OPERATIONS_DOC, "\n".join(lines)) != ""


def test_a_new_section_replaces_only_what_is_between_the_markers() -> None:
    section = section_of(README, README_DOC)

    rewritten = replace_section(README, README_DOC, "new body\n")

    assert rewritten == README[: section.start("body")] + "new body\n" + README[section.end("body") :]
    assert section_of(rewritten, README_DOC)["body"] == "new body\n"


@pytest.mark.parametrize(
    "document",
    ["no markers at all\n", 2 * "<!-- day-in-the-life:begin -->\nx\n<!-- day-in-the-life:end -->\n"],
)
def test_a_document_without_exactly_one_section_is_refused(document: str) -> None:
    with pytest.raises(DayError, match="expected one day-in-the-life:begin/end pair"):
        section_of(document, README_DOC)


def test_the_day_policy_is_the_template_default_plus_large_amount_review() -> None:
    policy = DecisionPolicy.from_json(day_policy())
    facts = {
        "amount": Decimal("2500.00"),
        "guaranteeOffered": True,
        "shortfall": Decimal(0),
        "overallRiskLevel": "Low",
    }

    large = policy.decide(facts)
    usual = policy.decide(facts | {"amount": Decimal("250.00")})

    assert (large.verdict, large.rule, large.reason) == (Verdict.REVIEW, "large-amount", "LARGE_AMOUNT")
    assert (usual.verdict, usual.rule) == (Verdict.ACCEPT, "default")
    assert (
        policy.decide(facts | {"overallRiskLevel": "High"}).rule == "high-risk"
    )  # the template's rules first
    assert policy.identity.label().startswith("default+large-amount 1 (sha256:")
