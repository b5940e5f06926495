"""Where the stack's resources are: a deployed stack's outputs, or a running local stack's state file.

Both give the same output names, so every command works the same against either. A local stack
writes ``<run dir>/<port>/stack.json`` while it runs (with its process id); ``--local`` finds the one
that is running, ``--local-state PATH`` names one. ``StackResources.stack_resources()`` lists what the
stack owns (CloudFormation's ``list-stack-resources``, or the local state file's copy of it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from boto3 import Session
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

# Where `make local` keeps its stacks: the repository's .local, or LOCAL_RUN_DIR as for make local.
LOCAL_RUN_DIR = Path(os.environ.get("LOCAL_RUN_DIR") or Path(__file__).resolve().parents[2] / ".local")
STATE_FILE = "stack.json"
_REQUIRED_OUTPUTS = ("GuaranteesTableName",)


class ResourceLookupError(Exception):
    """The stack or the local state file could not be found or lacks an output."""


@dataclass(frozen=True)
class StackResource:
    """A resource the stack owns: its logical id, its deployed type and its physical id."""

    logical_id: str
    resource_type: str
    physical_id: str


@dataclass(frozen=True)
class StackResources:
    session: Session
    endpoint_url: str | None
    outputs: dict[str, str]
    local: Mapping[str, Any] = field(default_factory=dict)  # the local stack's state (URLs, secret)
    stack_name: str = ""

    # Typed for the services the CLI calls; any other name is still served, untyped.
    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["dynamodbstreams"]) -> DynamoDBStreamsClient: ...
    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def client(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def client(self, service: str) -> Any: ...
    def client(self, service: str) -> Any:
        from botocore.config import Config  # noqa: PLC0415

        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
        if self.endpoint_url:  # moto: stream calls must not go to an account-scoped host
            config = config.merge(Config(account_id_endpoint_mode="disabled"))
        create: Callable[..., Any] = self.session.client  # the name is a runtime str; the overloads type it
        return create(service, endpoint_url=self.endpoint_url, config=config)

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            raise ResourceLookupError(f"the stack has no output {name}") from None

    def stack_resources(self, resource_type: str | None = None) -> list[StackResource]:
        """What the stack owns (of ``resource_type``, when given), as CloudFormation records it."""
        if self.local:
            rows: list[Mapping[str, Any]] = list(self.local.get("resources", []))
            found = [StackResource(str(r["logicalId"]), str(r["type"]), str(r["physicalId"])) for r in rows]
        else:
            pages = self.client("cloudformation").get_paginator("list_stack_resources")
            found = [
                StackResource(
                    row["LogicalResourceId"], row["ResourceType"], row.get("PhysicalResourceId", "")
                )
                for page in pages.paginate(StackName=self.stack_name)
                for row in page["StackResourceSummaries"]
            ]
        return [row for row in found if resource_type is None or row.resource_type == resource_type]

    def caller_identity(self) -> str:
        """The AWS principal this CLI acts as (STS), recorded with every operator action."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            return str(self.client("sts").get_caller_identity()["Arn"])
        except (BotoCoreError, ClientError) as error:
            raise ResourceLookupError(
                f"cannot tell who you are (sts get-caller-identity): {error}"
            ) from error


def locate(
    stack_name: str | None, *, region: str | None, profile: str | None, local_state: Path | None
) -> StackResources:
    """The deployed stack ``stack_name``; without one, the local stack whose state file is
    ``local_state`` (the one running under ``LOCAL_RUN_DIR`` where that is not given either)."""
    if stack_name:
        return from_stack(stack_name, region=region, profile=profile)
    return from_local_state(local_state or running_local_state(LOCAL_RUN_DIR))


def from_stack(stack_name: str, *, region: str | None, profile: str | None) -> StackResources:
    import boto3  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as error:
        raise ResourceLookupError(f"cannot read stack {stack_name}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return _checked(
        StackResources(session=session, endpoint_url=None, outputs=outputs, stack_name=stack_name)
    )


def running_local_state(run_dir: Path = LOCAL_RUN_DIR) -> Path:
    """The state file of the one local stack running under ``run_dir``."""
    running = sorted(
        (path for path in run_dir.glob(f"*/{STATE_FILE}") if _is_running(path)),
        key=lambda path: path.parent.name,
    )
    if not running:
        raise ResourceLookupError(
            f"no local stack is running (under {run_dir}/): start one with `make local`"
        )
    if len(running) > 1:
        choices = ", ".join(str(path) for path in running)
        raise ResourceLookupError(
            f"several local stacks are running ({choices}): choose one with --local-state"
        )
    return running[0]


def from_local_state(path: Path) -> StackResources:
    import boto3  # noqa: PLC0415

    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResourceLookupError(f"no local stack state at {path}: is `make local` running?") from None
    except (OSError, ValueError) as error:
        raise ResourceLookupError(f"cannot read {path}: {error}") from error
    if not _is_running(path):
        raise ResourceLookupError(f"the local stack of {path} is not running (start one with `make local`)")
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        region_name=state.get("region", "us-east-1"),
    )
    outputs = {str(k): str(v) for k, v in state.get("outputs", {}).items()}
    return _checked(
        StackResources(
            session=session,
            endpoint_url=state.get("endpointUrl"),
            outputs=outputs,
            local=state,
            stack_name=str(state.get("stackName", "")),
        )
    )


def _is_running(state_path: Path) -> bool:
    try:
        pid = int(json.loads(state_path.read_text(encoding="utf-8")).get("pid", 0))
    except (OSError, ValueError, TypeError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _checked(resources: StackResources) -> StackResources:
    missing = [name for name in _REQUIRED_OUTPUTS if name not in resources.outputs]
    if missing:
        raise ResourceLookupError(f"the stack lacks outputs {missing}")
    return resources
