"""``make bench``: run every benchmark on this machine in one go and write benchmarks/results/latest.json.

    python -m benchmarks.run [--quick]

Each figure is compared with a baseline measured in the same run. Then ``benchmarks.charts`` (in the
matplotlib virtualenv) draws the PNGs and ``benchmarks.report`` writes docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import costs, receiver_bench
from benchmarks.common import machine, rounded, template_memory_mb
from benchmarks.paths import REPO, RESULTS_DIR, RESULTS_FILE
from testkit.aws import use_fake_aws

COLD_ROUNDS = 15
WARM_REQUESTS = 5000
PROCESSOR_MODES = ("memory", "separate-process", "in-process")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _child(module: str, *arguments: str) -> dict[str, Any]:
    """Run ``python -m module OUT arguments`` with stdout (the functions' logs) sent to /dev/null."""
    with tempfile.TemporaryDirectory(prefix="geft-bench-") as directory:
        out = Path(directory) / "result.json"
        subprocess.run(
            [sys.executable, "-m", module, str(out), *arguments],
            cwd=REPO,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=900,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main() -> None:
    quick = "--quick" in sys.argv
    use_fake_aws()  # no profile, endpoint or credentials of the developer's reach a benchmark
    started = time.perf_counter()
    results: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "machine": machine(),
        "memory_mb": {
            "receiver": template_memory_mb("WebhookReceiverFunction"),
            "processor": template_memory_mb("DecisionProcessorFunction"),
        },
    }
    rounds, requests = (5, 1000) if quick else (COLD_ROUNDS, WARM_REQUESTS)

    _log(f"1/5 receiver cold start: {rounds} fresh processes each, alternating with the baseline")
    results["cold_start"] = receiver_bench.cold_start(rounds)
    _log(f"2/5 receiver warm path: {requests} requests each, alternating, in one process")
    results["warm_path"] = receiver_bench.warm_path(requests)

    extra = ["--quick"] if quick else []
    results["processor"] = {}
    for mode in PROCESSOR_MODES:
        _log(f"3/5 processor batch, fakes {mode}")
        results["processor"][mode] = _child("benchmarks.processor_bench", f"--fakes={mode}", *extra)

    _log("4/5 end to end through the local stack")
    results["end_to_end"] = _child("benchmarks.e2e_bench", *extra)

    _log("5/5 calls per guarantee (moto in-process, counted)")
    results["calls"] = _child("benchmarks.calls_bench")

    results["cost"] = costs.per_million(results)
    results["load_average_after"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - started
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(rounded(results), indent=1) + "\n")
    _log(f"wrote {RESULTS_FILE.relative_to(REPO)} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
