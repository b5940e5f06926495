"""template.yaml as deployed: with a samconfig environment's parameters, resolved, or through SAM itself.

``deployed`` is pure (what AWS::LanguageExtensions resolves before SAM: parameters, conditions);
``sam_rendered`` runs tests/support/sam_render.py (the command `make validate` runs), the SAM transform
included, for what SAM generates (aliases, versions, deployment groups, event source mappings).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from testkit.template import parameter_values
from testkit.template_render import failed_rules, resolve_known

REPO = Path(__file__).resolve().parents[2]
PSEUDO = {"AWS::Region": "ca-central-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
# Customer managed keys an operator could bring (obviously fake ARNs).
OPERATOR_KEYS = {
    name: "arn:aws:kms:ca-central-1:123456789012:key/" + "-".join(digit * n for n in (8, 4, 4, 4, 12))
    for name, digit in (
        ("TableKmsKeyArn", "1"),
        ("SecretsKmsKeyArn", "2"),
        ("QueueKmsKeyArn", "3"),
        ("AlarmTopicKmsKeyArn", "4"),
        ("LogsKmsKeyArn", "5"),
    )
}


def samconfig() -> dict[str, Any]:
    return tomllib.loads((REPO / "samconfig.toml").read_text())


def deploy_overrides(environment: str) -> dict[str, str]:
    overrides = samconfig()[environment]["deploy"]["parameters"]["parameter_overrides"]
    return dict(entry.split("=", 1) for entry in overrides)


def parameters_for(
    template: dict[str, Any], environment: str = "default", **overrides: str
) -> dict[str, str]:
    return parameter_values(template, deploy_overrides(environment) | overrides)


def deployed(template: dict[str, Any], environment: str = "default", **overrides: str) -> dict[str, Any]:
    """The template for a samconfig environment (plus overrides), as CloudFormation hands it to SAM."""
    parameters = parameters_for(template, environment, **overrides)
    assert failed_rules(template, parameters) == []
    return resolve_known(template, parameters, PSEUDO | {"AWS::StackName": f"flinks-geft-{environment}"})


def sam_rendered(config_env: str = "default", **overrides: str) -> dict[str, Any]:
    """The transformed CloudFormation template (SAM applied) for ``config_env`` plus ``overrides``."""
    return json.loads(_render(config_env, tuple(sorted(overrides.items()))))


@functools.cache
def _render(config_env: str, overrides: tuple[tuple[str, str], ...]) -> str:
    completed = _run(config_env, overrides)
    if completed.returncode != 0:
        raise AssertionError(f"sam_render failed ({completed.returncode}): {completed.stderr}")
    return completed.stdout


def render_failure(config_env: str = "default", **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run the renderer where it should refuse (a template rule): the completed process."""
    return _run(config_env, tuple(sorted(overrides.items())))


def _run(config_env: str, overrides: tuple[tuple[str, str], ...]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "tests/support/sam_render.py", "--config-env", config_env]
    for name, value in overrides:
        command += ["--set", f"{name}={value}"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}
