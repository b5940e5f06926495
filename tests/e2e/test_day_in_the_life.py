"""docs/operations.md's and README.md's "A day in the life" are a real run: ``make day-in-the-life CHECK=1``
plays the day again on make local's entry point, runs every command the sections show in the form
shown, and passes only when the committed sections tell what the new run printed (what differs from run
to run, such as times, aside: tests/unit/test_day_in_the_life_docs.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", REPO / "docs" / "operations.md")
# The day takes ~45 s here; this bounds a hang (the stack's start and each step have their own bounds).
TIMEOUT_S = 170


@pytest.mark.timeout(TIMEOUT_S + 10)
def test_the_committed_day_in_the_life_is_what_a_new_run_prints() -> None:
    # GIVEN the committed docs
    before = [path.read_bytes() for path in DOCS]

    # WHEN the documented check runs, as documented
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "day-in-the-life", "CHECK=1"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )

    # THEN the committed sections are the new run's (else: the diff, or the step that failed)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "tell the day as it ran" in result.stdout
    # and checking wrote nothing
    assert [path.read_bytes() for path in DOCS] == before
