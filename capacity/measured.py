"""What ``make bench`` measured, as the model's inputs, and what it cannot measure, as named assumptions.

Read from benchmarks/results/latest.json (the fields, all from one ``make bench`` run):

* ``memory_mb.receiver``, ``memory_mb.processor``: each function's CPU share (memory / 1,769 MB)
  and its GB-seconds;
* ``warm_path.summary.receiver.p50``: the receiver's CPU per request;
* ``cold_start.summary.receiver.spawn_to_first_response_ms.p50``: the receiver's init, and the base
  of the processor's;
* ``processor.memory.latency_0`` (the row at pool 16), ``cpu_ms / sessions``: the processor's CPU
  per session;
* ``processor.memory.warm_batch_10``, ``cpu_ms`` less its sessions' CPU: the CPU per invocation;
* ``processor.memory.cold_batch_10`` less ``warm_batch_10``, ``cpu_ms`` and ``batch_ms``: the
  processor's extra first-batch cost (clients, secret, connections), its CPU and the rest (waits);
* ``calls.warm_container.flinks_per_guarantee``: Flinks calls per session (authorize, details,
  confirm);
* ``calls.warm_container.{receiver,processor}.per_guarantee.dynamodb_writes``: writes per request
  and per session;
* everything ``benchmarks.costs.per_million`` reads: the price of what is not simulated
  (``capacity.cost``).

CPU was measured on this machine's cores; Lambda gives a function CPU in proportion to its memory
(one vCPU at 1,769 MB), so CPU seconds are divided by that share (a Graviton vCPU taken as one of
these cores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import costs
from capacity.samplers import LogNormal

BENCH_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "latest.json"
LAMBDA_MB_PER_VCPU = 1769


class MeasurementsError(ValueError):
    """benchmarks/results/latest.json is missing, or lacks a figure the model needs."""


@dataclass(frozen=True)
class Measured:
    """Per-guarantee figures from one ``make bench`` run (times in seconds, on this machine's CPU)."""

    receiver_memory_mb: int
    processor_memory_mb: int
    receiver_cpu_s: float
    receiver_init_s: float
    processor_cpu_per_session_s: float
    processor_cpu_per_invoke_s: float
    processor_first_batch_extra_cpu_s: float
    processor_first_batch_extra_wait_s: float
    authorize_per_session: float
    details_per_session: int
    confirm_per_session: int
    receiver_writes: int
    processor_writes: int
    bench_generated_at: str
    bench_results: dict[str, Any]

    @classmethod
    def load(cls, path: Path = BENCH_RESULTS) -> Measured:
        try:
            results = json.loads(path.read_text())
        except FileNotFoundError:
            raise MeasurementsError(f"{path} does not exist: run `make bench` first") from None
        except ValueError as error:
            raise MeasurementsError(f"{path} is not JSON: {error}") from None
        return cls.from_results(results)

    @classmethod
    def from_results(cls, results: dict[str, Any]) -> Measured:
        def field(*names: str | int) -> Any:
            value: Any = results
            for name in names:
                try:
                    value = value[name]
                except (KeyError, IndexError, TypeError):
                    dotted = ".".join(str(part) for part in names)
                    raise MeasurementsError(
                        f"benchmarks/results/latest.json lacks {dotted}: re-run `make bench`"
                    ) from None
            return value

        null_rows = field("processor", "memory", "latency_0")
        null_16 = next((row for row in null_rows if row.get("pool_size") == 16), None)
        if null_16 is None:
            raise MeasurementsError(
                "benchmarks/results/latest.json lacks processor.memory.latency_0 at pool 16"
            )
        per_session_s = null_16["cpu_ms"] / null_16["sessions"] / 1000
        warm10 = field("processor", "memory", "warm_batch_10")
        cold10 = field("processor", "memory", "cold_batch_10")
        per_invoke_s = max(0.0, warm10["cpu_ms"] / 1000 - warm10["sessions"] * per_session_s)
        extra_cpu_s = (cold10["cpu_ms"] - warm10["cpu_ms"]) / 1000
        flinks = field("calls", "warm_container", "flinks_per_guarantee")
        return cls(
            receiver_memory_mb=int(field("memory_mb", "receiver")),
            processor_memory_mb=int(field("memory_mb", "processor")),
            receiver_cpu_s=field("warm_path", "summary", "receiver", "p50") / 1000,
            receiver_init_s=field("cold_start", "summary", "receiver", "spawn_to_first_response_ms", "p50")
            / 1000,
            processor_cpu_per_session_s=per_session_s,
            processor_cpu_per_invoke_s=per_invoke_s,
            processor_first_batch_extra_cpu_s=max(0.0, extra_cpu_s),
            processor_first_batch_extra_wait_s=max(
                0.0, (cold10["batch_ms"] - warm10["batch_ms"]) / 1000 - extra_cpu_s
            ),
            authorize_per_session=float(flinks.get("authorize", 1.0)),
            details_per_session=round(flinks.get("details", 1.0)),
            confirm_per_session=round(flinks.get("confirm", 1.0)),
            receiver_writes=round(
                field("calls", "warm_container", "receiver", "per_guarantee", "dynamodb_writes")
            ),
            processor_writes=round(
                field("calls", "warm_container", "processor", "per_guarantee", "dynamodb_writes")
            ),
            bench_generated_at=str(results.get("generated_at", "")),
            bench_results=results,
        )

    def cpu_share(self, memory_mb: int) -> float:
        return min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)


@dataclass(frozen=True)
class AwsAssumptions:
    """What loopback cannot measure. Each is a named figure the reader can change and re-run."""

    flinks_latency_s: float = 0.150
    """Per call, from AWS to Flinks (the benchmarks' headline; Flinks publishes none)."""
    flinks_latency_sigma: float = 0.3
    flinks_error_rate: float = 0.0
    dynamodb_write_s: float = costs.ASSUMED_DYNAMODB_RTT_MS / 1000
    """An in-region DynamoDB round trip ("single-digit ms"), as benchmarks/costs.py assumes."""
    dynamodb_sigma: float = 0.3
    api_gateway_s: float = 0.005
    """HTTP API's own time per request, before and after the function."""
    stream_visibility_s: float = 0.05
    """From a write to its stream record being readable (AWS gives no figure; typically well under 1 s)."""
    get_records_s: float = 0.010
    esm_invoke_overhead_s: float = 0.015
    """The event source mapping's Invoke call, on top of the function's own duration."""
    lambda_platform_init_s: float = 0.150
    """Lambda's sandbox and runtime start, before our init code runs."""
    status_webhook_after_s: float = 30.0
    """Flinks' final-status webhook, this long after our confirm (the customer finishing on screen)."""
    redelivery_after_s: float = 5.0
    """Flinks re-sends a refused guarantee webhook after this long (undocumented)."""
    token_lifetime_s: float = 299.0
    """``expires_in`` of /api/v1/authorize (flinks-geft.md, P4)."""
    token_margin_s: float = 30.0
    account_concurrency: int = 1000

    def flinks_latency(self) -> LogNormal:
        return LogNormal(self.flinks_latency_s, self.flinks_latency_sigma)

    def dynamodb_write(self) -> LogNormal:
        return LogNormal(self.dynamodb_write_s, self.dynamodb_sigma)
