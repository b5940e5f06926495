"""Items 1 and 2: the receiver's cold start and warm path against a bare baseline handler.

Both run in fresh child interpreters (``receiver_child.py``) with AWS stubbed in-process by
``aws_stub`` at the same, near-zero cost for both handlers; cold starts alternate between the two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_SECRET, RECEIVER_PATH, STACK_NAME, child_env, function_env, summary
from benchmarks.paths import BENCH_DIR, REPO

CHILD = BENCH_DIR / "receiver_child.py"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{STACK_NAME}/WebhookSecret-AbCdEf"
# The receiver's runtime path (this directory, for aws_stub and baseline_handler, is sys.path[0]) and the
# repository's root for testkit's Lambda context (stdlib only).
CHILD_PATH = [*RECEIVER_PATH, REPO]


def _environment() -> dict[str, str]:
    env = function_env(
        "WebhookReceiverFunction",
        {"GuaranteesTable": f"{STACK_NAME}-GuaranteesTable", "WebhookSecret": SECRET_ARN},
    )
    env["BASELINE_WEBHOOK_SECRET"] = BENCH_SECRET
    return child_env(CHILD_PATH, env)


def _event_file(directory: Path) -> Path:
    """The committed guarantee event (events/webhook-guarantee.json), dated now and signed."""
    from testkit.webhooks import load_event, webhook_event

    document = json.loads(load_event("webhook-guarantee.json")["body"])
    document["when"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = webhook_event(json.dumps(document, separators=(",", ":")).encode(), secret=BENCH_SECRET)
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    return path


def _run_cold(variant: str, env: dict[str, str], event_file: Path, directory: Path) -> dict[str, Any]:
    result_file = directory / f"cold-{variant}.json"
    spawned_at = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on Linux
    subprocess.run(
        [sys.executable, str(CHILD), "cold", variant, str(event_file), str(result_file), repr(spawned_at)],
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(result_file.read_text())
    if result["statuses"] != [200, 200]:
        raise RuntimeError(f"{variant} answered {result['statuses']} in the cold-start run")
    return result


def import_profile(variant: str, env: dict[str, str], event_file: Path, directory: Path) -> dict[str, Any]:
    """One cold start under ``-X importtime``: what the import and the first request load, and cost."""
    result_file = directory / f"importtime-{variant}.json"
    arguments = ["cold", variant, str(event_file), str(result_file), "0"]
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", str(CHILD), *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
        timeout=60,
    )
    return parse_importtime(completed.stderr)


def parse_importtime(text: str) -> dict[str, Any]:
    """Top-level imports (as the code asked for them) by cumulative time, and modules by self time."""
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_part, cumulative_part, raw_name = line.split("|", 2)
        entries.append(
            {
                "module": raw_name.strip(),
                "self_ms": int(self_part.split(":", 1)[1]) / 1000,
                "cumulative_ms": int(cumulative_part) / 1000,
                "depth": (len(raw_name) - len(raw_name.lstrip(" ")) - 1) // 2,
            }
        )
    top_level = [entry for entry in entries if entry["depth"] == 0]
    # Startup imports (site, encodings...) and the harness's own are not the handler's cost.
    harness = {"site", "encodings", "aws_stub", "json", "importlib", "os", "sys"}
    handler_top = [
        entry
        for entry in top_level
        if entry["module"] not in harness and not entry["module"].startswith(("encodings", "_"))
    ]
    by_package: dict[str, float] = {}
    for entry in entries:
        package = entry["module"].split(".", 1)[0]
        by_package[package] = by_package.get(package, 0.0) + entry["self_ms"]
    return {
        "total_ms": sum(entry["cumulative_ms"] for entry in handler_top),
        "modules": len(entries),
        "top_level": sorted(handler_top, key=lambda entry: -entry["cumulative_ms"])[:12],
        "by_package": dict(sorted(by_package.items(), key=lambda item: -item[1])[:12]),
    }


def cold_start(rounds: int) -> dict[str, Any]:
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="geft-bench-") as name:
        directory = Path(name)
        event_file = _event_file(directory)
        for variant in ("receiver", "baseline"):  # compile and cache .pyc files outside the measurement
            _run_cold(variant, env, event_file, directory)
        runs: dict[str, list[dict[str, Any]]] = {"receiver": [], "baseline": []}
        for round_number in range(rounds):
            order = ("receiver", "baseline") if round_number % 2 == 0 else ("baseline", "receiver")
            for variant in order:
                runs[variant].append(_run_cold(variant, env, event_file, directory))
        profiles = {variant: import_profile(variant, env, event_file, directory) for variant in runs}
    metrics = (
        "spawn_to_first_response_ms",
        "init_and_first_ms",
        "import_ms",
        "first_invoke_ms",
        "interpreter_ms",
        "second_invoke_ms",
    )
    summaries = {
        variant: {metric: summary([run[metric] for run in variant_runs]) for metric in metrics}
        for variant, variant_runs in runs.items()
    }
    receiver_last = runs["receiver"][-1]
    return {
        "rounds": rounds,
        "summary": summaries,
        "ratio_p50": {
            metric: summaries["receiver"][metric]["p50"] / summaries["baseline"][metric]["p50"]
            for metric in ("spawn_to_first_response_ms", "init_and_first_ms")
        },
        "heavy_modules_loaded_after_first_request": receiver_last["heavy_modules_loaded"],
        "modules_loaded": {
            variant: variant_runs[-1]["modules_loaded"] for variant, variant_runs in runs.items()
        },
        "aws_calls_first_two_requests": {
            variant: variant_runs[-1]["aws_calls"] for variant, variant_runs in runs.items()
        },
        "importtime": profiles,
        "samples": {
            variant: [run["init_and_first_ms"] for run in variant_runs]
            for variant, variant_runs in runs.items()
        },
    }


def warm_path(requests: int) -> dict[str, Any]:
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="geft-bench-") as name:
        directory = Path(name)
        event_file = _event_file(directory)
        result_file = directory / "warm.json"
        subprocess.run(
            [sys.executable, str(CHILD), "warm", "both", str(event_file), str(result_file), str(requests)],
            env=env,
            stdout=subprocess.DEVNULL,  # the receiver's log lines and EMF metrics are still written
            check=True,
            timeout=600,
        )
        result: dict[str, Any] = json.loads(result_file.read_text())
    if result["statuses"] != {"receiver": [200], "baseline": [200]}:
        raise RuntimeError(f"unexpected statuses in the warm run: {result['statuses']}")
    timings = result["timings_ms"]
    summaries = {variant: summary(values) for variant, values in timings.items()}
    return {
        "requests": requests,
        "summary": summaries,
        "ratio": {
            quantile: summaries["receiver"][quantile] / summaries["baseline"][quantile]
            for quantile in ("p50", "p90", "p99")
        },
        "aws_calls": result["aws_calls"],
        "heavy_modules_loaded": result["heavy_modules_loaded"],
        "samples": timings,
    }
