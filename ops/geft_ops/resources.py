"""Where the stack's resources are: a deployed stack's outputs, or the local stack's state file.

Both give the same output names, so every command works the same against either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_LOCAL_STATE = Path(".local") / "stack.json"
_REQUIRED_OUTPUTS = ("GuaranteesTableName",)


class ResourceLookupError(Exception):
    """The stack or the local state file could not be found or lacks an output."""


@dataclass(frozen=True)
class StackResources:
    session: Any  # boto3.Session
    endpoint_url: str | None
    outputs: dict[str, str]

    def client(self, service: str) -> Any:
        from botocore.config import Config  # noqa: PLC0415

        config = Config(retries={"mode": "standard", "max_attempts": 5})
        if self.endpoint_url:  # moto: stream calls must not go to an account-scoped host
            config = config.merge(Config(account_id_endpoint_mode="disabled"))
        return self.session.client(service, endpoint_url=self.endpoint_url, config=config)

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            raise ResourceLookupError(f"the stack has no output {name}") from None


def from_stack(stack_name: str, *, region: str | None, profile: str | None) -> StackResources:
    import boto3  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    session = boto3.Session(profile_name=profile, region_name=region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as error:
        raise ResourceLookupError(f"cannot read stack {stack_name}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return _checked(StackResources(session=session, endpoint_url=None, outputs=outputs))


def from_local_state(path: Path) -> StackResources:
    import boto3  # noqa: PLC0415

    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResourceLookupError(f"no local stack state at {path}: is `make local` running?") from None
    except (OSError, ValueError) as error:
        raise ResourceLookupError(f"cannot read {path}: {error}") from error
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        region_name=state.get("region", "us-east-1"),
    )
    outputs = {str(k): str(v) for k, v in state.get("outputs", {}).items()}
    return _checked(StackResources(session=session, endpoint_url=state.get("endpointUrl"), outputs=outputs))


def _checked(resources: StackResources) -> StackResources:
    missing = [name for name in _REQUIRED_OUTPUTS if name not in resources.outputs]
    if missing:
        raise ResourceLookupError(f"the stack lacks outputs {missing}")
    return resources
