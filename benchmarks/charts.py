"""Draw docs/performance-latency.png and docs/performance-pool.png from benchmarks/results/latest.json.

    .venv-bench/bin/python -m benchmarks.charts

Runs in the benchmark virtualenv (matplotlib, Agg backend): the test virtualenv stays lean.
"""

from __future__ import annotations

import json
from typing import Any

import matplotlib  # type: ignore[import-not-found]  # only in .venv-bench

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # type: ignore[import-not-found]
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # type: ignore[import-not-found]

from benchmarks.paths import REPO, RESULTS_FILE

LATENCY_PNG = REPO / "docs" / "performance-latency.png"
POOL_PNG = REPO / "docs" / "performance-pool.png"
COLORS = {"receiver": "#1f77b4", "baseline": "#7f7f7f", 0: "#2ca02c", 50: "#ff7f0e", 150: "#d62728"}


def cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    return ordered, [(index + 1) / len(ordered) for index in range(len(ordered))]


def latency_chart(results: dict[str, Any]) -> None:
    figure, (warm_axis, cold_axis, e2e_axis) = plt.subplots(1, 3, figsize=(15, 4.6))

    warm = results["warm_path"]
    for variant in ("receiver", "baseline"):
        xs, ys = cdf(warm["samples"][variant])
        p99 = warm["summary"][variant]["p99"]
        warm_axis.plot(xs, ys, color=COLORS[variant], label=f"{variant} (p99 {p99:.2f} ms)")
        warm_axis.axvline(p99, color=COLORS[variant], linestyle=":", linewidth=1)
    warm_axis.set_xscale("log")
    warm_axis.xaxis.set_major_locator(FixedLocator([0.25, 0.5, 1, 2, 5, 10, 20]))
    warm_axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    warm_axis.xaxis.set_minor_formatter(NullFormatter())
    warm_axis.set_xlabel("handler time per request (ms, log)")
    warm_axis.set_ylabel("fraction of requests")
    warm_axis.set_title(f"2. Receiver warm path ({warm['requests']} requests each)")
    warm_axis.legend(loc="lower right")
    warm_axis.grid(True, which="both", alpha=0.3)

    cold = results["cold_start"]
    data = [cold["samples"]["receiver"], cold["samples"]["baseline"]]
    cold_axis.boxplot(data, tick_labels=["receiver", "baseline"], whis=(0, 100))
    for position, (variant, values) in enumerate(zip(("receiver", "baseline"), data, strict=True), start=1):
        cold_axis.scatter([position] * len(values), values, color=COLORS[variant], alpha=0.6, s=14, zorder=3)
    ratio = cold["ratio_p50"]["init_and_first_ms"]
    cold_axis.set_ylabel("import + first request (ms)")
    cold_axis.set_title(f"1. Cold start ({cold['rounds']} each): {ratio:.2f}x baseline at p50")
    cold_axis.set_ylim(bottom=0)
    cold_axis.grid(True, axis="y", alpha=0.3)

    e2e = results["end_to_end"]
    for run in e2e["runs"]:
        xs, ys = cdf(run["samples"])
        latency = run["latency_ms"]
        color = COLORS.get(latency, "#9467bd")
        e2e_axis.plot(xs, ys, color=color, label=f"Flinks {latency} ms (floor {run['floor_ms']:.0f} ms)")
        e2e_axis.axvline(run["floor_ms"], color=color, linestyle="--", linewidth=1)
    e2e_axis.set_xlabel("webhook to confirm (ms); dashed: floor")
    e2e_axis.set_ylabel("fraction of guarantees")
    e2e_axis.legend(loc="lower right")
    e2e_axis.grid(True, alpha=0.3)
    e2e_axis.set_title("4. End to end on the local stack")

    figure.tight_layout()
    figure.savefig(LATENCY_PNG, dpi=110)
    plt.close(figure)


def pool_chart(results: dict[str, Any]) -> None:
    figure, axis = plt.subplots(figsize=(9, 5.2))
    styles = {
        "memory": ("#1f77b4", "o", "processor alone (AWS in memory)"),
        "separate-process": ("#ff7f0e", "s", "moto server + sandbox in another process"),
        "in-process": ("#9467bd", "^", "moto mock_aws + sandbox in-process (as tests)"),
    }
    floor_rows: list[dict[str, Any]] = []
    headline = results["processor"]["memory"]["headline_ms"]
    for mode, data in results["processor"].items():
        rows = sorted(data["sweep"], key=lambda row: row["pool_size"])
        color, marker, label = styles.get(mode, ("#333333", "x", mode))
        axis.plot(
            [row["pool_size"] for row in rows],
            [row["batch_ms"] / 1000 for row in rows],
            color=color,
            marker=marker,
            label=label,
        )
        if len(rows) > len(floor_rows):
            floor_rows = rows
        null_rows = sorted(data["latency_0"], key=lambda row: row["pool_size"])
        axis.plot(
            [row["pool_size"] for row in null_rows],
            [row["batch_ms"] / 1000 for row in null_rows],
            color=color,
            marker=marker,
            linestyle=":",
            alpha=0.6,
            label=f"{mode}, Flinks at 0 ms (CPU only)",
        )
    axis.plot(
        [row["pool_size"] for row in floor_rows],
        [row["floor_ms"] / 1000 for row in floor_rows],
        color="black",
        linestyle="--",
        label=f"floor: 3 calls x {headline} ms x ceil(100 / pool)",
    )
    axis.plot(
        [row["pool_size"] for row in floor_rows],
        [1.5 * row["floor_ms"] / 1000 for row in floor_rows],
        color="black",
        linestyle=":",
        linewidth=1,
        label="target: 1.5 x floor",
    )
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks([row["pool_size"] for row in floor_rows])
    axis.set_xticklabels([str(row["pool_size"]) for row in floor_rows])
    axis.set_xlabel("PROCESSOR_POOL_SIZE")
    axis.set_ylabel("batch of 100 sessions (s, log)")
    axis.set_title(
        f"3. Processor: one stream batch of 100 sessions, Flinks sandbox at {headline} ms per call"
    )
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(POOL_PNG, dpi=110)
    plt.close(figure)


def main() -> None:
    results = json.loads(RESULTS_FILE.read_text())
    latency_chart(results)
    pool_chart(results)
    print(f"wrote {LATENCY_PNG.relative_to(REPO)} and {POOL_PNG.relative_to(REPO)}")


if __name__ == "__main__":
    main()
