"""Find, by simulation, the settings each rate needs.

The rule, in order (every step is a simulation run with the same seed, so candidates see the same
arrivals and the same Flinks latencies):

1. **Keep up.** For each batch size, the fewest lanes (shards x ParallelizationFactor) with which the
   queue does not grow, nothing is refused and no lane runs above 90 % of its capacity (busy that
   share of the time with full batches: a little more traffic or latency and its queue grows). A
   run that falls behind tells how much one lane carries (full batches / their duration); the
   search starts from the lanes that implies. More
   ParallelizationFactor while it still cuts p99 by 5 % or more. Shards beyond what the table's writes
   need only when ParallelizationFactor 10 is not enough (pre-warming the table gives them).
2. **Latency first, then cost.** Of those (only the ones with no more shards than the table's writes
   need, if any keeps up), every candidate within 5 % of the best p99 webhook ->
   confirm; of them the cheapest, costs within 1 % of each other counting as equal; among equals
   the simplest (fewer concurrent executions, then the smaller batch).
3. **Token pool**: the smallest pool within 3 % of the best p99 over the pool sizes tried.
4. **Batching window**: the same rule as 2 against no window (a window must save more than 1 %).

Then the chosen settings are run again with three times the guarantees (the reported figures), and
under a burst of three times the rate for a fifth of the run.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from capacity.aws import Settings, aws_pipeline, shards_for_writes, template_defaults
from capacity.cost import Cost, per_million
from capacity.measured import AwsAssumptions, Measured
from capacity.model import Arrivals, Burst, simulate

RATES = (1, 10, 100, 1000)
BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100)
MAX_PARALLELIZATION = 10
MAX_SHARD_MULTIPLE = 16
WINDOWS_S = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_TOLERANCE = 0.05
POOL_TOLERANCE = 0.03
COST_EQUAL_WITHIN = 0.01
MAX_LANE_LOAD = 0.9
MIN_GUARANTEES = 6000
MIN_SIMULATED_S = 60.0
BURST_FACTOR = 3.0
MAX_THREADS = 64  # template.yaml: ProcessorPoolSize MaxValue


@dataclass(frozen=True)
class Outcome:
    """One run of one set of settings at one rate."""

    settings: Settings
    rate_per_s: float
    guarantees: int
    p50_s: float
    p99_s: float
    keeps_up: bool
    refused_deliveries: int
    lost_sessions: int
    invoke_throttles: int
    mean_batch_size: float
    mean_invoke_s: float
    processor_peak_concurrency: int
    receiver_peak_concurrency: int
    processor_cold_starts: int
    authorize_on_critical_path_per_guarantee: float
    tokens_wasted: int
    api_peak_per_s: int
    busiest_lane_load: float
    cost: Cost

    @property
    def acceptable(self) -> bool:
        return (
            self.keeps_up
            and not self.refused_deliveries
            and not self.lost_sessions
            and self.busiest_lane_load <= MAX_LANE_LOAD
        )

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["settings"]["concurrency"] = self.settings.concurrency
        document["acceptable"] = self.acceptable
        return document


@dataclass(frozen=True)
class Recommendation:
    rate_per_s: float
    minimum_shards: int
    chosen: Outcome
    steady: Outcome
    burst: Outcome
    defaults: Outcome
    by_batch_size: tuple[Outcome, ...]
    pool_sweep: tuple[Outcome, ...]
    window_sweep: tuple[Outcome, ...]
    runs: int
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate_per_s,
            "minimum_shards": self.minimum_shards,
            "chosen": self.chosen.as_dict(),
            "steady": self.steady.as_dict(),
            "burst": self.burst.as_dict(),
            "defaults": self.defaults.as_dict(),
            "by_batch_size": [outcome.as_dict() for outcome in self.by_batch_size],
            "pool_sweep": [outcome.as_dict() for outcome in self.pool_sweep],
            "window_sweep": [outcome.as_dict() for outcome in self.window_sweep],
            "runs": self.runs,
            "elapsed_s": self.elapsed_s,
        }


class Search:
    """Runs candidates for one rate, counting the runs."""

    def __init__(
        self,
        rate_per_s: float,
        measured: Measured,
        assumptions: AwsAssumptions,
        *,
        seed: int = 1,
        guarantees: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.rate = rate_per_s
        self.measured = measured
        self.assumptions = assumptions
        self.seed = seed
        self.guarantees = guarantees or max(MIN_GUARANTEES, math.ceil(rate_per_s * MIN_SIMULATED_S))
        self.log = log or (lambda _: None)
        self.runs = 0

    def run(self, settings: Settings, *, guarantees: int | None = None, burst: bool = False) -> Outcome:
        count = guarantees or self.guarantees
        span_s = count / self.rate
        bursts = (Burst(0.4 * span_s, 0.2 * span_s, BURST_FACTOR),) if burst else ()
        arrivals = Arrivals(rate_per_s=self.rate, guarantees=count, bursts=bursts)
        config = aws_pipeline(self.measured, settings, arrivals, self.assumptions)
        config = replace(config, warm_up_fraction=0.2)
        result = simulate(config, seed=self.seed)
        self.runs += 1
        durations = result.invoke_durations_s
        outcome = Outcome(
            settings=settings,
            rate_per_s=self.rate,
            guarantees=result.guarantees,
            p50_s=result.percentile_s(50),
            p99_s=result.percentile_s(99),
            keeps_up=result.keeps_up(),
            refused_deliveries=result.refused_deliveries,
            lost_sessions=result.lost_sessions,
            invoke_throttles=result.invoke_throttles,
            mean_batch_size=result.mean_batch_size(),
            mean_invoke_s=sum(durations) / len(durations) if durations else math.nan,
            processor_peak_concurrency=result.processor_peak_concurrency,
            receiver_peak_concurrency=result.receiver_peak_concurrency,
            processor_cold_starts=result.processor_cold_starts,
            authorize_on_critical_path_per_guarantee=result.authorize_on_critical_path / result.guarantees,
            tokens_wasted=result.tokens_wasted,
            api_peak_per_s=result.api_peak_per_s,
            busiest_lane_load=result.busiest_lane_load,
            cost=per_million(result, self.measured),
        )
        self.log(
            f"  {self.rate:g}/s {settings.describe()}: p50 {outcome.p50_s:.3f} s, p99 {outcome.p99_s:.3f} s, "
            f"{'keeps up' if outcome.acceptable else 'FALLS BEHIND'}, ${outcome.cost.usd_per_million:.2f}/M"
        )
        return outcome

    def fewest_lanes(self, base: Settings, minimum_shards: int) -> Outcome | None:
        """The fewest lanes that keep up with ``base``'s batch size, then more PF while p99 improves."""
        first = self.run(replace(base, shards=minimum_shards, parallelization_factor=1))
        if first.acceptable:
            best = first
        else:
            lanes = self._lanes_implied(first)
            best_or_none = self._step_up_until_acceptable(base, minimum_shards, lanes)
            if best_or_none is None:
                return None
            best = best_or_none
        while best.settings.parallelization_factor < MAX_PARALLELIZATION:
            more = self.run(
                replace(best.settings, parallelization_factor=best.settings.parallelization_factor + 1)
            )
            if not more.acceptable or more.p99_s > 0.95 * best.p99_s:
                break
            best = more
        return best

    def _lanes_implied(self, behind: Outcome) -> int:
        """Lanes needed, from what one lane carried while it fell behind (full batches back to back)."""
        lanes = behind.settings.shards * behind.settings.parallelization_factor
        if not behind.mean_invoke_s or math.isnan(behind.mean_invoke_s):
            return lanes + 1
        per_lane_per_s = behind.mean_batch_size / behind.mean_invoke_s
        return max(lanes + 1, math.ceil(self.rate / per_lane_per_s))

    def _step_up_until_acceptable(self, base: Settings, minimum_shards: int, lanes: int) -> Outcome | None:
        for settings in _lane_layouts(base, minimum_shards, lanes):
            outcome = self.run(settings)
            if outcome.acceptable:
                return outcome
        return None


def _lane_layouts(base: Settings, minimum_shards: int, lanes: int) -> Iterable[Settings]:
    """Settings with at least ``lanes`` lanes, growing: PF first, then shards."""
    shards = minimum_shards
    while shards <= minimum_shards * MAX_SHARD_MULTIPLE:
        start = max(1, math.ceil(lanes / shards))
        for factor in range(start, MAX_PARALLELIZATION + 1):
            yield replace(base, shards=shards, parallelization_factor=factor)
        shards *= 2


def _threads_for(batch_size: int) -> int:
    """Enough threads for the whole batch in one wave, within the template's limits."""
    return min(MAX_THREADS, max(template_defaults().thread_pool, batch_size))


def _within(outcomes: Iterable[Outcome], best_p99: float, tolerance: float) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.p99_s <= best_p99 * (1 + tolerance)]


def _cheapest(outcomes: Iterable[Outcome]) -> Outcome:
    """The cheapest (within ``COST_EQUAL_WITHIN``), then the simplest: no window, fewer concurrent
    executions, a smaller pool, a smaller batch."""
    candidates = list(outcomes)
    lowest = min(outcome.cost.usd_per_million for outcome in candidates)
    equal = [o for o in candidates if o.cost.usd_per_million <= lowest * (1 + COST_EQUAL_WITHIN)]
    return min(
        equal,
        key=lambda o: (
            o.settings.batching_window_s,
            o.settings.concurrency,
            o.settings.token_pool_size,
            o.settings.batch_size,
        ),
    )


def recommend(
    rate_per_s: float,
    measured: Measured,
    assumptions: AwsAssumptions | None = None,
    *,
    seed: int = 1,
    guarantees: int | None = None,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    log: Callable[[str], None] | None = None,
) -> Recommendation:
    started = time.perf_counter()
    search = Search(
        rate_per_s, measured, assumptions or AwsAssumptions(), seed=seed, guarantees=guarantees, log=log
    )
    minimum_shards = shards_for_writes(rate_per_s, measured)

    by_batch = []
    for batch_size in batch_sizes:
        base = Settings(
            batch_size=batch_size, token_pool_size=batch_size, thread_pool=_threads_for(batch_size)
        )
        outcome = search.fewest_lanes(base, minimum_shards)
        if outcome is not None:
            by_batch.append(outcome)
    if not by_batch:
        raise RuntimeError(f"no settings tried keep up with {rate_per_s:g} guarantees/s")
    simple = [outcome for outcome in by_batch if outcome.settings.shards == minimum_shards] or by_batch
    best_p99 = min(outcome.p99_s for outcome in simple)
    chosen = _cheapest(_within(simple, best_p99, LATENCY_TOLERANCE))

    batch = chosen.settings.batch_size
    pools = sorted({0, 1, max(1, batch // 2), batch, 2 * batch})
    pool_sweep = [
        chosen
        if size == chosen.settings.token_pool_size
        else search.run(replace(chosen.settings, token_pool_size=size))
        for size in pools
    ]
    acceptable = [outcome for outcome in pool_sweep if outcome.acceptable]
    best_pool_p99 = min(outcome.p99_s for outcome in acceptable)
    chosen = min(
        _within(acceptable, best_pool_p99, POOL_TOLERANCE),
        key=lambda outcome: outcome.settings.token_pool_size,
    )

    window_sweep = [
        chosen
        if window == chosen.settings.batching_window_s
        else search.run(replace(chosen.settings, batching_window_s=window))
        for window in WINDOWS_S
    ]
    no_window = window_sweep[0]
    chosen = _cheapest(
        _within(
            [outcome for outcome in window_sweep if outcome.acceptable], no_window.p99_s, LATENCY_TOLERANCE
        )
    )

    steady = search.run(chosen.settings, guarantees=3 * search.guarantees)
    burst = search.run(chosen.settings, guarantees=3 * search.guarantees, burst=True)
    defaults = search.run(replace(template_defaults(), shards=minimum_shards))
    return Recommendation(
        rate_per_s=rate_per_s,
        minimum_shards=minimum_shards,
        chosen=chosen,
        steady=steady,
        burst=burst,
        defaults=defaults,
        by_batch_size=tuple(by_batch),
        pool_sweep=tuple(pool_sweep),
        window_sweep=tuple(window_sweep),
        runs=search.runs,
        elapsed_s=time.perf_counter() - started,
    )


def main() -> None:  # pragma: no cover - a quick look at one rate: python -m capacity.recommend RATE
    rate = float(sys.argv[1])
    recommendation = recommend(rate, Measured.load(), log=lambda line: print(line, file=sys.stderr))
    print(recommendation.steady.settings.describe())


if __name__ == "__main__":
    main()
