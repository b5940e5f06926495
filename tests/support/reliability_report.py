"""Figures for docs/reliability.md: rows the reliability tests append when REL_REPORT_DIR is set.

``make reliability`` sets it; ``python -m tests.support.reliability_report DIR`` prints the rows as
the Markdown table of docs/reliability.md. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_FILE = "rows.jsonl"


def record(area: str, case: str, *, tried: int, outcome: str, lost: int = 0, duplicated: int = 0) -> None:
    directory = os.environ.get("REL_REPORT_DIR")
    if not directory:
        return
    row = {
        "area": area,
        "case": case,
        "tried": tried,
        "outcome": outcome,
        "lost": lost,
        "duplicated": duplicated,
    }
    with _lock:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with (Path(directory) / _FILE).open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, sort_keys=True) + "\n")


def render(directory: Path) -> str:
    rows: list[dict[str, Any]] = [
        json.loads(line) for line in (directory / _FILE).read_text(encoding="utf-8").splitlines() if line
    ]
    lines = [
        "| area | input class or fault | cases tried | outcome | lost | duplicated |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['area']} | {row['case']} | {row['tried']:,} | {row['outcome']} "
            f"| {row['lost']} | {row['duplicated']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else ".reliability")))
