"""Item 3: one stream batch of distinct sessions, Flinks answering after a fixed latency, by pool size;
and the critical path of one guarantee, from its stream record to the confirm, in Flinks round trips.

Run as a child process (``python -m benchmarks.processor_bench OUT.json --fakes=MODE``, MODE one of
``BenchStack.MODES``): the functions log to
stdout, which the parent sends to /dev/null, and moto's patches stay inside this process.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from typing import Any

from benchmarks.common import HEADLINE_FLINKS_MS, summary
from benchmarks.inprocess import BenchStack, prepare

SESSIONS = 100
POOL_SIZES = (1, 2, 4, 8, 16, 32)
TARGET_POOL = 16  # the template's ProcessorPoolSize default
REPEATS_AT_TARGET = 3
CRITICAL_PATH_RUNS = 20


def flinks_calls(stack: BenchStack, sessions: list[str]) -> Counter[str]:
    """Flinks API calls made for ``sessions``, by endpoint, from the sandbox's journal. Authorize calls
    carry no session id: they are attributed by count (one token per session is the design)."""
    wanted = set(sessions)
    counts: Counter[str] = Counter()
    for entry in stack.sandbox.calls():
        if entry.session_id in wanted:
            counts[entry.endpoint] += 1
    return counts


def run_batch(stack: BenchStack, sessions_count: int) -> dict[str, Any]:
    authorize_before = stack.sandbox.authorize_count
    sessions, event = stack.guarantees_batch(sessions_count)
    cpu_before, fakes_before = time.process_time(), stack.fakes_cpu_seconds()
    elapsed_ms = stack.process(event)
    cpu_ms = (time.process_time() - cpu_before) * 1000
    fakes_cpu_ms = (stack.fakes_cpu_seconds() - fakes_before) * 1000
    stack.check_confirmed(sessions)
    calls = flinks_calls(stack, sessions)
    calls["authorize"] = stack.sandbox.authorize_count - authorize_before
    return {"batch_ms": elapsed_ms, "cpu_ms": cpu_ms, "fakes_cpu_ms": fakes_cpu_ms, "calls": dict(calls)}


def sweep(
    latency_ms: int, pool_sizes: tuple[int, ...], repeats_at_target: int, fakes: str
) -> list[dict[str, Any]]:
    rows = []
    with BenchStack(latency_ms=latency_ms, fakes=fakes) as stack:
        for pool_size in pool_sizes:
            stack.set_pool_size(pool_size)
            # A warm container: the first batch builds the clients, reads the secret and opens the
            # keep-alive connections; only the next batch is measured.
            run_batch(stack, max(2, pool_size))
            repeats = repeats_at_target if pool_size == TARGET_POOL else 1
            runs = [run_batch(stack, SESSIONS) for _ in range(repeats)]
            calls_per_session = sum(runs[0]["calls"].values()) / SESSIONS
            waves = math.ceil(SESSIONS / pool_size)
            floor_ms = calls_per_session * latency_ms * waves
            median = sorted(runs, key=lambda run: run["batch_ms"])[len(runs) // 2]
            batch_ms = median["batch_ms"]
            rows.append(
                {
                    "pool_size": pool_size,
                    "latency_ms": latency_ms,
                    "sessions": SESSIONS,
                    "batch_ms": batch_ms,
                    "runs_ms": [run["batch_ms"] for run in runs],
                    "cpu_ms": median["cpu_ms"],
                    "fakes_cpu_ms": median["fakes_cpu_ms"],
                    "fakes": fakes,
                    "calls": runs[0]["calls"],
                    "calls_per_session": calls_per_session,
                    "waves": waves,
                    "floor_ms": floor_ms,
                    "ratio_to_floor": batch_ms / floor_ms if floor_ms else None,
                    "per_session_ms": batch_ms / SESSIONS,
                }
            )
            print(
                f"  {fakes} fakes, latency {latency_ms} ms, pool {pool_size:2d}: {batch_ms:8.1f} ms "
                f"(floor {floor_ms:.0f} ms; CPU: here {median['cpu_ms']:.0f} ms, "
                f"fakes {median['fakes_cpu_ms']:.0f} ms)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def critical_path(latency_ms: int, fakes: str, runs: int = CRITICAL_PATH_RUNS) -> dict[str, Any]:
    """One guarantee at a time on a warm processor, timed from outside: the invoke with its one stream
    record until the handler returns (claim, Flinks calls, confirm, the outcome's write), divided by
    the latency of one Flinks call. Between guarantees the container idles for two round trips, as in
    steady traffic, so anything it prepares ahead (a token pool) has had the time to."""
    with BenchStack(latency_ms=latency_ms, pool_size=TARGET_POOL, fakes=fakes) as stack:
        run_batch(stack, 2)  # a warm container: clients built, secret read, connections open
        walls, calls = [], Counter[str]()
        for _ in range(runs):
            sessions, event = stack.guarantees_batch(1)
            time.sleep(2 * latency_ms / 1000)
            authorize_before = stack.sandbox.authorize_count
            walls.append(stack.process(event))
            stack.check_confirmed(sessions)
            calls += flinks_calls(stack, sessions)
            calls["authorize"] += stack.sandbox.authorize_count - authorize_before
    wall = summary(walls)
    return {
        "fakes": fakes,
        "latency_ms": latency_ms,
        "runs": runs,
        "wall_ms": wall,
        "round_trips_p50": wall["p50"] / latency_ms,
        "round_trips_p90": wall["p90"] / latency_ms,
        "calls_per_guarantee": {endpoint: count / runs for endpoint, count in sorted(calls.items())},
    }


def cold_batch(latency_ms: int, pool_size: int, sessions_count: int, fakes: str) -> dict[str, Any]:
    """The same batch on a cold processor container (composition root, secret read, connections)."""
    with BenchStack(latency_ms=latency_ms, pool_size=pool_size, fakes=fakes) as stack:
        result = run_batch(stack, sessions_count)
        return {"pool_size": pool_size, "sessions": sessions_count, "latency_ms": latency_ms, **result}


def warm_batch(latency_ms: int, pool_size: int, sessions_count: int, fakes: str) -> dict[str, Any]:
    with BenchStack(latency_ms=latency_ms, pool_size=pool_size, fakes=fakes) as stack:
        run_batch(stack, sessions_count)
        result = run_batch(stack, sessions_count)
        return {"pool_size": pool_size, "sessions": sessions_count, "latency_ms": latency_ms, **result}


def main() -> None:
    prepare()
    out = sys.argv[1]
    quick = "--quick" in sys.argv
    fakes = next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--fakes="))
    # The full sweep at the headline latency for the processor alone; the moto harnesses (slower,
    # CPU-bound by moto) at the template's pool only, to show where their own cost puts the floor.
    # 50 ms (optimistic for AWS to Flinks) and 0 ms (CPU alone) at the template's pool.
    memory = fakes == "memory"
    pools = POOL_SIZES if memory and not quick else ((1, TARGET_POOL) if memory else (TARGET_POOL,))
    repeats = 1 if quick else REPEATS_AT_TARGET
    headline = HEADLINE_FLINKS_MS
    started = time.perf_counter()
    result: dict[str, Any] = {
        "fakes": fakes,
        "headline_ms": headline,
        "sweep": sweep(headline, pools, repeats, fakes),
        "latency_50": sweep(50, (TARGET_POOL,), 1, fakes),
        "latency_0": sweep(0, (1, TARGET_POOL) if memory else (TARGET_POOL,), 1, fakes),
    }
    runs = 5 if quick else CRITICAL_PATH_RUNS
    result["critical_path"] = [critical_path(headline, fakes, runs)]
    if memory:
        result["critical_path"].append(critical_path(50, fakes, runs))
        result["cold_batch_10"] = cold_batch(headline, TARGET_POOL, 10, fakes)
        result["warm_batch_10"] = warm_batch(headline, TARGET_POOL, 10, fakes)
    result["elapsed_s"] = time.perf_counter() - started
    with open(out, "w") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    main()
