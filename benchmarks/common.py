"""What every benchmark shares: the machine, summary statistics, function environments."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.paths import REPO
from testkit.aws import FAKE_AWS_ENVIRONMENT

STACK_NAME = "geft-bench"
BENCH_SECRET = "bench-webhook-secret"
# Flinks latency per call for the headline figures: a call from AWS to Flinks; 50 ms is optimistic.
HEADLINE_FLINKS_MS = 150
# Where the receiver's CodeUri and layer land, as pytest's pythonpath mirrors them.
RECEIVER_PATH = [REPO / "functions" / "webhook_receiver", REPO / "layers" / "shared"]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in 0..100."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded all the way down a JSON-like tree (results stay readable in diffs)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, Mapping):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def function_env(logical_id: str, refs: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """The environment the template gives a function (Globals + its own, parameter defaults), with
    ``refs`` standing in for the physical ids of the template's resources."""
    from testkit.template import CreatedResources, Deployment, load_template

    deployment = Deployment.of(load_template(), stack_name=STACK_NAME)
    deployment.created = CreatedResources(refs=dict(refs))
    return deployment.environment(logical_id, **overrides)


def template_memory_mb(logical_id: str) -> int:
    from testkit.template import load_template

    properties = load_template()["Resources"][logical_id]["Properties"]
    return int(properties.get("MemorySize", 128))


def child_env(paths: Sequence[Path], environment: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a child interpreter: no inherited PYTHON* or AWS_* surprises."""
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TZ")}
    return {
        **keep,
        **FAKE_AWS_ENVIRONMENT,  # nothing here may ever reach AWS
        **environment,
        "PYTHONPATH": os.pathsep.join(str(path) for path in paths),
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONHASHSEED": "0",
    }
