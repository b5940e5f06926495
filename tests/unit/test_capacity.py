"""The capacity model on small cases with known answers (an M/D/1 queue, a shard saturating at its
service rate, the batching window, ParallelizationFactor), its determinism, and the parts that read
the benchmarks' measurements, price a run, search settings and report.

Every simulation here is seeded: the tolerances hold for these seeds and run lengths.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks import costs
from benchmarks.common import percentile
from capacity import cost as capacity_cost
from capacity import local_check, report, run
from capacity.aws import Settings, shards_for_writes
from capacity.measured import BENCH_RESULTS, Measured, MeasurementsError
from capacity.model import (
    Arrivals,
    FlinksSettings,
    PipelineConfig,
    ProcessorSettings,
    ReceiverSettings,
    SimulationResult,
    StreamSettings,
    lane_of,
    simulate,
)
from capacity.recommend import recommend
from capacity.samplers import Fixed

FLINKS_S = 0.1  # per call: a session's three calls take 0.3 s


def pipeline(
    rate: float,
    guarantees: int,
    *,
    stream: StreamSettings | None = None,
    processor: ProcessorSettings | None = None,
    flinks: FlinksSettings | None = None,
    receiver: ReceiverSettings | None = None,
    key_space: int | None = None,
) -> PipelineConfig:
    """The smallest pipeline: no CPU, writes and polls take no time, Flinks a fixed latency."""
    return PipelineConfig(
        arrivals=Arrivals(rate_per_s=rate, guarantees=guarantees, key_space=key_space),
        receiver=receiver or ReceiverSettings(service=Fixed(0.0), warm_containers=10),
        stream=stream or StreamSettings(batch_size=1),
        processor=processor or ProcessorSettings(warm_containers=10),
        flinks=flinks or FlinksSettings(latency=Fixed(FLINKS_S)),
    )


@pytest.fixture(scope="module")
def measured() -> Measured:
    return Measured.load()


# -- queueing theory -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rho", "tolerance"), [(0.5, 0.05), (0.8, 0.10)])
def test_a_single_receiver_container_is_an_md1_queue(rho: float, tolerance: float) -> None:
    # GIVEN Poisson webhooks to one receiver container with a fixed service time (the local stack)
    mu = 100.0
    config = pipeline(
        rho * mu, 20_000, receiver=ReceiverSettings(service=Fixed(1 / mu), single_container=True)
    )

    # WHEN simulated
    waits = simulate(config, seed=1).receiver_wait_s

    # THEN the mean wait is Pollaczek-Khinchine's for M/D/1: Wq = rho / (2 mu (1 - rho))
    expected = rho / (2 * mu * (1 - rho))
    assert sum(waits) / len(waits) == pytest.approx(expected, rel=tolerance)


def test_a_shard_confirms_at_most_one_batch_per_service_time_and_its_queue_grows_without_bound() -> None:
    # GIVEN one shard, one lane, batches of 1: each takes 3 Flinks calls = 0.3 s, so at most 3.33/s
    capacity = 1 / (3 * FLINKS_S)

    # WHEN twice that many guarantees arrive for a minute
    result = simulate(pipeline(2 * capacity, 400), seed=3)

    # THEN throughput caps at the service rate
    last = result.arrival_s[-1]
    assert result.throughput_per_s(10.0, last) == pytest.approx(capacity, rel=0.02)
    # AND the backlog grows at arrival rate minus service rate, without bound
    backlog = result.backlog_at(last)
    assert backlog == pytest.approx(len(result.arrival_s) - capacity * last, rel=0.05)
    assert backlog == pytest.approx(2 * result.backlog_at(last / 2), rel=0.15)
    assert not result.keeps_up()


def test_below_its_service_rate_a_shard_keeps_up() -> None:
    # GIVEN half the rate one lane can serve
    capacity = 1 / (3 * FLINKS_S)

    # WHEN simulated
    result = simulate(pipeline(capacity / 2, 400), seed=3)

    # THEN it confirms what arrives, and nothing queues up
    last = result.arrival_s[-1]
    assert result.throughput_per_s(10.0, last) == pytest.approx(capacity / 2, rel=0.1)
    assert result.backlog_at(last) <= 5
    assert result.keeps_up()


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_parallelization_factor_multiplies_a_saturated_shards_throughput(factor: int) -> None:
    # GIVEN one shard flooded with guarantees, ``factor`` concurrent batches of one
    stream = StreamSettings(batch_size=1, parallelization_factor=factor)

    # WHEN simulated
    result = simulate(pipeline(40.0, 1200, stream=stream), seed=5)

    # THEN each lane confirms one guarantee per 0.3 s
    assert result.throughput_per_s(5.0, 25.0) == pytest.approx(factor / (3 * FLINKS_S), rel=0.05)


def test_records_of_one_session_are_confirmed_in_stream_order_across_lanes_and_batches() -> None:
    # GIVEN few sessions, each with many guarantees, spread over two lanes in batches of four
    stream = StreamSettings(batch_size=4, parallelization_factor=2)

    # WHEN simulated
    config = pipeline(20.0, 400, stream=stream, key_space=5)
    result = simulate(config, seed=7)

    # THEN per session, confirms come in arrival order
    keys = [lane_of(key, 1, 2) for key in range(5)]
    assert len(set(keys)) == 2  # both lanes are used
    by_key: dict[int, list[tuple[float, float]]] = {}
    for index, key in enumerate(_keys(config, seed=7)):
        confirmed = result.confirm_s[index]
        assert confirmed is not None
        by_key.setdefault(key, []).append((result.arrival_s[index], confirmed))
    for pairs in by_key.values():
        confirms = [confirmed for _, confirmed in sorted(pairs)]
        assert confirms == sorted(confirms)


def _keys(config: PipelineConfig, *, seed: int) -> list[int]:
    import random

    space = config.arrivals.key_space
    assert space is not None
    rng = random.Random(f"{seed}:keys")
    return [rng.randrange(space) for _ in range(config.arrivals.guarantees)]


# -- batching ------------------------------------------------------------------------------------------


def test_a_batching_window_collects_the_first_record_and_what_arrives_within_it() -> None:
    # GIVEN a 1 s window, batches that never fill, a shard read every 10 ms
    stream = StreamSettings(batch_size=1000, batching_window_s=1.0, poll_interval_s=0.01)
    rate, call = 20.0, 0.05

    # WHEN Poisson guarantees arrive at 20/s
    config = pipeline(rate, 2000, stream=stream, flinks=FlinksSettings(latency=Fixed(call)))
    result = simulate(config, seed=11)

    # THEN a batch is its first record plus the arrivals of the next second: 1 + rate x window
    assert result.mean_batch_size() == pytest.approx(1 + rate * 1.0, rel=0.07)
    # AND nobody waits longer than a window, a batch in flight, a batch and two polls
    assert max(result.latencies_s()) <= 1.0 + 2 * 3 * call + 2 * 0.01 + 1e-9


def test_a_batch_closes_before_its_window_when_it_is_full() -> None:
    # GIVEN a window that would collect ~10 records, and batches of 5 (full after ~0.5 s)
    stream = StreamSettings(batch_size=5, batching_window_s=1.0, poll_interval_s=0.01)

    # WHEN simulated
    result = simulate(pipeline(10.0, 1000, stream=stream), seed=11)

    # THEN batches are full, and the typical guarantee waits less than the window plus its batch
    assert result.mean_batch_size() >= 4.9
    assert percentile(result.latencies_s(), 50) < 1.0 + 3 * FLINKS_S - 0.2


# -- token pool, Flinks errors -----------------------------------------------------------------------


def test_a_token_pool_takes_authorize_off_the_critical_path_in_steady_traffic() -> None:
    # GIVEN steady traffic in batches of up to 10 over lanes that never queue, with and without a pool
    # of 10 tokens a container
    stream = StreamSettings(batch_size=10, parallelization_factor=10)

    # WHEN simulated
    off = simulate(pipeline(5.0, 600, stream=stream), seed=13)
    on = simulate(pipeline(5.0, 600, stream=stream, processor=ProcessorSettings(token_pool_size=10)), seed=13)

    # THEN without a pool every session authorizes first; with one, hardly any after the first batches
    assert off.authorize_on_critical_path == 600
    assert on.authorize_on_critical_path <= 0.05 * 600
    # AND each guarantee is one round trip faster
    assert off.percentile_s(50) - on.percentile_s(50) == pytest.approx(FLINKS_S, rel=0.3)
    # AND Flinks mints no more tokens than sessions, plus the pool per container, plus the expired ones
    assert on.authorize_calls <= 600 + 10 * on.processor_peak_concurrency + on.tokens_wasted


def test_pooled_tokens_that_would_expire_are_wasted_and_counted() -> None:
    # GIVEN tokens usable for 1.5 s, and a guarantee every 5 s on average
    processor = ProcessorSettings(token_pool_size=2, token_lifetime_s=2.0, token_margin_s=0.5)

    # WHEN simulated
    result = simulate(pipeline(0.2, 100, processor=processor), seed=17)

    # THEN most tokens expire unused, each counted, and every guarantee still gets one
    assert result.tokens_wasted >= 50
    assert result.authorize_calls <= 100 + result.tokens_wasted + 2 * result.processor_peak_concurrency
    assert all(confirmed is not None for confirmed in result.confirm_s)


def test_flinks_errors_are_retried_with_the_processors_backoff_then_by_the_stream() -> None:
    # GIVEN Flinks failing 30 % (then 60 %) of calls, the processor's RetryPolicy (5 attempts)
    for error_rate, attempts in ((0.3, (1 - 0.3**5) / (1 - 0.3)), (0.6, None)):
        flinks = FlinksSettings(latency=Fixed(FLINKS_S), error_rate=error_rate)

        # WHEN simulated
        result = simulate(pipeline(2.0, 400, flinks=flinks), seed=19)

        # THEN every guarantee is still confirmed
        assert all(confirmed is not None for confirmed in result.confirm_s)
        if attempts is not None:  # a geometric number of attempts, capped at 5
            logical_calls = 3 * 400 + 3 * result.stream_retries
            assert result.flinks_calls / logical_calls == pytest.approx(attempts, rel=0.06)
        else:  # 0.6**5 = 8 % of calls give up: the stream re-delivers those records
            assert result.stream_retries > 0


def test_a_run_is_deterministic_for_its_seed() -> None:
    config = pipeline(10.0, 300, stream=StreamSettings(batch_size=10, parallelization_factor=2))
    assert simulate(config, seed=23) == simulate(config, seed=23)
    assert simulate(config, seed=23).latencies_s() != simulate(config, seed=24).latencies_s()


def test_a_partition_key_always_maps_to_the_same_shard_and_lane() -> None:
    assert [lane_of(key, 4, 10) for key in range(100)] == [lane_of(key, 4, 10) for key in range(100)]
    assert {lane_of(key, 4, 10) for key in range(1000)} == {(s, p) for s in range(4) for p in range(10)}


# -- measurements, cost, search ------------------------------------------------------------------------


def test_measurements_come_from_the_benchmarks_results(measured: Measured) -> None:
    results = json.loads(BENCH_RESULTS.read_text())
    null_16 = next(row for row in results["processor"]["memory"]["latency_0"] if row["pool_size"] == 16)
    assert measured.processor_cpu_per_session_s == pytest.approx(
        null_16["cpu_ms"] / null_16["sessions"] / 1000
    )
    assert measured.receiver_cpu_s == pytest.approx(results["warm_path"]["summary"]["receiver"]["p50"] / 1000)
    assert (measured.receiver_writes, measured.processor_writes) == (1, 2)


def test_a_missing_measurement_is_named() -> None:
    results = json.loads(BENCH_RESULTS.read_text())
    del results["processor"]["memory"]["warm_batch_10"]
    with pytest.raises(MeasurementsError, match=r"processor\.memory\.warm_batch_10.*make bench"):
        Measured.from_results(results)


def _with_batches(
    result: SimulationResult, guarantees: int, size: int, duration_s: float
) -> SimulationResult:
    invocations = math.ceil(guarantees / size)
    return replace(
        result,
        arrival_s=(0.0,) * guarantees,
        confirm_s=(1.0,) * guarantees,
        batch_sizes=(size,) * invocations,
        invoke_durations_s=(duration_s,) * invocations,
    )


def test_full_batches_of_ten_cost_what_the_benchmarks_cost_table_says(measured: Measured) -> None:
    # GIVEN a run that formed the batches benchmarks/costs.py prices: full batches of 10, each as long
    # as the measured batch plus two write round trips
    bench = costs.per_million(measured.bench_results)
    batch = measured.bench_results["processor"]["memory"]["warm_batch_10"]
    duration_s = math.ceil(batch["batch_ms"] + 2 * costs.ASSUMED_DYNAMODB_RTT_MS) / 1000
    result = _with_batches(simulate(pipeline(1.0, 10), seed=1), 1000, 10, duration_s)

    # WHEN priced / THEN the same total
    assert capacity_cost.per_million(result, measured).usd_per_million == pytest.approx(
        bench["total_usd_per_million"], rel=1e-9
    )
    # AND one guarantee per invocation costs more
    single = _with_batches(result, 1000, 1, duration_s)
    assert capacity_cost.per_million(single, measured).usd_per_million > bench["total_usd_per_million"]


def test_the_table_needs_a_shard_per_thousand_writes_a_second(measured: Measured) -> None:
    assert shards_for_writes(1, measured) == 1
    assert shards_for_writes(1000, measured) == math.ceil(1000 * 5 / 1000)


def test_the_search_finds_the_parallelization_a_rate_needs(measured: Measured) -> None:
    # GIVEN 30 guarantees/s: more than one lane of batches of 10 carries with Flinks at 150 ms a call
    # WHEN the model searches
    found = recommend(30, measured, guarantees=600, batch_sizes=(10,))

    # THEN the template's ParallelizationFactor 1 falls behind, and the settings found keep up
    assert not found.defaults.acceptable
    assert found.steady.acceptable
    assert found.chosen.settings.parallelization_factor > 1
    assert isinstance(found.chosen.settings, Settings)


# -- the local-stack check's parsing and configuration -------------------------------------------------

PROCESSOR_LOG = """START RequestId: r1 Version: $LATEST
{"level":"INFO","message":"guarantee finished","session_id":"s1","function_request_id":"r1"}
{"level":"INFO","message":"guarantee finished","session_id":"s2","function_request_id":"r1"}
{"_aws":{"Timestamp":1000200,"CloudWatchMetrics":[]},"Confirmed":[1.0,1.0]}
END RequestId: r1
REPORT RequestId: r1\tDuration: 200.00 ms\tBilled Duration: 201 ms\tMemory Size: 512 MB
START RequestId: r2 Version: $LATEST
{"level":"INFO","message":"guarantee finished","session_id":"s3","function_request_id":"r2"}
{"_aws":{"Timestamp":1000450,"CloudWatchMetrics":[]},"Confirmed":[1.0]}
END RequestId: r2
REPORT RequestId: r2\tDuration: 150.00 ms\tBilled Duration: 151 ms\tMemory Size: 512 MB
"""


def test_invocations_are_read_from_a_containers_log() -> None:
    invocations = local_check.parse_invocations(PROCESSOR_LOG)
    assert [(i.request_id, i.duration_s, i.sessions) for i in invocations] == [
        ("r1", 0.2, ("s1", "s2")),
        ("r2", 0.15, ("s3",)),
    ]
    # r2 started 450 - 150 = 300 ms, 100 ms after r1 ended at 200 ms: the pump's gap
    assert local_check.back_to_back_gaps(invocations, 0.25, batch_size=10) == [pytest.approx(0.1)]
    # a longer gap counts only when records were waiting (the next batch was full)
    assert local_check.back_to_back_gaps(invocations, 0.1, batch_size=10) == []
    assert local_check.back_to_back_gaps(invocations, 0.1, batch_size=1) == [pytest.approx(0.1)]


def test_the_model_configured_as_the_local_stack_replays_the_measured_sends() -> None:
    segment = local_check.Segment(
        rate_per_s=10,
        sent_at_s=tuple(i * 0.1 for i in range(50)),
        webhook_to_confirm_s=(0.4,) * 50,
        item_webhook_to_confirm_s=(0.4,) * 50,
        ack_s=(0.01,) * 50,
        receiver_durations_s=(0.008, 0.01),
        processor=(),
        pump_gaps_s=(0.01, 0.02, 0.01),
        moto_write_s=(0.005, 0.006),
        flinks_call_s=(0.052, 0.055),
        processor_cpu_per_session_s=0.008,
        calls_per_session={"authorize": 1.0, "confirm": 1.0, "details": 1.0},
        confirmed_per_s=10.0,
    )
    settings = local_check.LocalSettings(
        batch_size=10,
        batching_window_s=0.0,
        thread_pool=16,
        poll_interval_s=0.25,
        gateway_overhead_s=0.002,
        token_pool_size=0,
    )
    config = local_check.local_pipeline(segment, settings)
    assert config.receiver.single_container
    assert not config.stream.poll_while_busy
    assert (config.stream.shards, config.stream.parallelization_factor, config.processor.concurrency) == (
        1,
        1,
        1,
    )
    result = simulate(config, seed=1)
    assert result.arrival_s == segment.sent_at_s
    # the floor: three calls of >= 52 ms, two writes, the CPU; at most a poll interval's wait more
    assert all(0.17 < latency < 0.17 + 0.25 + 0.2 for latency in result.latencies_s())


# -- make capacity, quick ------------------------------------------------------------------------------


def test_a_quick_run_writes_results_that_render_into_the_performance_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN results and the page written to a scratch folder
    results_file = tmp_path / "latest.json"
    monkeypatch.setattr(run, "RESULTS_FILE", results_file)

    # WHEN the model runs quickly, without the local stack
    assert run.main(["--quick", "--no-local"]) == 0

    # THEN it printed a row per rate, and the page's generated section holds each
    printed = capsys.readouterr().out
    for rate in ("1", "10", "100", "1000"):
        assert any(line.split()[0] == rate for line in printed.splitlines()[1:])
    results: dict[str, Any] = json.loads(results_file.read_text())
    page = report.render(results)
    assert page.startswith(report.BEGIN)
    assert page.endswith(report.END)
    for rate in ("1/s", "10/s", "100/s", "1,000/s"):
        assert f"| {rate} |" in page
    assert "Not run: skipped (--no-local)" in page


def test_the_sender_posts_each_signed_body_at_its_offset() -> None:
    from capacity import sender
    from testkit.http import RecordingServer

    # GIVEN a server on loopback and three signed bodies, 50 ms apart
    with RecordingServer() as server:
        job = {
            "url": f"{server.url}/webhooks/flinks",
            "senders": 3,
            "requests": [
                {"offset_s": 0.05 * i, "session_id": f"s{i}", "body": f'{{"n":{i}}}', "signature": f"sig{i}"}
                for i in range(3)
            ],
        }

        # WHEN sent
        deliveries = sender.send_all(job)
    received = [(request.headers["x-webhook-signature"], request.body) for request in server.requests]

    # THEN each exact body arrived with its signature, and each delivery says when it was sent
    assert sorted(received) == [(f"sig{i}", f'{{"n":{i}}}'.encode()) for i in range(3)]
    by_session = {delivery["session_id"]: delivery for delivery in deliveries}
    assert [by_session[f"s{i}"]["status"] for i in range(3)] == [200, 200, 200]
    assert by_session["s0"]["sent_at_s"] < by_session["s1"]["sent_at_s"] < by_session["s2"]["sent_at_s"]


def test_the_template_defaults_are_the_templates_own() -> None:
    # The "template defaults" column models a deploy without overrides: it follows the template's
    # parameters (the token pool's default is 4, where the model's own Settings() has none).
    from capacity.aws import template_defaults
    from testkit.template import load_template

    template = {name: parameter.get("Default") for name, parameter in load_template()["Parameters"].items()}
    settings = template_defaults()
    assert settings.token_pool_size == template["FlinksTokenPoolSize"] == 4
    assert settings.batch_size == template["StreamBatchSize"]
    assert settings.parallelization_factor == template["StreamParallelizationFactor"]
    assert settings.thread_pool == template["ProcessorPoolSize"]
    assert settings.batching_window_s == 0
    assert settings.processor_concurrency is None  # ProcessorReservedConcurrency 0: unreserved
