"""Where the capacity model reads and writes (stdlib only: ``capacity.charts`` runs in .venv-bench)."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.paths import REPO

RESULTS_FILE = Path(os.environ.get("CAPACITY_RESULTS", REPO / "capacity" / "results" / "latest.json"))
DOC = Path(os.environ.get("CAPACITY_DOC", REPO / "docs" / "performance.md"))
CHART = Path(os.environ.get("CAPACITY_CHART", REPO / "docs" / "performance-capacity.png"))
