"""``make day-in-the-life --check``'s comparison, without a run: what changes from run to run (times,
durations, sequence numbers, the console threads' interleaving) passes; a renamed column or state, a
missing history line or a reordered story fails. The committed blocks serve as "a run"."""

from __future__ import annotations

import itertools
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from geft.models import Verdict
from geft.policy import DecisionPolicy
from geft_local.day_in_the_life import (
    BLOCKS,
    OPERATIONS_DOC,
    README_DOC,
    SESSIONS,
    DayError,
    StackProcess,
    blocks_diff,
    blocks_of,
    day_policy,
    normalize,
    replace_blocks,
)

OPERATIONS = OPERATIONS_DOC.read_text(encoding="utf-8")
README = README_DOC.read_text(encoding="utf-8")
COMMITTED = {
    name: match["body"]
    for name, match in blocks_of(OPERATIONS, OPERATIONS_DOC, BLOCKS[OPERATIONS_DOC]).items()
}
MORNING = "morning-console"  # the excerpt whose threads interleave, and where the first session's story is


def section_diff(blocks: dict[str, str]) -> str:
    return blocks_diff(OPERATIONS, OPERATIONS_DOC, blocks)


def another_run(blocks: dict[str, str]) -> dict[str, str]:
    """Every block as a later run would print it; the morning's console interleaved otherwise too."""
    later = {name: shifted_run(body) for name, body in blocks.items()}
    return later | {MORNING: swap_first_neighbours(later[MORNING], "gateway", "flow")}


def shifted_run(body: str) -> str:
    """``body`` as a later run would print it: other times, durations and sequence numbers."""

    def shifted(match: re.Match[str]) -> str:
        return "".join(str((int(ch) + 7) % 10) if ch.isdigit() else ch for ch in match[0])

    body = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)", lambda m: "2027-01-02T03:04:05.678" + m[1], body)
    body = re.sub(r"^\d\d:\d\d:\d\d\.\d{3}", shifted, body, flags=re.MULTILINE)
    body = re.sub(r"\d+ ms\b", shifted, body)
    body = re.sub(r"\d{15,}", shifted, body)
    return re.sub(r"(?<=  )\d+$", "98765", body, flags=re.MULTILINE)


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
    assert section_diff(later) == ""


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
    name = next(name for name, body in later.items() if old in body)
    if new is None:
        later[name] = "\n".join(line for line in later[name].split("\n") if old not in line)
    else:
        later[name] = later[name].replace(old, new, 1)

    # WHEN the docs are checked against it
    diff = section_diff(later)

    # THEN the check fails with a diff naming what changed
    assert diff.startswith("--- docs/operations.md (committed)\n+++ docs/operations.md (this run)\n"), change
    removed = [line for line in diff.splitlines()[2:] if line.startswith("-")]
    assert any(normalize(old) in line for line in removed), diff


def test_one_session_telling_its_story_in_another_order_fails() -> None:
    lines = COMMITTED[MORNING].split("\n")
    story = [i for i, line in enumerate(lines) if " flow " in line[:22] and SESSIONS[0] in line]
    first, second = story[0], story[1]
    lines[first], lines[second] = lines[second], lines[first]

    assert section_diff(COMMITTED | {MORNING: "\n".join(lines)}) != ""


def test_a_new_block_replaces_only_what_is_between_the_markers() -> None:
    block = blocks_of(README, README_DOC, ["readme-day"])["readme-day"]

    rewritten = replace_blocks(README, README_DOC, {"readme-day": "new body\n"})

    assert rewritten == README[: block.start("body")] + "new body\n" + README[block.end("body") :]
    assert blocks_of(rewritten, README_DOC, ["readme-day"])["readme-day"]["body"] == "new body\n"


@pytest.mark.parametrize(
    "document",
    [
        "no markers at all\n",
        2 * "<!-- day-in-the-life:begin readme-day -->\nx\n<!-- day-in-the-life:end -->\n",
        "<!-- day-in-the-life:begin another -->\nx\n<!-- day-in-the-life:end -->\n",
    ],
)
def test_a_document_without_exactly_its_blocks_is_refused(document: str) -> None:
    with pytest.raises(DayError, match="expected one day-in-the-life block each of"):
        blocks_of(document, README_DOC, ["readme-day"])


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


def test_a_line_printed_just_before_the_stack_exits_is_still_found(tmp_path: Path) -> None:
    # GIVEN a process that prints many lines and exits at once: some are still in the pipe when it ends
    stack = StackProcess(tmp_path, {})
    stack.spawn([sys.executable, "-c", "import sys; sys.stdout.write('x\\n' * 30000 + 'END\\n')"])
    assert stack._process is not None
    stack._process.wait()

    # WHEN the day waits for the last line, THEN it is read, not given up on because the process is gone
    assert stack.wait_for("END", timeout=10.0) == "END"
