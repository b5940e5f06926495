"""testkit.sam_transform: the template as SAM's own transform deploys it, which the local stack runs.

The old reading merged Globals itself and took ``Layers`` from the function or from Globals; SAM joins
both lists (Globals first). These tests hold the local stack's function configuration to SAM's.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

import pytest
from geft_local.workers import function_spec

from testkit import sam_transform
from testkit.template import REPO_ROOT, Deployment, DeploymentError, resources_of_type

FUNCTION = "DecisionProcessorFunction"


def spec_of(deployment: Deployment, logical_id: str) -> Any:
    return function_spec(
        deployment.template,
        logical_id,
        function_name=deployment.function_name(logical_id),
        environment={},
        template_dir=REPO_ROOT,
    )


def test_a_function_gets_the_globals_layers_and_its_own_as_sam_joins_them(template: dict[str, Any]) -> None:
    # GIVEN a variant where Globals names the shared layer and the function names a second one
    variant = copy.deepcopy(template)
    variant["Resources"]["ExtraLayer"] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {"ContentUri": "policies/", "CompatibleRuntimes": ["python3.13"]},
    }
    variant["Resources"][FUNCTION]["Properties"]["Layers"] = [{"Ref": "ExtraLayer"}]
    assert variant["Globals"]["Function"]["Layers"] == [{"Ref": "SharedLayer"}]

    # WHEN the local stack reads the function from the deployment
    deployment = Deployment.of(variant, stack_name="geft-test")
    spec = spec_of(deployment, FUNCTION)

    # THEN its container gets both layers, Globals' first (the old merge took the function's alone)
    assert spec.layer_paths == ((REPO_ROOT / "layers/shared").resolve(), (REPO_ROOT / "policies").resolve())
    # and a function that names none keeps the Globals layer
    assert spec_of(deployment, "WebhookReceiverFunction").layer_paths == (
        (REPO_ROOT / "layers/shared").resolve(),
    )


def test_a_function_reads_globals_and_its_own_settings_as_sam_generated_them(
    template: dict[str, Any],
) -> None:
    deployment = Deployment.of(template, stack_name="geft-test")
    for logical_id in resources_of_type(deployment.template, "AWS::Lambda::Function"):
        properties = template["Resources"][logical_id]["Properties"]
        spec = spec_of(deployment, logical_id)
        assert spec.runtime == template["Globals"]["Function"]["Runtime"]
        assert spec.handler == properties["Handler"]
        assert spec.code_uri == (REPO_ROOT / properties["CodeUri"]).resolve()
        # Globals' variables and the function's own, both (SAM merges the maps)
        variables = deployment.function(logical_id)["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == "flinks-geft"
        assert variables["TABLE_NAME"] == {"Ref": "GuaranteesTable"}
        assert set(properties.get("Environment", {}).get("Variables", {})) <= set(variables)


def test_a_resource_whose_condition_is_false_is_not_deployed(template: dict[str, Any]) -> None:
    hook = "ReceiverPreTrafficHookFunction"
    default = Deployment.of(template, stack_name="geft-test").template["Resources"]
    with_hook = Deployment.of(template, {"ReceiverPreTrafficHook": "true"}, stack_name="geft-test").template

    assert hook not in default
    assert "EncryptionKey" not in default
    assert with_hook["Resources"][hook]["Type"] == "AWS::Lambda::Function"
    assert not [name for name, resource in default.items() if "Condition" in resource]


def test_the_transform_runs_once_per_parameter_set(template: dict[str, Any]) -> None:
    sam_transform._transformed.cache_clear()
    first = Deployment.of(template, {"StreamBatchSize": "7"}, stack_name="geft-test")
    first.template["Resources"].clear()  # a caller's copy: the cache keeps its own
    again = Deployment.of(template, {"StreamBatchSize": "7"}, stack_name="geft-test")
    other = Deployment.of(template, {"StreamBatchSize": "8"}, stack_name="geft-test")

    info = sam_transform._transformed.cache_info()
    assert (info.misses, info.hits) == (2, 1)
    mapping = "DecisionProcessorFunctionGuaranteeStream"
    assert again.template["Resources"][mapping]["Properties"]["BatchSize"] == 7
    assert other.template["Resources"][mapping]["Properties"]["BatchSize"] == 8


def test_parameters_a_rule_refuses_are_a_deployment_error(template: dict[str, Any]) -> None:
    with pytest.raises(DeploymentError, match="ReceiverSnapStartExcludesProvisionedConcurrency"):
        Deployment.of(
            template,
            {"ReceiverSnapStart": "true", "ReceiverProvisionedConcurrency": "2"},
            stack_name="geft-test",
        )


@pytest.mark.parametrize("profile", ["", "no-such-profile"], ids=["empty, as make sets it", "unknown"])
def test_the_transform_reads_no_aws_profile(profile: str) -> None:
    # GIVEN a fresh interpreter (the tests' shared botocore session would hide a profile lookup) whose
    # AWS_PROFILE names no profile this machine has: make bench failed on the empty one at its start
    environment = {**os.environ, "AWS_PROFILE": profile, "PYTHONPATH": str(REPO_ROOT)}

    # WHEN it deploys the template as the local stack and the benchmarks do
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from testkit.template import Deployment, load_template\n"
            "print(Deployment.of(load_template(), stack_name='geft-profile').template['Resources']"
            f"[{FUNCTION!r}]['Type'])",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # THEN SAM's translator ran without asking for the profile
    assert (child.returncode, child.stdout.strip()) == (0, "AWS::Lambda::Function"), child.stderr[-2000:]
