"""Cost per million guarantees of one simulated run, priced with ``benchmarks.costs``' list prices.

``benchmarks.costs.per_million`` prices what ``make bench`` counted (API requests, writes, reads,
logs, the status webhook, the reconciler) for full batches of 10. What depends on the traffic is
re-priced from the simulation: processor invocations per guarantee (the batch sizes the stream
actually formed), their billed duration (which includes the waits for Flinks), and the platform log
lines each invocation adds. Cold starts are left out: in steady traffic a container serves for hours.
Flinks' own price per call is not public; authorize calls per guarantee are reported beside the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import costs
from capacity.measured import Measured
from capacity.model import SimulationResult

_PROCESSOR_ROWS = ("Processor: Lambda request", "Processor: Lambda duration")
_LOGS_ROW = "CloudWatch Logs"
_BENCH_BATCH = 10  # costs.per_million prices full batches of the template's BatchSize


@dataclass(frozen=True)
class Cost:
    usd_per_million: float
    processor_usd_per_million: float
    invocations_per_guarantee: float
    processor_gb_s_per_guarantee: float
    authorize_per_guarantee: float


def per_million(result: SimulationResult, measured: Measured) -> Cost:
    bench = costs.per_million(measured.bench_results)
    rows = {row["item"]: row["usd_per_million"] for row in bench["rows"]}
    missing = [name for name in (*_PROCESSOR_ROWS, _LOGS_ROW) if name not in rows]
    if missing:
        raise ValueError(f"benchmarks.costs.per_million no longer prices {missing}")
    guarantees = max(1, result.guarantees)
    prices = costs.PRICES
    invocations = len(result.batch_sizes) / guarantees
    gb_s = measured.processor_memory_mb / 1024 * sum(result.invoke_durations_s) / guarantees
    processor = (
        invocations * prices["lambda_requests_per_million"] + gb_s * prices["lambda_arm64_gb_second"] * 1e6
    )
    platform_logs = (
        costs.LAMBDA_PLATFORM_LOG_BYTES
        * (invocations - 1 / _BENCH_BATCH)
        * 1e6
        / 1e9
        * prices["logs_ingestion_per_gb"]
    )
    total = bench["total_usd_per_million"] - sum(rows[name] for name in _PROCESSOR_ROWS)
    return Cost(
        usd_per_million=total + processor + platform_logs,
        processor_usd_per_million=processor,
        invocations_per_guarantee=invocations,
        processor_gb_s_per_guarantee=gb_s,
        authorize_per_guarantee=result.authorize_calls / guarantees,
    )
