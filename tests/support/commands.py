"""Run a command as the docs show it, in a subprocess from the repository root.

The environment is the test process's without what would change the command's meaning: AWS variables
(the command finds its own stack), make's own variables (MAKEFLAGS, MAKELEVEL: a ``make test`` around
the tests), and the make variables the documented commands take (STACK, LOCAL, SESSION, ...).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_DROPPED_PREFIXES = ("AWS_", "FLINKS_", "HTTP_")
_DROPPED = frozenset(
    {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "STACK", "LOCAL", "REGION", "PROFILE", "SESSION", "POLICY"}
)


def run_documented(
    command: Sequence[str], *, environment: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name not in _DROPPED
    }
    return subprocess.run(
        list(command),
        cwd=REPO,
        env={**inherited, **(environment or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def documented_line(document: str, starting_with: str) -> str:
    """The one line of a fenced shell block in ``document`` (a path from the repository root) that
    starts with ``starting_with``: the test runs what the docs show, not a copy of it."""
    lines, inside = [], False
    for line in (REPO / document).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside and line.strip() in ("```bash", "```sh", "```console")
            continue
        if inside and line.startswith(starting_with):
            lines.append(line.split("  #", 1)[0].rstrip())
    assert len(lines) == 1, (
        f"{document}: expected one shell line starting with {starting_with!r}, found {lines}"
    )
    return lines[0]
