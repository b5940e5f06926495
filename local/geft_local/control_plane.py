"""The stack's control plane in moto: what an operator (and ``make smoke``) can describe, not what runs.

The local stack runs every function in its own worker and every stream mapping in a ``StreamPump``.
CloudFormation would also have created, and ``make smoke`` reads, the template's CloudWatch alarms and
dashboard, each function with its published version and ``live`` alias, and the stream's event source
mappings. ``describe_control_plane`` creates those in moto from the deployed template, so a check that
reads a deployed stack reads the local one the same way, and returns the list of stack resources that
``aws cloudformation list-stack-resources`` would give (the local state file carries it).

Two corrections to moto, made on its in-process backend (the local stack's moto runs in this process):

* moto records a mapping created with an alias ARN as invoking the version behind the alias; AWS records
  the alias ARN, which is what tells a mapping that follows ``live`` from one pinned to a version;
* moto itself would invoke a mapping's function on every table write (through Docker, which is absent)
  and then drop the stream's records the pump reads. The mapping is described, the pump invokes.

References to resources the local stack does not create (the HTTP API's id, a KMS key) resolve to
``<stack>-<LogicalId>``: what an alarm's dimension names then is inert here, as no metric reaches moto.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geft_local.template_render import EVALUATED
from geft_local.template_resources import CreatedResources, resolve, resources_of_type

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
_PSEUDO = {"AWS::URLSuffix": "amazonaws.com"}
_PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")
# What SAM's DynamoDB event passes on to the mapping (its own names, as the Lambda API takes them).
_MAPPING_PROPERTIES = (
    "StartingPosition",
    "BatchSize",
    "Enabled",
    "FilterCriteria",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "FunctionResponseTypes",
)
_STUB_NOTE = b"This function runs in the local stack's worker process (geft_local.workers), not in moto.\n"


@dataclass(frozen=True)
class ControlPlane:
    """What ``describe_control_plane`` made: the stack resources, and each ``<Function>.Alias`` ARN."""

    resources: list[StackResource]
    alias_refs: dict[str, str]


@dataclass(frozen=True)
class StackResource:
    """One row of ``list-stack-resources``: the logical id, the deployed type and the physical id."""

    logical_id: str
    resource_type: str
    physical_id: str

    def to_json(self) -> dict[str, str]:
        return {"logicalId": self.logical_id, "type": self.resource_type, "physicalId": self.physical_id}


def describe_control_plane(
    template: Mapping[str, Any],
    *,
    session: Any,
    created: CreatedResources,
    parameters: Mapping[str, str],
) -> ControlPlane:
    """Create the alarms, the dashboard, the functions (version, alias) and the stream mappings of
    ``template`` (as deployed: conditions applied) in moto. Function names must be in ``created.refs``
    already. ``created`` is only read (the local stack starts its workers meanwhile)."""
    private = CreatedResources(
        refs=dict(created.refs),
        attributes=dict(created.attributes),
        topics=dict(created.topics),
        stack_name=created.stack_name,
    )
    builder = _Builder(template, session, private, parameters)
    builder.functions()
    builder.alarms()
    builder.dashboards()
    aliases = {name: arn for name, arn in private.refs.items() if name.endswith(".Alias")}
    return ControlPlane(builder.resources, aliases)


def data_plane_resources(template: Mapping[str, Any], created: CreatedResources) -> list[StackResource]:
    """The tables, queues, topics and secrets ``create_resources`` made, as stack resources."""
    kinds = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::SecretsManager::Secret")
    return [
        StackResource(logical_id, kind, created.ref(logical_id))
        for kind in kinds
        for logical_id in resources_of_type(template, kind)
        if logical_id in created.refs
    ]


class _Builder:
    def __init__(
        self,
        template: Mapping[str, Any],
        session: Any,
        created: CreatedResources,
        parameters: Mapping[str, str],
    ) -> None:
        self.template = template
        self.session = session
        self.created = created
        self.parameters = parameters
        self.resources: list[StackResource] = []
        self._names = template.get("Resources", {})

    # -- resolution ------------------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic function resolved (see the module docstring for placeholders)."""
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        if len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Ref" or function.startswith("Fn::"):
                return self.intrinsic(function, argument)
        return {key: self.value(child) for key, child in node.items()}

    def intrinsic(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            return self.reference(str(argument))
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attribute(logical_id, attribute)
        if function == "Fn::Sub":
            return self.substitute(argument)
        evaluate = EVALUATED.get(function)
        if evaluate is None:
            raise ValueError(f"{function} cannot be resolved locally")
        return evaluate(*self.value(argument))

    def reference(self, name: str) -> str:
        if name in _PSEUDO:
            return _PSEUDO[name]
        try:
            return resolve({"Ref": name}, self.created, self.parameters)
        except (ValueError, KeyError):
            if name.split(".", 1)[0] in self._names:
                return f"{self.created.stack_name}-{name.replace('.', '-')}"
            raise ValueError(f"Ref {name}: no parameter or resource of that name") from None

    def attribute(self, logical_id: str, attribute: str) -> str:
        try:
            return self.created.get_att(logical_id, attribute)
        except KeyError:
            if logical_id in self._names:
                return f"{self.created.stack_name}-{logical_id}-{attribute}"
            raise ValueError(f"Fn::GetAtt {logical_id}.{attribute}: no resource of that name") from None

    def substitute(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.value(value) for name, value in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match[1]
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::") and name.split(".", 1)[0] in self._names:
                logical_id, attribute = name.split(".", 1)
                if attribute not in ("Alias", "Version"):
                    return self.attribute(logical_id, attribute)
            return self.reference(name)

        return _PLACEHOLDER.sub(one, str(text))

    # -- resources -------------------------------------------------------------------------------

    def functions(self) -> None:
        lambda_client = self.session.client("lambda")
        iam = self.session.client("iam")
        globals_ = self.template.get("Globals", {}).get("Function", {})
        roles: dict[str, str] = {}
        for logical_id, resource in resources_of_type(self.template, "AWS::Serverless::Function").items():
            properties = {**globals_, **resource.get("Properties", {})}
            name = self.created.ref(logical_id)
            role_arn = self._role(iam, logical_id, properties.get("Role"), roles)
            request: dict[str, Any] = {
                "FunctionName": name,
                "Role": role_arn,
                "Runtime": properties.get("Runtime", "python3.13"),
                "Handler": properties.get("Handler", "handler.lambda_handler"),
                "Code": {"ZipFile": _stub_code()},
                "Architectures": properties.get("Architectures", ["x86_64"]),
            }
            for key in ("MemorySize", "Timeout", "Description"):
                if key in properties:
                    request[key] = self.value(properties[key])
            lambda_client.create_function(**request)
            self.resources.append(StackResource(logical_id, "AWS::Lambda::Function", name))
            invoked = name
            alias = properties.get("AutoPublishAlias")
            if alias:
                version = lambda_client.publish_version(FunctionName=name)["Version"]
                version_arn = f"{_function_arn(name)}:{version}"
                alias_arn = lambda_client.create_alias(
                    FunctionName=name, Name=alias, FunctionVersion=version
                )["AliasArn"]
                self.created.refs[f"{logical_id}.Alias"] = alias_arn
                self.resources.append(
                    StackResource(f"{logical_id}Version", "AWS::Lambda::Version", version_arn)
                )
                self.resources.append(
                    StackResource(f"{logical_id}Alias{alias}", "AWS::Lambda::Alias", alias_arn)
                )
                invoked = alias_arn
            for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
                if event.get("Type") == "DynamoDB":
                    uuid = self._mapping(lambda_client, invoked, event.get("Properties", {}))
                    self.resources.append(
                        StackResource(f"{logical_id}{event_name}", "AWS::Lambda::EventSourceMapping", uuid)
                    )

    def _role(self, iam: Any, function_id: str, role: Any, roles: dict[str, str]) -> str:
        role_id = _get_att_target(role) or f"{function_id}Role"
        if role_id in roles:
            return roles[role_id]
        trust = self._names.get(role_id, {}).get("Properties", {}).get("AssumeRolePolicyDocument") or {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        name = f"{self.created.stack_name}-{role_id}"[:64]
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(self.value(trust)))["Role"][
            "Arn"
        ]
        roles[role_id] = arn
        self.created.attributes[(role_id, "Arn")] = arn
        self.resources.append(StackResource(role_id, "AWS::IAM::Role", name))
        return str(arn)

    def _mapping(self, lambda_client: Any, invoked: str, properties: Mapping[str, Any]) -> str:
        request: dict[str, Any] = {
            "EventSourceArn": self.value(properties["Stream"]),
            "FunctionName": invoked,
        }
        for key in _MAPPING_PROPERTIES:
            if key in properties:
                request[key] = self.value(properties[key])
        destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination is not None:
            request["DestinationConfig"] = {"OnFailure": {"Destination": self.value(destination)}}
        uuid = str(lambda_client.create_event_source_mapping(**request)["UUID"])
        _describe_only(uuid, invoked)
        return uuid

    def alarms(self) -> None:
        cloudwatch = self.session.client("cloudwatch")
        for logical_id, resource in resources_of_type(self.template, "AWS::CloudWatch::Alarm").items():
            properties = self.value(resource.get("Properties", {}))
            name = properties.setdefault("AlarmName", f"{self.created.stack_name}-{logical_id}")
            cloudwatch.put_metric_alarm(**properties)
            self.created.refs[logical_id] = name
            self.created.attributes[(logical_id, "Arn")] = (
                f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
            )
            self.resources.append(StackResource(logical_id, "AWS::CloudWatch::Alarm", name))

    def dashboards(self) -> None:
        cloudwatch = self.session.client("cloudwatch")
        for logical_id, resource in resources_of_type(self.template, "AWS::CloudWatch::Dashboard").items():
            properties = self.value(resource.get("Properties", {}))
            name = properties.get("DashboardName") or f"{self.created.stack_name}-{logical_id}"
            cloudwatch.put_dashboard(DashboardName=name, DashboardBody=properties["DashboardBody"])
            self.resources.append(StackResource(logical_id, "AWS::CloudWatch::Dashboard", name))


def _describe_only(uuid: str, invoked: str) -> None:
    """The two corrections to moto of the module docstring, for the mapping just created."""
    from moto.awslambda.models import lambda_backends  # noqa: PLC0415 - moto runs in this process
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

    mapping = lambda_backends[ACCOUNT_ID][REGION]._event_source_mappings[uuid]
    mapping.function_arn = invoked if invoked.startswith("arn:") else _function_arn(invoked)
    for table in dynamodb_backends[ACCOUNT_ID][REGION].tables.values():
        registered = table.lambda_event_source_mappings
        for key in [key for key, value in registered.items() if value is mapping]:
            del registered[key]


def _function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def _get_att_target(value: Any) -> str | None:
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
    return None


def _stub_code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("LOCAL_STACK.txt", _STUB_NOTE)
    return buffer.getvalue()
