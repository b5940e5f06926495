"""Run a probe in a fresh interpreter, as a Lambda cold start would, and read the JSON it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_probe(probe: str, *, paths: list[Path], environment: dict[str, str] | None = None) -> Any:
    """``python -c probe`` with only ``paths`` importable; the last line it printed, read as JSON."""
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **(environment or {}), "PYTHONPATH": os.pathsep.join(str(path) for path in paths)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])
