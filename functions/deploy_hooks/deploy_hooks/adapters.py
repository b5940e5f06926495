"""The hook's two AWS calls: invoke a function version, report a lifecycle hook's result."""

from __future__ import annotations

import json
from typing import Any, Protocol

from deploy_hooks.probe import InvocationOutcome

# A cold receiver version needs its init (about a second) plus at most its 6 s timeout. Worst case for the
# hook's 45 s: two probes (2 x 10 s), the pause between them, and the report (3 x 5 s).
_LAMBDA_CLIENT_CONFIG = {"connect_timeout": 3, "read_timeout": 10, "retries": {"total_max_attempts": 1}}
_CODEDEPLOY_CLIENT_CONFIG = {"connect_timeout": 3, "read_timeout": 5, "retries": {"total_max_attempts": 3}}


class Invoker(Protocol):
    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome: ...


class Reporter(Protocol):
    def report(self, *, deployment_id: str, execution_id: str, succeeded: bool) -> None: ...


def _client(service: str, settings: dict[str, Any]) -> Any:
    import boto3  # noqa: PLC0415 - created on first use, never at import
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(service, config=Config(**settings))


class LambdaInvoker:
    """Synchronous invoke (RequestResponse); the payload is parsed as JSON when it is JSON."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def invoke(self, function_arn: str, event: dict[str, Any]) -> InvocationOutcome:
        if self._client is None:
            self._client = _client("lambda", _LAMBDA_CLIENT_CONFIG)
        response = self._client.invoke(
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

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def report(self, *, deployment_id: str, execution_id: str, succeeded: bool) -> None:
        if self._client is None:
            self._client = _client("codedeploy", _CODEDEPLOY_CLIENT_CONFIG)
        self._client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id,
            lifecycleEventHookExecutionId=execution_id,
            status="Succeeded" if succeeded else "Failed",
        )
