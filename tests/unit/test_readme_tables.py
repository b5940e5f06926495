"""README's configuration and alarm tables name everything the template declares (docs that cannot lie)."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.test_template import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_every_template_parameter_is_in_the_configuration_table(template: dict[str, Any]) -> None:
    table = _section("Configuration")

    missing = [name for name in template["Parameters"] if f"`{name}`" not in table]

    assert missing == []


def test_every_alarm_is_in_the_operations_table(template: dict[str, Any]) -> None:
    rows = [line for line in _section("Operations").splitlines() if line.startswith("| ")]
    named = {name for row in rows for name in re.findall(r"[A-Z][A-Za-z0-9]+", row.split("|")[1])}
    runbooks = {name.lower() for name in named}

    # a row names the alarm, or the runbook section it shares with others ("…NewVersionErrors")
    missing = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and logical_id.removesuffix("Alarm") not in named
        and _runbook(resource) not in runbooks
    ]

    assert missing == []


def _runbook(alarm: dict[str, Any]) -> str | None:
    found = re.search(r"docs/operations\.md#([a-z0-9-]+)", str(alarm["Properties"]["AlarmDescription"]))
    return found.group(1) if found else None
