"""Safe deployments and scale knobs in template.yaml: aliases, CodeDeploy, the hook, rules, samconfig.

What SAM generates (versions, aliases, deployment groups, what the stream mapping and schedules
invoke) is read from the transformed template (``sam_rendered``: aws-sam-translator, through
tests/support/sam_render.py); what the parameters choose, from the template as deployed (``deployed``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from testkit.template_render import failed_rules
from tests.support.templates import (
    deployed,
    parameters_for,
    render_failure,
    resources_of,
    sam_rendered,
    samconfig,
)

REPO = Path(__file__).resolve().parents[2]
LIVE_FUNCTIONS = (
    "WebhookReceiverFunction",
    "DecisionProcessorFunction",
    "ReviewTimeoutFunction",
    "ReconcilerFunction",
    "SweeperFunction",
    "AuditTrailFunction",
)
HOOK = "ReceiverPreTrafficHookFunction"


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties", {}))


def version_of(rendered: dict[str, Any], function: str) -> str:
    """The logical id of the one Lambda version SAM publishes for ``function``."""
    (version,) = [
        name
        for name, r in resources_of(rendered, "AWS::Lambda::Version").items()
        if r["Properties"]["FunctionName"] == {"Ref": function}
    ]
    return version


def rollback_alarms(rendered: dict[str, Any], function: str) -> list[Any]:
    group = props(rendered, f"{function}DeploymentGroup")
    return [alarm["Name"] for alarm in group["AlarmConfiguration"]["Alarms"]]


# ------------------------------------------------------------------ aliases and versions


@pytest.mark.parametrize("function", LIVE_FUNCTIONS)
def test_every_function_is_published_behind_a_live_alias(template: dict[str, Any], function: str) -> None:
    properties = props(template, function)

    assert properties["AutoPublishAlias"] == "live"
    # every property change publishes a version, not just a new CodeUri
    assert properties["AutoPublishAliasAllProperties"] is True


def test_shared_code_changes_publish_new_function_versions(template: dict[str, Any]) -> None:
    assert props(template, "SharedLayer")["PublishLambdaVersion"] is True


def test_the_hook_is_not_a_deployed_function_itself(template: dict[str, Any]) -> None:
    # CodeDeploy invokes the hook by name; an alias or a deployment of its own would only add a loop
    assert "AutoPublishAlias" not in props(template, HOOK)
    assert "DeploymentPreference" not in props(template, HOOK)


def test_no_parameter_hides_in_globals(template: dict[str, Any]) -> None:
    # AWS::LanguageExtensions resolves parameters in Resources only; one in Globals would reach SAM as
    # `!Ref X`, and changing X would never publish a version for the live aliases
    globals_text = json.dumps(template["Globals"])
    referenced = set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', globals_text))
    assert referenced & set(template["Parameters"]) == set()
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def test_sam_points_the_stream_mapping_the_schedules_and_the_api_at_the_aliases() -> None:
    rendered = sam_rendered("prod")
    resources = rendered["Resources"]

    mappings = resources_of(rendered, "AWS::Lambda::EventSourceMapping").values()
    assert sorted(str(mapping["Properties"]["FunctionName"]) for mapping in mappings) == sorted(
        str({"Ref": f"{function}Aliaslive"})
        for function in ("DecisionProcessorFunction", "AuditTrailFunction")
    )
    targets = {
        name: rule["Properties"]["Targets"][0]["Arn"]
        for name, rule in resources_of(rendered, "AWS::Events::Rule").items()
    }
    assert targets == {
        "ReviewTimeoutFunctionEveryMinute": {"Ref": "ReviewTimeoutFunctionAliaslive"},
        "ReconcilerFunctionEveryFiveMinutes": {"Ref": "ReconcilerFunctionAliaslive"},
        "SweeperFunctionEveryFiveMinutes": {"Ref": "SweeperFunctionAliaslive"},
    }
    body = resources["WebhookHttpApi"]["Properties"]["Body"]
    integration = body["paths"]["/webhooks/flinks"]["post"]["x-amazon-apigateway-integration"]
    assert "${WebhookReceiverFunctionAliaslive}" in integration["uri"]["Fn::Sub"]
    assert list(body["paths"]["/webhooks/flinks"]) == ["post"]
    permissions = [
        p["Properties"]["FunctionName"] for p in resources_of(rendered, "AWS::Lambda::Permission").values()
    ]
    assert {"Ref": "WebhookReceiverFunction"} not in permissions  # only the aliases may be invoked
    for function in LIVE_FUNCTIONS:
        alias = resources[f"{function}Aliaslive"]
        assert alias["Properties"]["FunctionVersion"] == {
            "Fn::GetAtt": [version_of(rendered, function), "Version"]
        }


def test_a_parameter_change_publishes_a_version_of_the_functions_it_configures() -> None:
    # GIVEN prod, and prod with another decision policy and another allow-list
    policy = json.dumps({"default": "reject", "rules": []})
    before = sam_rendered("prod")
    after = sam_rendered("prod", DecisionPolicy=policy, AllowedSourceCidrs="203.0.113.0/24")

    # THEN the processor and the receiver get new versions (their aliases move), the jobs do not
    changed = {f for f in LIVE_FUNCTIONS if version_of(before, f) != version_of(after, f)}
    assert changed == {"DecisionProcessorFunction", "WebhookReceiverFunction"}


# ------------------------------------------------------------------ CodeDeploy


def test_deployment_types_are_parameters_all_at_once_in_sandbox_canary_in_prod(
    template: dict[str, Any],
) -> None:
    for function, parameter in (
        ("WebhookReceiverFunction", "ReceiverDeploymentType"),
        ("DecisionProcessorFunction", "ProcessorDeploymentType"),
    ):
        assert props(template, function)["DeploymentPreference"]["Type"] == {"Ref": parameter}
        assert props(deployed(template), function)["DeploymentPreference"]["Type"] == "AllAtOnce"
        assert (
            props(deployed(template, "prod"), function)["DeploymentPreference"]["Type"]
            == "Canary10Percent5Minutes"
        )
    for job in ("ReviewTimeoutFunction", "ReconcilerFunction", "SweeperFunction", "AuditTrailFunction"):
        assert props(template, job)["DeploymentPreference"]["Type"] == "AllAtOnce"


def test_sam_builds_one_codedeploy_group_per_function_with_our_role() -> None:
    rendered = sam_rendered("prod")

    groups = resources_of(rendered, "AWS::CodeDeploy::DeploymentGroup")
    assert set(groups) == {f"{function}DeploymentGroup" for function in LIVE_FUNCTIONS}
    for group in groups.values():
        assert group["Properties"]["ServiceRoleArn"] == {"Fn::GetAtt": ["DeploymentRole", "Arn"]}
        assert set(group["Properties"]["AutoRollbackConfiguration"]["Events"]) >= {"DEPLOYMENT_STOP_ON_ALARM"}
    receiver = groups["WebhookReceiverFunctionDeploymentGroup"]["Properties"]["DeploymentConfigName"]
    assert receiver == {
        "Fn::Sub": ["CodeDeployDefault.Lambda${ConfigName}", {"ConfigName": "Canary10Percent5Minutes"}]
    }
    assert "CodeDeployServiceRole" not in rendered["Resources"]  # no managed-policy role from SAM


def test_the_receiver_rolls_back_on_its_errors_the_apis_5xx_and_the_new_versions_errors(
    template: dict[str, Any],
) -> None:
    rendered = sam_rendered("prod")

    assert rollback_alarms(rendered, "WebhookReceiverFunction") == [
        {"Ref": "ReceiverErrorsAlarm"},
        "flinks-geft-prod-api-5xx",  # by name: a Ref would close a dependency cycle
        {"Ref": "ReceiverNewVersionErrorsAlarm"},
    ]
    # the name is the alarm's own
    assert props(template, "Api5xxAlarm")["AlarmName"] == {"Fn::Sub": "${AWS::StackName}-api-5xx"}
    # every other function rolls back on its own errors and its new version's
    for function, prefix in (
        ("DecisionProcessorFunction", "Processor"),
        ("ReviewTimeoutFunction", "ReviewTimeout"),
        ("ReconcilerFunction", "Reconciler"),
        ("SweeperFunction", "Sweeper"),
        ("AuditTrailFunction", "AuditTrail"),
    ):
        assert rollback_alarms(rendered, function) == [
            {"Ref": f"{prefix}ErrorsAlarm"},
            {"Ref": f"{prefix}NewVersionErrorsAlarm"},
        ], function


def test_a_fix_can_be_deployed_while_the_service_alarms_fire(template: dict[str, Any]) -> None:
    # CodeDeploy refuses to start while a rollback alarm is in ALARM: the break-glass keeps only the
    # new version's own errors, which cannot be firing before that version exists
    rendered = deployed(template, "prod", RollbackAlarms="new-version-only")

    alarms = {
        function: props(rendered, function)["DeploymentPreference"]["Alarms"] for function in LIVE_FUNCTIONS
    }
    assert alarms == {
        "WebhookReceiverFunction": [{"Ref": "ReceiverNewVersionErrorsAlarm"}],
        "DecisionProcessorFunction": [{"Ref": "ProcessorNewVersionErrorsAlarm"}],
        "ReviewTimeoutFunction": [{"Ref": "ReviewTimeoutNewVersionErrorsAlarm"}],
        "ReconcilerFunction": [{"Ref": "ReconcilerNewVersionErrorsAlarm"}],
        "SweeperFunction": [{"Ref": "SweeperNewVersionErrorsAlarm"}],
        "AuditTrailFunction": [{"Ref": "AuditTrailNewVersionErrorsAlarm"}],
    }


def test_the_deployment_role_shifts_only_this_stacks_aliases(template: dict[str, Any]) -> None:
    rendered = deployed(template, "prod")
    role = props(rendered, "DeploymentRole")

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "codedeploy.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    by_sid = {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}
    shift = by_sid["ShiftTrafficOnTheLiveAliases"]
    assert set(shift["Action"]) == {
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:GetProvisionedConcurrencyConfig",
    }
    assert shift["Resource"] == [{"Fn::Sub": f"${{{function}.Arn}}:*"} for function in LIVE_FUNCTIONS]
    alarms = by_sid["ReadTheRollbackAlarms"]
    assert alarms["Resource"] == "arn:aws:cloudwatch:ca-central-1:123456789012:alarm:flinks-geft-prod-*"
    assert by_sid["RunThePreTrafficHook"]["Resource"] == {"Fn::GetAtt": [HOOK, "Arn"]}
    assert "RunThePreTrafficHook" not in json.dumps(props(deployed(template), "DeploymentRole"))


# ------------------------------------------------------------------ the pre-traffic hook


@pytest.mark.parametrize(
    ("environment", "setting", "present"),
    [("prod", "auto", True), ("default", "auto", False), ("default", "true", True), ("prod", "false", False)],
)
def test_the_pre_traffic_hook_is_on_by_default_in_prod_only(
    template: dict[str, Any], environment: str, setting: str, present: bool
) -> None:
    rendered = deployed(template, environment, ReceiverPreTrafficHook=setting)

    assert (HOOK in rendered["Resources"]) is present
    hooks = props(rendered, "WebhookReceiverFunction")["DeploymentPreference"]["Hooks"]
    assert hooks == ({"PreTraffic": {"Ref": HOOK}} if present else {})


def test_the_hook_runs_before_any_traffic_moves_and_probes_the_new_version() -> None:
    rendered = sam_rendered("prod")

    update = rendered["Resources"]["WebhookReceiverFunctionAliaslive"]["UpdatePolicy"][
        "CodeDeployLambdaAliasUpdate"
    ]
    assert update["BeforeAllowTrafficHook"] == {"Ref": HOOK}
    environment = props(rendered, HOOK)["Environment"]["Variables"]
    assert environment["TARGET_FUNCTION_ARN"] == {"Ref": version_of(rendered, "WebhookReceiverFunction")}
    assert (
        environment["WEBHOOK_PATH"]
        == props(rendered, "WebhookReceiverFunction")["Environment"]["Variables"]["WEBHOOK_PATH"]
    )
    assert "BeforeAllowTrafficHook" not in json.dumps(sam_rendered("default"))


def test_the_hook_may_invoke_receiver_versions_and_report_nothing_else(template: dict[str, Any]) -> None:
    rendered = deployed(template, "prod")
    (policy,) = props(rendered, "ReceiverPreTrafficHookRole")["Policies"]

    grants = {
        (action, json.dumps(statement["Resource"]))
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert grants == {
        ("lambda:InvokeFunction", json.dumps({"Fn::Sub": "${WebhookReceiverFunction.Arn}:*"})),
        (
            "codedeploy:PutLifecycleEventHookExecutionStatus",
            json.dumps(
                {
                    "Fn::Sub": "arn:aws:codedeploy:ca-central-1:123456789012:deploymentgroup:"
                    "${ServerlessDeploymentApplication}/*"
                }
            ),
        ),
        ("logs:CreateLogStream", json.dumps({"Fn::GetAtt": ["ReceiverPreTrafficHookLogGroup", "Arn"]})),
        ("logs:PutLogEvents", json.dumps({"Fn::GetAtt": ["ReceiverPreTrafficHookLogGroup", "Arn"]})),
        ("xray:PutTraceSegments", '"*"'),
        ("xray:PutTelemetryRecords", '"*"'),
    }


# ------------------------------------------------------------------ scale knobs


def test_stream_parallelization_is_a_bounded_parameter(template: dict[str, Any]) -> None:
    (event,) = props(template, "DecisionProcessorFunction")["Events"].values()
    spec = template["Parameters"]["StreamParallelizationFactor"]

    assert event["Properties"]["ParallelizationFactor"] == {"Ref": "StreamParallelizationFactor"}
    assert (spec["Default"], spec["MinValue"], spec["MaxValue"]) == (1, 1, 10)
    assert "partition key is the session id" in spec["Description"]


@pytest.mark.parametrize(
    ("function", "prefix"),
    [("WebhookReceiverFunction", "Receiver"), ("DecisionProcessorFunction", "Processor")],
)
def test_provisioned_concurrency_and_snapstart_are_off_unless_asked_for(
    template: dict[str, Any], function: str, prefix: str
) -> None:
    assert "ProvisionedConcurrencyConfig" not in props(deployed(template, "prod"), function)
    assert "SnapStart" not in props(deployed(template, "prod"), function)

    with_pc = props(deployed(template, "prod", **{f"{prefix}ProvisionedConcurrency": "4"}), function)
    with_snapstart = props(deployed(template, "prod", **{f"{prefix}SnapStart": "true"}), function)

    assert with_pc["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 4}
    assert with_snapstart["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert template["Globals"]["Function"]["Runtime"] in {
        "python3.12",
        "python3.13",
        "python3.14",
    }  # SnapStart's


@pytest.mark.parametrize("prefix", ["Receiver", "Processor"])
def test_snapstart_and_provisioned_concurrency_exclude_each_other(
    template: dict[str, Any], prefix: str
) -> None:
    both = {f"{prefix}SnapStart": "true", f"{prefix}ProvisionedConcurrency": "2"}

    broken = failed_rules(template, parameters_for(template, "prod", **both))

    assert broken == [
        f"{prefix}SnapStartExcludesProvisionedConcurrency: Lambda cannot combine SnapStart and provisioned "
        f"concurrency; choose one for the {prefix.lower()}."
    ]


def test_the_renderer_refuses_a_combination_cloudformation_would_refuse() -> None:
    completed = render_failure("prod", ReceiverSnapStart="true", ReceiverProvisionedConcurrency="2")

    assert completed.returncode == 2
    assert "ReceiverSnapStartExcludesProvisionedConcurrency" in completed.stderr


def test_snapstart_publishes_a_new_version_when_switched_on() -> None:
    before = sam_rendered("prod")
    after = sam_rendered("prod", ReceiverSnapStart="true")

    assert version_of(before, "WebhookReceiverFunction") != version_of(after, "WebhookReceiverFunction")
    assert props(after, "WebhookReceiverFunction")["SnapStart"] == {"ApplyOn": "PublishedVersions"}


# ------------------------------------------------------------------ logs in prod


def test_prod_keeps_its_logs_for_a_year_and_beyond_the_stack(template: dict[str, Any]) -> None:
    prod, sandbox = deployed(template, "prod"), deployed(template)

    for name, group in resources_of(prod, "AWS::Logs::LogGroup").items():
        assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain"), name
        assert group["Properties"]["RetentionInDays"] >= 365, name
    for name, group in resources_of(sandbox, "AWS::Logs::LogGroup").items():
        assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Delete", "Delete"), name
    assert failed_rules(template, parameters_for(template, "prod", LogRetentionDays="90")) == [
        "ProdKeepsLogsAYear: prod keeps its logs at least a year (LogRetentionDays 365 or more)."
    ]


# ------------------------------------------------------------------ samconfig


def test_prod_pins_its_region_and_sandbox_does_not() -> None:
    config = samconfig()

    assert config["prod"]["global"]["parameters"]["region"] == "ca-central-1"
    assert "region" not in config["default"]["global"]["parameters"]


def test_sync_is_for_the_sandbox_only() -> None:
    config = samconfig()

    sync = config["default"]["sync"]["parameters"]
    assert sync["watch"] is True
    assert sync["capabilities"] == config["default"]["deploy"]["parameters"]["capabilities"]
    assert sync["parameter_overrides"] == config["default"]["deploy"]["parameters"]["parameter_overrides"]
    assert "sync" not in config["prod"]  # sam sync skips change sets and CodeDeploy


def test_local_invoke_env_vars_name_only_variables_the_template_gives(template: dict[str, Any]) -> None:
    # GIVEN the env-vars file `sam local invoke` reads (it ignores names a function does not declare)
    env_vars_file = samconfig()["default"]["local_invoke"]["parameters"]["env_vars"]
    overrides = json.loads((REPO / env_vars_file).read_text())
    declared_globally = set(template["Globals"]["Function"]["Environment"]["Variables"])

    # THEN every function has an entry, and every entry is a variable that function declares
    functions = {
        name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(overrides) == functions
    for function, variables in overrides.items():
        declared = declared_globally | set(props(template, function)["Environment"]["Variables"])
        assert set(variables) <= declared, function
