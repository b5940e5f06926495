"""Reading the CloudWatch embedded-metric-format documents a function printed (Powertools' EMF)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricDatum:
    """One metric of one EMF document: its values and the dimensions they are recorded under."""

    name: str
    unit: str
    values: tuple[float, ...]
    dimensions: dict[str, str]


def metric_data(output: str) -> Iterator[MetricDatum]:
    """Every metric in the EMF documents among ``output``'s lines (other lines are skipped)."""
    for line in output.splitlines():
        document = _json_object(line)
        if document is None:
            continue
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            names = {name for group in directive.get("Dimensions", []) for name in group}
            dimensions = {name: str(document[name]) for name in names if name in document}
            for metric in directive.get("Metrics", []):
                value = document.get(metric["Name"], [])
                values = [float(v) for v in (value if isinstance(value, list) else [value])]
                yield MetricDatum(metric["Name"], metric.get("Unit", ""), tuple(values), dimensions)


def metric_values(output: str, name: str, **dimensions: str) -> list[float]:
    """Every value of metric ``name`` recorded with at least these dimensions."""
    return [
        value
        for datum in metric_data(output)
        if datum.name == name and dimensions.items() <= datum.dimensions.items()
        for value in datum.values
    ]


def metric_names(output: str) -> set[str]:
    return {datum.name for datum in metric_data(output)}


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
