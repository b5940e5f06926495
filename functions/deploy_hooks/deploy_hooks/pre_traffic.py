"""CodeDeploy BeforeAllowTraffic hook of the receiver: probe the new version, then report.

CodeDeploy invokes this with ``DeploymentId`` and ``LifecycleEventHookExecutionId`` before it moves any
of the ``live`` alias's traffic. The hook invokes the version being deployed with a wrongly signed
webhook (``deploy_hooks.probe``) and reports Succeeded only for its 401; Failed stops the deployment
and leaves all traffic on the old version. It always reports: a hook that ends without a report holds
the deployment until CodeDeploy's one-hour hook timeout.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from geft.aws import AwsClients
from geft.errors import ConfigError
from geft.observability import logger

from deploy_hooks.adapters import CLIENT_SETTINGS, CodeDeployReporter, Invoker, LambdaInvoker, Reporter
from deploy_hooks.config import PreTrafficHookConfig
from deploy_hooks.probe import Verdict, judge, probe_event

_RETRY_PAUSE_SECONDS = 1.0


class NotALifecycleEventError(ValueError):
    """The event is not a CodeDeploy lifecycle hook invocation."""


@functools.cache
def _dependencies() -> tuple[Invoker, Reporter]:
    """Composition root, built on the first invoke; both clients from one session, on first use."""
    aws = AwsClients(CLIENT_SETTINGS)
    return LambdaInvoker(aws), CodeDeployReporter(aws)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, str]:
    deployment_id, execution_id = lifecycle_ids(event)
    logger.append_keys(deployment_id=deployment_id)
    invoker, reporter = _dependencies()
    try:
        verdict = run_probe(PreTrafficHookConfig.from_env, invoker)
    except Exception:  # a hook must report whatever happens: unproven means Failed
        logger.exception("pre-traffic hook failed before judging the version")
        verdict = Verdict(False, "the hook itself failed (see its log)")
    reporter.report(deployment_id=deployment_id, execution_id=execution_id, succeeded=verdict.succeeded)
    status = "Succeeded" if verdict.succeeded else "Failed"
    logger.info("pre-traffic hook reported", status=status, reason=verdict.reason)
    return {"status": status, "reason": verdict.reason}


def lifecycle_ids(event: Mapping[str, Any]) -> tuple[str, str]:
    deployment_id, execution_id = event.get("DeploymentId"), event.get("LifecycleEventHookExecutionId")
    if not (
        isinstance(deployment_id, str) and deployment_id and isinstance(execution_id, str) and execution_id
    ):
        raise NotALifecycleEventError("expected DeploymentId and LifecycleEventHookExecutionId")
    return deployment_id, execution_id


def run_probe(
    load_config: Callable[[], PreTrafficHookConfig],
    invoker: Invoker,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Probe the target version up to ``attempts`` times; only a failure that may be transient (the
    version's 5xx or function error, a failed invoke) is tried again."""
    try:
        config = load_config()
    except ConfigError as error:
        return Verdict(False, f"the hook is misconfigured: {error}")
    verdict = Verdict(False, "not probed")
    for attempt in range(1, config.attempts + 1):
        request_id = f"pre-traffic-{uuid.uuid4()}"
        event = probe_event(
            path=config.webhook_path, source_ip=config.probe_source_ip, request_id=request_id, now=clock()
        )
        verdict, transient = _attempt(invoker, config.target_function_arn, event, request_id)
        logger.info(
            "probed the new version",
            attempt=attempt,
            target=config.target_function_arn,
            succeeded=verdict.succeeded,
            reason=verdict.reason,
        )
        if verdict.succeeded or not transient:
            break
        if attempt < config.attempts:
            sleep(_RETRY_PAUSE_SECONDS)
    return verdict


def _attempt(
    invoker: Invoker, function_arn: str, event: dict[str, Any], request_id: str
) -> tuple[Verdict, bool]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with the client

    try:
        outcome = invoker.invoke(function_arn, event)
    except (BotoCoreError, ClientError) as error:
        return Verdict(False, f"the version could not be invoked: {error}"), True
    verdict = judge(outcome, request_id=request_id)
    payload = outcome.payload
    status = payload.get("statusCode") if isinstance(payload, dict) else None
    transient = bool(outcome.function_error) or (isinstance(status, int) and status >= 500)
    return verdict, transient
