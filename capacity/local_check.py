"""The model checked against the local stack: predict what the local stack measures, from service
times measured in the same run.

The local stack (``geft_local.stack.LocalStack``, driven the way ``benchmarks.e2e_bench`` drives it)
is one warm container per function with invokes serialized, moto in one process, one stream shard
polled every 250 ms by a pump that waits for each invoke, and our Flinks sandbox. For each rate it
sends Poisson webhooks open loop from a process of its own (``capacity.sender``: 64 senders in the
stack's process would slow the stack) and measures webhook -> confirm (send time to the item's
``confirmedAtMs``). In the same run it measures what the model needs as its service times:

* moto's write latency and the sandbox's per-call latency under that load (two probe threads, five
  calls a second each);
* each receiver invocation's duration and each processor invocation's duration and sessions (the
  containers' REPORT lines), and the gap between back-to-back processor invokes (the pump's
  GetRecords and the pipe);
* the processor container's CPU per session (/proc), and Flinks calls per session (the sandbox's
  journal); the gateway's own time per request (sequential sends before the load).

The model is then configured as that stack (``single_container`` receiver, one shard,
ParallelizationFactor 1, the template's BatchSize and ProcessorPoolSize, concurrency 1, the pump's
polling) and replays the same send times. The target: p50 and p99 within 25 % of the measurement.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import requests

from benchmarks import e2e_bench
from benchmarks.common import BENCH_SECRET, percentile
from benchmarks.inprocess import prepare, process_cpu_seconds
from benchmarks.paths import REPO
from capacity.aws import template_defaults
from capacity.measured import Measured
from capacity.model import (
    Arrivals,
    FlinksSettings,
    PipelineConfig,
    ProcessorSettings,
    ReceiverSettings,
    SimulationResult,
    StreamSettings,
    simulate,
)
from capacity.samplers import Empirical, Scaled, Shifted
from testkit.inprocess import PROCESSOR, RECEIVER

RATES_PER_S = (10, 50)
WEBHOOKS = {10: 600, 50: 500}
FLINKS_LATENCY_MS = 50
SENDERS = 64
PROBE_INTERVAL_S = 0.2
GATEWAY_CALIBRATION_SENDS = 20
TARGET = 0.25
SEED = 20261201
_REPORT = re.compile(r"^REPORT RequestId: (\S+)\tDuration: ([\d.]+) ms")
_START = re.compile(r"^START RequestId: (\S+)")


@dataclass(frozen=True)
class Invocation:
    request_id: str
    duration_s: float
    ended_at_s: float | None
    """Epoch seconds of the invocation's last metrics flush (EMF ``Timestamp``), if it logged one."""
    sessions: tuple[str, ...]


def parse_invocations(text: str) -> list[Invocation]:
    """Invocations in a container's log: START ... (JSON log lines, EMF) ... REPORT."""
    invocations: list[Invocation] = []
    sessions: list[str] = []
    ended: float | None = None
    for line in text.splitlines():
        if _START.match(line):
            sessions, ended = [], None
            continue
        report = _REPORT.match(line)
        if report:
            invocations.append(Invocation(report[1], float(report[2]) / 1000, ended, tuple(sessions)))
            continue
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if document.get("message") == "guarantee finished" and document.get("session_id"):
            sessions.append(str(document["session_id"]))
        stamp = document.get("_aws", {}).get("Timestamp") if isinstance(document.get("_aws"), dict) else None
        if isinstance(stamp, int | float):
            ended = max(ended or 0.0, stamp / 1000)
    return invocations


def back_to_back_gaps(
    invocations: Sequence[Invocation], poll_interval_s: float, batch_size: int
) -> list[float]:
    """Seconds between one invoke's end and the next one's start when the pump went straight on: its
    GetRecords, record conversion and the pipe. Straight on means records were waiting (the next
    batch was full), or the gap was shorter than the pump's idle wait."""
    gaps = []
    for before, after in itertools.pairwise(invocations):
        if before.ended_at_s is None or after.ended_at_s is None:
            continue
        gap = (after.ended_at_s - after.duration_s) - before.ended_at_s
        if gap >= 0 and (len(after.sessions) >= batch_size or gap < 0.8 * poll_interval_s):
            gaps.append(gap)
    return gaps


class Probe:
    """Calls ``action`` every ``interval_s`` on a thread and keeps how long each call took."""

    def __init__(self, action: Callable[[], None], interval_s: float = PROBE_INTERVAL_S) -> None:
        self._action, self._interval = action, interval_s
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity-probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            started = time.perf_counter()
            self._action()
            self.seconds.append(time.perf_counter() - started)


@dataclass(frozen=True)
class Segment:
    """One rate on the local stack: what was sent, what came out, the service times measured."""

    rate_per_s: float
    sent_at_s: tuple[float, ...]
    webhook_to_confirm_s: tuple[float, ...]
    item_webhook_to_confirm_s: tuple[float, ...]
    ack_s: tuple[float, ...]
    receiver_durations_s: tuple[float, ...]
    processor: tuple[Invocation, ...]
    pump_gaps_s: tuple[float, ...]
    moto_write_s: tuple[float, ...]
    flinks_call_s: tuple[float, ...]
    processor_cpu_per_session_s: float
    calls_per_session: dict[str, float]
    confirmed_per_s: float


@dataclass(frozen=True)
class LocalSettings:
    batch_size: int
    batching_window_s: float
    thread_pool: int
    poll_interval_s: float
    gateway_overhead_s: float
    token_pool_size: int


def measure(
    rates: Sequence[float] = RATES_PER_S, *, webhooks: dict[float, int] | None = None
) -> tuple[LocalSettings, list[Segment]]:
    """Run the local stack once and measure each rate in turn (the lower rates first)."""
    prepare()
    counts = webhooks or {rate: WEBHOOKS.get(int(rate), 300) for rate in rates}
    with e2e_bench.running_stack(FLINKS_LATENCY_MS, "capacity-check") as running:
        e2e_bench.warm_up(running, 10)
        settings = _local_settings(running)
        segments = [_segment(running, rate, counts[rate], settings) for rate in sorted(rates)]
    return settings, segments


def _local_settings(running: Any) -> LocalSettings:
    from geft_local.stream_pump import POLL_INTERVAL_S  # noqa: PLC0415 - after prepare(): AWS settings

    stack = running.stack
    mapping = stack.mappings[0]
    environment = stack.workers[PROCESSOR].spec.environment
    pool = int(environment.get("FLINKS_TOKEN_POOL_SIZE", template_defaults().token_pool_size))
    # The gateway's own time: sequential sends, each answered before the next (no queue).
    log = stack.workers[RECEIVER].log_path
    offset = log.stat().st_size
    acks, sessions = [], [running.sandbox.add_session() for _ in range(GATEWAY_CALIBRATION_SENDS)]
    for session_id in sessions:
        acks.append(e2e_bench.deliver(running, session_id) / 1000)
        time.sleep(0.05)
    durations = [invocation.duration_s for invocation in _invocations_since(log, offset)]
    overhead = max(0.0, statistics.median(acks) - statistics.median(durations)) if durations else 0.0
    _wait_for_confirms(running, sessions, timeout=30)  # none of them may land in the first segment
    return LocalSettings(
        batch_size=mapping.batch_size,
        batching_window_s=mapping.batching_window_s,
        thread_pool=int(environment.get("PROCESSOR_POOL_SIZE", "16")),
        poll_interval_s=POLL_INTERVAL_S,
        gateway_overhead_s=overhead,
        token_pool_size=pool,
    )


def _invocations_since(path: Any, offset: int) -> list[Invocation]:
    with open(path, encoding="utf-8", errors="replace") as stream:
        stream.seek(offset)
        return parse_invocations(stream.read())


def _signed_requests(sandbox: Any, sessions: Sequence[str], offsets: Sequence[float]) -> list[dict[str, Any]]:
    """Each session's guarantee webhook as the sandbox would send it: the body, its signature, when."""
    from testkit.flinks import guarantee_webhook_body, sign_body  # noqa: PLC0415 - see above

    out = []
    for session_id, offset in zip(sessions, offsets, strict=True):
        reference = sandbox.session_state(session_id)["referenceId"]
        body = json.dumps(guarantee_webhook_body(session_id, reference_id=reference)).encode()
        out.append(
            {
                "offset_s": offset,
                "session_id": session_id,
                "body": body.decode(),
                "signature": sign_body(body, BENCH_SECRET),
            }
        )
    return out


def _send_from_another_process(job: dict[str, Any]) -> list[e2e_bench.Delivery]:
    """``capacity.sender`` in a child interpreter: the senders do not share the stack's interpreter lock."""
    completed = subprocess.run(
        [sys.executable, "-m", "capacity.sender"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )
    deliveries = json.loads(completed.stdout)
    refused = [delivery for delivery in deliveries if delivery["status"] != 200]
    if refused:
        raise RuntimeError(f"the gateway refused {len(refused)} webhooks, e.g. {refused[0]}")
    return sorted(
        (e2e_bench.Delivery(d["session_id"], d["sent_at_s"], d["ack_ms"]) for d in deliveries),
        key=lambda delivery: delivery.sent_at_s,
    )


def _wait_for_confirms(running: Any, sessions: Sequence[str], *, timeout: float) -> None:
    """Until the sandbox has seen a confirm for every session (reading its journal, not moto)."""
    wanted = set(sessions)
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        confirmed = {entry.session_id for entry in running.sandbox.calls() if entry.endpoint == "confirm"}
        if wanted <= confirmed:
            return
        time.sleep(0.25)


def _segment(running: Any, rate: float, count: int, settings: LocalSettings) -> Segment:
    stack, sandbox = running.stack, running.sandbox
    rng = random.Random(f"{SEED}:{rate}")  # noqa: S311 - the arrival process, not a secret
    offsets, now = [], 0.0
    for _ in range(count):
        offsets.append(now)
        now += rng.expovariate(rate)
    sessions = [sandbox.add_session() for _ in range(count)]
    logs = {name: stack.workers[name].log_path for name in (RECEIVER, PROCESSOR)}
    log_offsets = {name: path.stat().st_size for name, path in logs.items()}
    processor_pid = stack.workers[PROCESSOR].pid
    cpu_before = process_cpu_seconds(processor_pid)
    dynamodb, table = stack.aws.client("dynamodb"), stack.pipeline_table
    http = requests.Session()
    http.trust_env = False
    probe_url = f"{sandbox.base_url}/api/v2/sessions/00000000-0000-4000-8000-000000000000/status"

    def write() -> None:  # a conditional UpdateItem like the processor's claim, on an item of its own
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": "CAPACITY#probe"}, "sk": {"S": "PROBE"}},
            UpdateExpression="SET probes = if_not_exists(probes, :zero) + :one",
            ConditionExpression="attribute_not_exists(#status)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
        )

    def call() -> None:  # one sandbox call: its latency, its HTTP server, our side's requests
        http.get(probe_url, timeout=10)

    job = {
        "url": stack.webhook_url,
        "senders": SENDERS,
        "requests": _signed_requests(sandbox, sessions, offsets),
    }
    started = time.time()
    with Probe(write) as moto_probe, Probe(call) as flinks_probe:
        deliveries = _send_from_another_process(job)
        _wait_for_confirms(running, sessions, timeout=300)
    items = e2e_bench.settled_items(running, sessions, timeout=60)
    cpu_s = process_cpu_seconds(processor_pid) - cpu_before
    http.close()
    sent = {delivery.session_id: delivery.sent_at_s for delivery in deliveries}
    first_sent = min(sent.values())
    latencies, from_items, confirmed_at = [], [], []
    for item in items:
        confirmed = float(item["confirmedAtMs"]) / 1000
        latencies.append(confirmed - sent[item["pk"]])
        from_items.append(float(item["webhookToConfirmMs"]) / 1000)
        confirmed_at.append(confirmed)
    receiver = _invocations_since(logs[RECEIVER], log_offsets[RECEIVER])
    processor = [
        invocation
        for invocation in _invocations_since(logs[PROCESSOR], log_offsets[PROCESSOR])
        if invocation.sessions
    ]
    wanted = set(sessions)
    by_endpoint: dict[str, int] = {}
    for entry in sandbox.calls():
        if entry.session_id in wanted or (entry.endpoint == "authorize" and entry.at >= started):
            by_endpoint[entry.endpoint] = by_endpoint.get(entry.endpoint, 0) + 1
    sessions_processed = sum(len(invocation.sessions) for invocation in processor)
    return Segment(
        rate_per_s=rate,
        sent_at_s=tuple(sorted(at - first_sent for at in sent.values())),
        webhook_to_confirm_s=tuple(latencies),
        item_webhook_to_confirm_s=tuple(from_items),
        ack_s=tuple(delivery.ack_ms / 1000 for delivery in deliveries),
        receiver_durations_s=tuple(invocation.duration_s for invocation in receiver),
        processor=tuple(processor),
        pump_gaps_s=tuple(back_to_back_gaps(processor, settings.poll_interval_s, settings.batch_size)),
        moto_write_s=tuple(moto_probe.seconds),
        flinks_call_s=tuple(flinks_probe.seconds),
        processor_cpu_per_session_s=cpu_s / max(1, sessions_processed),
        calls_per_session={endpoint: n / count for endpoint, n in sorted(by_endpoint.items())},
        confirmed_per_s=len(confirmed_at) / max(1e-9, max(confirmed_at) - first_sent),
    )


def local_pipeline(
    segment: Segment, settings: LocalSettings, measured: Measured | None = None, *, write_scale: float = 1.0
) -> PipelineConfig:
    """The model configured as the local stack, with the service times ``segment`` measured; the
    processor's writes take the probe's latencies times ``write_scale``."""
    gaps = segment.pump_gaps_s if len(segment.pump_gaps_s) >= 3 else segment.moto_write_s
    writes = measured.processor_writes if measured is not None else 2
    return PipelineConfig(
        arrivals=Arrivals(
            rate_per_s=segment.rate_per_s, guarantees=len(segment.sent_at_s), trace_s=segment.sent_at_s
        ),
        receiver=ReceiverSettings(
            service=Shifted(Empirical(segment.receiver_durations_s), settings.gateway_overhead_s),
            single_container=True,
        ),
        stream=StreamSettings(
            shards=1,
            parallelization_factor=1,
            batch_size=settings.batch_size,
            batching_window_s=settings.batching_window_s,
            poll_interval_s=settings.poll_interval_s,
            poll_while_busy=False,
            get_records=Empirical(gaps),
        ),
        processor=ProcessorSettings(
            thread_pool=settings.thread_pool,
            concurrency=1,
            warm_containers=1,
            cpu_per_session_s=segment.processor_cpu_per_session_s,
            token_pool_size=settings.token_pool_size,
            claim_writes=1,
            finish_writes=max(0, writes - 1),
            details_calls=round(segment.calls_per_session.get("details", 1.0)),
            confirm_calls=round(segment.calls_per_session.get("confirm", 1.0)),
        ),
        flinks=FlinksSettings(latency=Empirical(segment.flinks_call_s)),
        dynamodb_write=Scaled(Empirical(segment.moto_write_s), write_scale),
        warm_up_fraction=0.0,
    )


@dataclass(frozen=True)
class Comparison:
    rate_per_s: float
    webhooks: int
    measured_p50_s: float
    measured_p99_s: float
    predicted_p50_s: float
    predicted_p99_s: float
    uncalibrated_p50_s: float
    uncalibrated_p99_s: float
    write_scale: float
    measured_confirmed_per_s: float
    measured_mean_batch: float
    predicted_mean_batch: float
    measured_mean_invoke_s: float
    predicted_mean_invoke_s: float
    uncalibrated_mean_invoke_s: float
    measured_item_p50_s: float
    measured_ack_p50_s: float
    moto_write_p50_s: float
    flinks_call_p50_s: float
    receiver_mean_s: float
    processor_cpu_per_session_s: float
    pump_gap_p50_s: float

    @property
    def error_p50(self) -> float:
        return self.predicted_p50_s / self.measured_p50_s - 1

    @property
    def error_p99(self) -> float:
        return self.predicted_p99_s / self.measured_p99_s - 1

    @property
    def within_target(self) -> bool:
        return abs(self.error_p50) <= TARGET and abs(self.error_p99) <= TARGET

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "error_p50": self.error_p50,
            "error_p99": self.error_p99,
            "uncalibrated_error_p50": self.uncalibrated_p50_s / self.measured_p50_s - 1,
            "uncalibrated_error_p99": self.uncalibrated_p99_s / self.measured_p99_s - 1,
            "within_target": self.within_target,
        }


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else math.nan


def calibrated_write_scale(
    segment: Segment, settings: LocalSettings, measured: Measured | None = None
) -> float:
    """The factor on the probe's write latencies at which the model's processor invocations last as
    long, on average, as the ones measured in the same run (bisection: invokes grow with it).

    The probe sees moto's latency at the run's average load, each write on its own; a batch's ten
    claims arrive at moto together and queue behind each other (one process, writes under a lock),
    so what one batch waits for is not ten independent probe draws. Near overload that difference
    decides the backlog, so the processor's service rate is set from its own measured invocations."""
    target = _mean([invocation.duration_s for invocation in segment.processor])
    low, high = 0.0, 4.0
    for _ in range(14):
        middle = (low + high) / 2
        config = local_pipeline(segment, settings, measured, write_scale=middle)
        if _mean(simulate(config, seed=SEED).invoke_durations_s) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def compare(
    segment: Segment, settings: LocalSettings, measured: Measured | None = None
) -> tuple[Comparison, SimulationResult]:
    """The prediction with the processor's invocations calibrated, and the one without."""
    raw = simulate(local_pipeline(segment, settings, measured), seed=SEED)
    scale = calibrated_write_scale(segment, settings, measured) if segment.processor else 1.0
    result = simulate(local_pipeline(segment, settings, measured, write_scale=scale), seed=SEED)
    predicted, uncalibrated = result.latencies_s(), raw.latencies_s()
    comparison = Comparison(
        rate_per_s=segment.rate_per_s,
        webhooks=len(segment.sent_at_s),
        measured_p50_s=percentile(segment.webhook_to_confirm_s, 50),
        measured_p99_s=percentile(segment.webhook_to_confirm_s, 99),
        predicted_p50_s=percentile(predicted, 50),
        predicted_p99_s=percentile(predicted, 99),
        uncalibrated_p50_s=percentile(uncalibrated, 50),
        uncalibrated_p99_s=percentile(uncalibrated, 99),
        write_scale=scale,
        measured_confirmed_per_s=segment.confirmed_per_s,
        measured_mean_batch=_mean([len(invocation.sessions) for invocation in segment.processor]),
        predicted_mean_batch=result.mean_batch_size(),
        measured_mean_invoke_s=_mean([invocation.duration_s for invocation in segment.processor]),
        predicted_mean_invoke_s=_mean(result.invoke_durations_s),
        uncalibrated_mean_invoke_s=_mean(raw.invoke_durations_s),
        measured_item_p50_s=percentile(segment.item_webhook_to_confirm_s, 50),
        measured_ack_p50_s=percentile(segment.ack_s, 50),
        moto_write_p50_s=percentile(segment.moto_write_s, 50),
        flinks_call_p50_s=percentile(segment.flinks_call_s, 50),
        receiver_mean_s=_mean(segment.receiver_durations_s),
        processor_cpu_per_session_s=segment.processor_cpu_per_session_s,
        pump_gap_p50_s=percentile(segment.pump_gaps_s, 50),
    )
    return comparison, result


def run(measured: Measured | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the local stack at each rate, predict each, compare."""
    say = log or (lambda _: None)
    started = time.perf_counter()
    settings, segments = measure()
    compared = [compare(segment, settings, measured) for segment in segments]
    comparisons = [comparison for comparison, _ in compared]
    for comparison in comparisons:
        say(
            f"  local stack at {comparison.rate_per_s:g}/s: measured p50 {comparison.measured_p50_s:.3f} s / "
            f"p99 {comparison.measured_p99_s:.3f} s, predicted {comparison.predicted_p50_s:.3f} s / "
            f"{comparison.predicted_p99_s:.3f} s ({comparison.error_p50:+.0%} / {comparison.error_p99:+.0%})"
        )
    return {
        "flinks_latency_ms": FLINKS_LATENCY_MS,
        "senders": SENDERS,
        "target": TARGET,
        "settings": asdict(settings),
        "comparisons": [comparison.as_dict() for comparison in comparisons],
        "samples": {
            str(segment.rate_per_s): {
                "measured_s": list(segment.webhook_to_confirm_s),
                "predicted_s": result.latencies_s(),
            }
            for segment, (_, result) in zip(segments, compared, strict=True)
        },
        "elapsed_s": time.perf_counter() - started,
    }
