"""Draw docs/performance-capacity.png from capacity/results/latest.json.

    .venv-bench/bin/python -m capacity.charts

Runs in the benchmark virtualenv (matplotlib, Agg backend), like ``benchmarks.charts``.
"""

from __future__ import annotations

import json
from typing import Any

import matplotlib  # type: ignore[import-not-found]  # only in .venv-bench

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # type: ignore[import-not-found]

from benchmarks.charts import cdf
from capacity.paths import CHART, RESULTS_FILE


def draw(results: dict[str, Any]) -> None:
    figure, (latency_axis, cost_axis, local_axis) = plt.subplots(1, 3, figsize=(16, 4.8))
    recs = results["recommendations"]
    rates = [rec["rate_per_s"] for rec in recs]

    latency_axis.plot(
        rates, [r["steady"]["p50_s"] for r in recs], "o-", color="#1f77b4", label="p50, recommended"
    )
    latency_axis.plot(
        rates, [r["steady"]["p99_s"] for r in recs], "s-", color="#d62728", label="p99, recommended"
    )
    latency_axis.plot(
        rates, [r["burst"]["p99_s"] for r in recs], "s--", color="#d62728", alpha=0.5, label="p99, 3x burst"
    )
    defaults = [(r["rate_per_s"], r["defaults"]["p99_s"]) for r in recs]
    latency_axis.plot(
        [rate for rate, _ in defaults],
        [p99 for _, p99 in defaults],
        "x:",
        color="#7f7f7f",
        label="p99, template defaults",
    )
    for rec in recs:
        if not rec["defaults"]["acceptable"]:
            latency_axis.annotate(
                "falls behind",
                (rec["rate_per_s"], rec["defaults"]["p99_s"]),
                fontsize=8,
                color="#7f7f7f",
                textcoords="offset points",
                xytext=(-30, 6),
            )
    latency_axis.set_xscale("log")
    latency_axis.set_yscale("log")
    latency_axis.set_xlabel("guarantees per second")
    latency_axis.set_ylabel("webhook -> confirm (s, log)")
    latency_axis.set_title("AWS path, Flinks at 150 ms per call")
    latency_axis.legend(fontsize=8)
    latency_axis.grid(True, which="both", alpha=0.3)

    for settings, style, color, label in (
        ("steady", "o-", "#2ca02c", "recommended"),
        ("defaults", "x:", "#7f7f7f", "template defaults"),
    ):
        costs = [r[settings]["cost"]["usd_per_million"] for r in recs]
        cost_axis.plot(rates, costs, style, color=color, label=label)
    cost_axis.set_xscale("log")
    cost_axis.set_ylim(bottom=0)
    cost_axis.set_xlabel("guarantees per second")
    cost_axis.set_ylabel("USD per million guarantees, all in")
    cost_axis.set_title("Cost per guarantee")
    cost_axis.legend(fontsize=8)
    cost_axis.grid(True, which="both", alpha=0.3)

    local = results["local_check"]
    if local.get("status") == "measured":
        colors = ["#1f77b4", "#ff7f0e", "#9467bd"]
        for color, (rate, samples) in zip(colors, local["samples"].items(), strict=False):
            xs, ys = cdf(samples["measured_s"])
            local_axis.plot(xs, ys, color=color, label=f"{float(rate):g}/s measured")
            xs, ys = cdf(samples["predicted_s"])
            local_axis.plot(xs, ys, color=color, linestyle="--", label=f"{float(rate):g}/s predicted")
        local_axis.set_xscale("log")
        local_axis.set_xlabel("webhook -> confirm (s, log)")
        local_axis.set_ylabel("fraction of guarantees")
        local_axis.legend(fontsize=8, loc="lower right")
        local_axis.grid(True, which="both", alpha=0.3)
    else:
        local_axis.text(
            0.5, 0.5, "local check not run", ha="center", va="center", transform=local_axis.transAxes
        )
    local_axis.set_title("The model against the local stack")

    figure.tight_layout()
    figure.savefig(CHART, dpi=110)
    plt.close(figure)


def main() -> None:
    draw(json.loads(RESULTS_FILE.read_text()))
    print(f"wrote {CHART}")


if __name__ == "__main__":
    main()
