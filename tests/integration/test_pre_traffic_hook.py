"""The receiver's pre-traffic hook under moto: its probe against the real receiver, and its AWS calls.

moto's Lambda never runs code, so the probe's target is the receiver handler run in this process (a
stand-in for the new version: ``ReceiverInProcess``); the Lambda adapter is checked against moto (the
call and the qualified ARN), the CodeDeploy adapter against a CodeDeploy endpoint on 127.0.0.1 (moto
has no PutLifecycleEventHookExecutionStatus).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from deploy_hooks import pre_traffic
from deploy_hooks.adapters import CodeDeployReporter, LambdaInvoker
from deploy_hooks.config import PreTrafficHookConfig
from deploy_hooks.probe import InvocationOutcome
from moto import mock_aws

from testkit.http import Answer, RecordingServer, Request
from testkit.lambda_context import LambdaContext
from testkit.template import CreatedResources
from testkit.webhooks import load_event
from tests.support.templates import deployed

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
VERSION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:geft-local-WebhookReceiverFunction:7"


class ReceiverInProcess:
    """Invokes the receiver handler in this process, as Lambda would invoke the new version."""

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke
        self.invoked: list[str] = []

    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome:
        self.invoked.append(function_arn)
        return InvocationOutcome(payload=self._invoke(json.loads(json.dumps(event))))


class FailingInvoker:
    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome:
        self.calls += 1
        error = {"Error": {"Code": "ServiceException", "Message": "Lambda is unavailable"}}
        raise ClientError(error, "Invoke")


def hook_config(template: dict[str, Any], **overrides: str) -> Callable[[], PreTrafficHookConfig]:
    """The hook's configuration as prod's template gives it (the version ARN is CloudFormation's)."""
    variables = deployed(template, "prod", **overrides)["Resources"]["ReceiverPreTrafficHookFunction"]
    environment = {**variables["Properties"]["Environment"]["Variables"], "TARGET_FUNCTION_ARN": VERSION_ARN}
    return lambda: PreTrafficHookConfig.from_env({k: str(v) for k, v in environment.items()})


@pytest.fixture
def receiver_version(invoke_receiver: Invoke) -> ReceiverInProcess:
    return ReceiverInProcess(invoke_receiver)


def no_sleep(seconds: float) -> None:
    """The probe's pause between attempts, skipped."""


# ------------------------------------------------------------------ the probe against the receiver


def test_a_healthy_version_passes_and_nothing_is_stored(
    template: dict[str, Any], receiver_version: ReceiverInProcess, table_items: Items
) -> None:
    verdict = pre_traffic.run_probe(hook_config(template), receiver_version, sleep=no_sleep)

    assert verdict.succeeded is True, verdict.reason
    assert receiver_version.invoked == [VERSION_ARN]
    assert table_items() == []


def test_a_version_that_cannot_read_its_secret_fails_after_a_second_try(
    aws: Any, stack: CreatedResources, template: dict[str, Any], receiver_version: ReceiverInProcess
) -> None:
    # GIVEN a new version whose secret cannot be read (a lost permission looks the same)
    aws.client("secretsmanager").delete_secret(
        SecretId=stack.ref("WebhookSecret"), ForceDeleteWithoutRecovery=True
    )

    verdict = pre_traffic.run_probe(hook_config(template), receiver_version, sleep=no_sleep)

    assert verdict.succeeded is False
    assert "cannot read its secret" in verdict.reason
    assert len(receiver_version.invoked) == 2  # a 503 may be transient: tried once more


def test_with_an_allow_list_the_probe_claims_an_admitted_source(
    template: dict[str, Any],
    function_env: Callable[..., dict[str, str]],
    receiver_version: ReceiverInProcess,
) -> None:
    # GIVEN a receiver that only admits Flinks' networks, configured like the hook from one parameter
    from webhook_receiver import handler

    cidrs = "198.51.100.0/24,203.0.113.16/28"
    function_env("WebhookReceiverFunction", ALLOWED_SOURCE_CIDRS=cidrs)
    handler._dependencies.cache_clear()

    # WHEN the hook probes it
    verdict = pre_traffic.run_probe(hook_config(template, AllowedSourceCidrs=cidrs), receiver_version)

    # THEN the probe got past the allow-list to the signature check
    assert verdict.succeeded is True, verdict.reason


def test_a_probe_source_the_allow_list_refuses_fails_at_once(
    template: dict[str, Any],
    function_env: Callable[..., dict[str, str]],
    receiver_version: ReceiverInProcess,
) -> None:
    from webhook_receiver import handler

    function_env("WebhookReceiverFunction", ALLOWED_SOURCE_CIDRS="198.51.100.0/24")
    handler._dependencies.cache_clear()

    verdict = pre_traffic.run_probe(hook_config(template), receiver_version, sleep=no_sleep)

    assert verdict.succeeded is False
    assert "allow-list" in verdict.reason
    assert len(receiver_version.invoked) == 1  # a 403 is configuration: trying again cannot help


def test_a_failed_invoke_fails_the_deployment(template: dict[str, Any]) -> None:
    invoker = FailingInvoker()

    verdict = pre_traffic.run_probe(hook_config(template), invoker, sleep=no_sleep)

    assert verdict.succeeded is False
    assert "could not be invoked" in verdict.reason
    assert invoker.calls == 2


def test_a_misconfigured_hook_fails_without_probing(receiver_version: ReceiverInProcess) -> None:
    def broken() -> PreTrafficHookConfig:
        return PreTrafficHookConfig.from_env({"TARGET_FUNCTION_ARN": "receiver", "PROBE_SOURCE_IP": "here"})

    verdict = pre_traffic.run_probe(broken, receiver_version)

    assert verdict.succeeded is False
    assert "TARGET_FUNCTION_ARN must be a qualified function ARN" in verdict.reason
    assert "PROBE_SOURCE_IP must be an IP address" in verdict.reason
    assert receiver_version.invoked == []


# ------------------------------------------------------------------ the adapters


def test_the_lambda_adapter_invokes_the_qualified_version_under_moto() -> None:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        # GIVEN a function with a published version (moto answers an invoke with its payload)
        role = boto3.client("iam").create_role(RoleName="receiver", AssumeRolePolicyDocument="{}")["Role"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handle(event, context):\n    return event\n")
        client = boto3.client("lambda")
        client.create_function(
            FunctionName="receiver",
            Runtime="python3.13",
            Role=role["Arn"],
            Handler="handler.handle",
            Code={"ZipFile": code.getvalue()},
        )
        version_arn = client.publish_version(FunctionName="receiver")["FunctionArn"]

        # WHEN the adapter invokes that version
        outcome = LambdaInvoker(client).invoke(version_arn, {"probe": True})

    # THEN it sent the event to the version and parsed the JSON answer
    assert version_arn.endswith(":receiver:1")
    assert outcome == InvocationOutcome(payload={"probe": True}, function_error=None)


def _codedeploy_answer(request: Request) -> Answer:
    """CodeDeploy's answer to PutLifecycleEventHookExecutionStatus (JSON 1.1, as the SDK speaks it)."""
    execution = json.loads(request.body)["lifecycleEventHookExecutionId"]
    body = json.dumps({"lifecycleEventHookExecutionId": execution}).encode()
    return Answer(200, body, (("Content-Type", "application/x-amz-json-1.1"),))


@pytest.fixture
def codedeploy() -> Iterator[RecordingServer]:
    """A CodeDeploy endpoint on 127.0.0.1 that records each call."""
    with RecordingServer(_codedeploy_answer) as server:
        yield server


def codedeploy_calls(server: RecordingServer) -> list[tuple[str, dict[str, Any]]]:
    return [(request.headers["x-amz-target"], json.loads(request.body)) for request in server.requests]


def codedeploy_client(server: RecordingServer) -> Any:
    return boto3.client("codedeploy", endpoint_url=server.url, region_name="us-east-1")


@pytest.mark.parametrize(("succeeded", "status"), [(True, "Succeeded"), (False, "Failed")])
def test_the_codedeploy_adapter_reports_the_verdict(
    codedeploy: RecordingServer, succeeded: bool, status: str
) -> None:
    CodeDeployReporter(codedeploy_client(codedeploy)).report(
        deployment_id="d-EXAMPLE123", execution_id="execution-1", succeeded=succeeded
    )

    assert codedeploy_calls(codedeploy) == [
        (
            "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
            {
                "deploymentId": "d-EXAMPLE123",
                "lifecycleEventHookExecutionId": "execution-1",
                "status": status,
            },
        )
    ]


# ------------------------------------------------------------------ the handler, with the committed event


@pytest.fixture
def hook_environment(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook's environment as prod's template sets it (the version ARN is CloudFormation's)."""
    variables = deployed(template, "prod")["Resources"]["ReceiverPreTrafficHookFunction"]["Properties"]
    for name, value in variables["Environment"]["Variables"].items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("TARGET_FUNCTION_ARN", VERSION_ARN)


def test_the_handler_probes_then_reports_succeeded_for_the_committed_event(
    hook_environment: None,
    receiver_version: ReceiverInProcess,
    codedeploy: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the event CodeDeploy sends (events/codedeploy-pre-traffic.json, as `sam local invoke -e`)
    event = load_event("codedeploy-pre-traffic.json")
    monkeypatch.setattr(
        pre_traffic,
        "_dependencies",
        lambda: (receiver_version, CodeDeployReporter(codedeploy_client(codedeploy))),
    )

    # WHEN the hook runs
    result = pre_traffic.lambda_handler(event, LambdaContext())

    # THEN it probed the version and told CodeDeploy to go on
    assert result["status"] == "Succeeded"
    assert receiver_version.invoked == [VERSION_ARN]
    [(_, report)] = codedeploy_calls(codedeploy)
    assert report == {
        "deploymentId": event["DeploymentId"],
        "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
        "status": "Succeeded",
    }


def test_the_handler_reports_failed_even_when_the_probe_itself_breaks(
    hook_environment: None, codedeploy: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Exploding:
        def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome:
            raise RuntimeError("a bug in the hook")

    monkeypatch.setattr(
        pre_traffic, "_dependencies", lambda: (Exploding(), CodeDeployReporter(codedeploy_client(codedeploy)))
    )

    result = pre_traffic.lambda_handler(load_event("codedeploy-pre-traffic.json"), LambdaContext())

    assert result["status"] == "Failed"
    assert [report["status"] for _, report in codedeploy_calls(codedeploy)] == ["Failed"]


def test_the_handler_refuses_an_event_that_is_not_codedeploys(hook_environment: None) -> None:
    with pytest.raises(pre_traffic.NotALifecycleEventError):
        pre_traffic.lambda_handler(load_event("schedule-reconciler.json"), LambdaContext())
