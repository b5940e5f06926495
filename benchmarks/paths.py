"""Where the benchmarks read and write (stdlib only: ``benchmarks.charts`` runs in .venv-bench,
which has matplotlib but neither the product nor testkit)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_FILE = RESULTS_DIR / "latest.json"
