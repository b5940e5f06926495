"""``make smoke STACK=name`` finds a deployed stack by name, as ``geft-ops --stack`` does: its outputs
from ``describe-stacks``, what it owns from ``list-stack-resources`` (moto's CloudFormation here, which
creates a dashboard but no alarm)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from geft_checks import smoke
from geft_checks.smoke import alarms_quiet, dashboard_exists, forbid_writes
from geft_ops.resources import from_stack

STACK = "geft-smoke-deployed"
TEMPLATE = {
    "Resources": {
        "PipelineDashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": f"{STACK}-pipeline",
                "DashboardBody": json.dumps({"widgets": [{"type": "text", "properties": {"markdown": "x"}}]}),
            },
        }
    },
    "Outputs": {"GuaranteesTableName": {"Value": f"{STACK}-GuaranteesTable"}},
}


@pytest.fixture
def deployed(aws: Any) -> None:
    aws.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))


def test_a_deployed_stack_is_found_by_name_and_read(deployed: None) -> None:
    # GIVEN the stack found by its name, with writes refused
    resources = from_stack(STACK, region="us-east-1", profile=None)
    forbid_writes(resources.session)

    # WHEN the dashboard and alarm checks read what CloudFormation says it owns
    dashboard = dashboard_exists(resources)
    alarms = alarms_quiet(resources)

    # THEN the dashboard is found, and a stack without alarms fails rather than passing vacuously
    assert dashboard.passed, dashboard.saw
    assert dashboard.saw == f"{STACK}-pipeline (1 widgets)"
    assert not alarms.passed
    assert alarms.saw == "the stack owns no alarms"


def test_an_unknown_stack_is_one_line_and_exit_1(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(["--stack", "no-such-stack", "--region", "us-east-1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("geft-check smoke: cannot read stack no-such-stack")
    assert "Traceback" not in error


@pytest.mark.parametrize("arguments", [[], ["--stack", ""], ["--stack", "x", "--local"]])
def test_the_stack_must_be_named_once(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(arguments) == 2
    assert "say where the stack is" in capsys.readouterr().err
