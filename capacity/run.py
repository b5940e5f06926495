"""``make capacity``: recommend settings at 1, 10, 100 and 1,000 guarantees/s, check the model against
the local stack, and write capacity/results/latest.json.

    python -m capacity.run [--quick] [--no-local] [--seed N]

``--quick``: fewer guarantees per run and two batch sizes (a smoke run, not figures to publish);
``--no-local``: skip the local-stack check. Then ``capacity.charts`` (in .venv-bench) draws the chart
and ``capacity.report`` writes the tables into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks.common import machine, rounded
from benchmarks.paths import REPO
from capacity import local_check
from capacity.measured import BENCH_RESULTS, AwsAssumptions, Measured
from capacity.paths import RESULTS_FILE
from capacity.recommend import BATCH_SIZES, RATES, Recommendation, recommend

SEED = 1
QUICK_GUARANTEES = 300
QUICK_BATCH_SIZES = (10, 100)


def _log(message: str) -> None:
    print(f"[capacity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(recommendations: list[Recommendation]) -> str:
    """What ``make capacity`` prints: one line per rate."""
    header = (
        f"{'rate/s':>7} {'shards':>6} {'PF':>3} {'batch':>5} {'window':>7} {'pool':>4} {'threads':>7} "
        f"{'conc.':>5} {'p50':>7} {'p99':>7} {'burst p99':>9} {'$/M':>6} {'defaults p99':>12}"
    )
    lines = [header]
    for rec in recommendations:
        s, steady = rec.steady.settings, rec.steady
        defaults = f"{rec.defaults.p99_s:.2f} s" if rec.defaults.acceptable else "falls behind"
        lines.append(
            f"{rec.rate_per_s:>7g} {s.shards:>6} {s.parallelization_factor:>3} {s.batch_size:>5} "
            f"{s.batching_window_s:>6g}s {s.token_pool_size:>4} {s.thread_pool:>7} {s.concurrency:>5} "
            f"{steady.p50_s:>6.2f}s {steady.p99_s:>6.2f}s {rec.burst.p99_s:>8.2f}s "
            f"{steady.cost.usd_per_million:>6.2f} {defaults:>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capacity.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer guarantees, 2 batch sizes")
    parser.add_argument("--no-local", action="store_true", help="skip the check against the local stack")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    measured = Measured.load()
    assumptions = AwsAssumptions()
    _log(f"inputs: {BENCH_RESULTS.relative_to(REPO)} of {measured.bench_generated_at}")
    recommendations = []
    for rate in RATES:
        _log(f"{rate:g} guarantees/s: searching")
        recommendations.append(
            recommend(
                rate,
                measured,
                assumptions,
                seed=args.seed,
                guarantees=QUICK_GUARANTEES if args.quick else None,
                batch_sizes=QUICK_BATCH_SIZES if args.quick else BATCH_SIZES,
            )
        )
        rec = recommendations[-1]
        _log(f"  {rec.steady.settings.describe()} ({rec.runs} runs, {rec.elapsed_s:.0f} s)")
    local: dict[str, Any] = {"status": "skipped (--no-local)"}
    if not args.no_local:
        _log("checking the model against the local stack")
        local = {"status": "measured", **local_check.run(measured, log=_log)}
    results = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "seed": args.seed,
        "machine": machine(),
        "inputs": {
            "bench_results": str(BENCH_RESULTS.relative_to(REPO)),
            "bench_generated_at": measured.bench_generated_at,
            "measured": {k: v for k, v in asdict(measured).items() if k != "bench_results"},
            "assumptions": asdict(assumptions),
        },
        "recommendations": [rec.as_dict() for rec in recommendations],
        "local_check": local,
        "elapsed_s": time.perf_counter() - started,
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(rounded(results, 6), indent=1) + "\n")
    print(table(recommendations))
    _log(f"wrote {RESULTS_FILE} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
