"""The hook's two AWS calls: invoke a function version, report a lifecycle hook's result."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from geft.aws import AwsClients, ClientSettings, provider

from deploy_hooks.probe import InvocationOutcome

if TYPE_CHECKING:
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_lambda import LambdaClient

# A cold receiver version needs its init (about a second) plus at most its 6 s timeout. Worst case for the
# hook's 45 s: two probes (2 x 10 s), the pause between them, and the report (3 x 5 s).
CLIENT_SETTINGS: dict[str, ClientSettings] = {
    "lambda": {"connect_timeout": 3, "read_timeout": 10, "retries": {"total_max_attempts": 1}},
    "codedeploy": {"connect_timeout": 3, "read_timeout": 5, "retries": {"total_max_attempts": 3}},
}


class Invoker(Protocol):
    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome: ...


class Reporter(Protocol):
    def report(self, *, deployment_id: str, execution_id: str, succeeded: bool) -> None: ...


class LambdaInvoker:
    """Synchronous invoke (RequestResponse); the payload is parsed as JSON when it is JSON."""

    def __init__(self, client: LambdaClient | AwsClients) -> None:
        self._lambda = provider(client, AwsClients.lambda_)

    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome:
        response = self._lambda().invoke(
            FunctionName=function_arn, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        raw = response["Payload"].read().decode("utf-8", errors="replace")
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw
        return InvocationOutcome(payload=payload, function_error=response.get("FunctionError"))


class CodeDeployReporter:
    """``PutLifecycleEventHookExecutionStatus``: CodeDeploy goes on (Succeeded) or rolls back (Failed)."""

    def __init__(self, client: CodeDeployClient | AwsClients) -> None:
        self._codedeploy = provider(client, AwsClients.codedeploy)

    def report(self, *, deployment_id: str, execution_id: str, succeeded: bool) -> None:
        self._codedeploy().put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id,
            lifecycleEventHookExecutionId=execution_id,
            status="Succeeded" if succeeded else "Failed",
        )
