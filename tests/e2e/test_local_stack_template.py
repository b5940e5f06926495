"""The running local stack is what SAM's transform makes of template.yaml, as `make validate` renders it.

Each function's container runs with the handler, runtime, timeout, memory, code, layers and environment
the rendered CloudFormation gives its ``AWS::Lambda::Function`` (tests/support/sam_render.py's rendering:
S3 keys `sam package` would upload, so code and layer folders are read back from the key), and what a
false condition leaves out is absent from the stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from geft_local.stack import FLINKS_BASE_URL_VARIABLE, OPS_CLI_TARGET_VARIABLE, LocalStack

from testkit.sam_transform import transformed
from testkit.template import REPO_ROOT, load_template, resolve, resources_of_type
from tests.e2e.conftest import StartStack
from tests.support.sam_render import digest_artifact

# What the local stack sets on purpose (its own sandbox, its own CLI), not what the template says.
LOCAL_VARIABLES = {FLINKS_BASE_URL_VARIABLE, OPS_CLI_TARGET_VARIABLE}


@pytest.fixture(scope="module")
def stack(start_stack: StartStack) -> LocalStack:
    """Its own stack name: moto's backends outlive a module's stack (conftest's docstring)."""
    return start_stack("template-reading")


def rendered(stack: LocalStack) -> dict[str, Any]:
    """The stack's parameters rendered as `make validate` renders prod (digest S3 keys)."""
    return transformed(
        load_template(),
        stack.parameters,
        stack_name=stack.config.stack_name,
        template_dir=REPO_ROOT,
        artifact_uri=digest_artifact,
    )


def folder(s3_location: dict[str, str]) -> Path:
    """The code folder of ``sam-render-artifacts/<folder>/<digest>``."""
    return (REPO_ROOT / s3_location["S3Key"].rsplit("/", 1)[0]).resolve()


def test_every_function_runs_with_the_configuration_the_rendered_cloudformation_gives_it(
    stack: LocalStack,
) -> None:
    template = rendered(stack)
    functions = resources_of_type(template, "AWS::Lambda::Function")
    assert set(stack.workers) == set(functions)
    for logical_id, function in functions.items():
        properties = function["Properties"]
        spec = stack.workers[logical_id].spec
        assert spec.handler == properties["Handler"]
        assert spec.runtime == properties["Runtime"]
        assert spec.timeout_s == properties["Timeout"]
        assert spec.memory_mb == properties["MemorySize"]
        assert spec.code_uri == folder(properties["Code"])
        layers = [
            template["Resources"][layer["Ref"]]["Properties"]["Content"] for layer in properties["Layers"]
        ]
        assert spec.layer_paths == tuple(folder(content) for content in layers)
        variables = properties["Environment"]["Variables"]
        expected = {
            name: resolve(value, stack.created, stack.parameters) for name, value in variables.items()
        }
        assert {k: v for k, v in spec.environment.items() if k not in LOCAL_VARIABLES} == {
            k: v for k, v in expected.items() if k not in LOCAL_VARIABLES
        }


def test_what_a_false_condition_leaves_out_is_not_in_the_local_stack(stack: LocalStack) -> None:
    assert stack.parameters["ReceiverPreTrafficHook"] == "auto"
    assert (
        stack.parameters["Environment"] != "prod"
    )  # so HasPreTrafficHook and CreatesEncryptionKey are false
    listed = {row.logical_id for row in stack.stack_resources()}

    assert "ReceiverPreTrafficHookFunction" not in stack.workers
    assert not {"ReceiverPreTrafficHookFunction", "ReceiverPreTrafficHookRole", "EncryptionKey"} & listed
    # what the stack does deploy is listed under the logical ids SAM gives it
    assert {"DecisionProcessorFunctionAliaslive", "DecisionProcessorFunctionGuaranteeStream"} <= listed
