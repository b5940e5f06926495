"""The stack's control plane in moto: what an operator (and ``make smoke``) can describe, not what runs.

The local stack runs every function in its own worker and every stream mapping in a ``StreamPump``.
CloudFormation would also have created, and ``make smoke`` reads, the template's CloudWatch alarms and
dashboard, each function with its published version and ``live`` alias, and the stream's event source
mappings. ``describe_control_plane`` creates those in moto from the CloudFormation SAM generates
(``testkit.template.Deployment``: roles, functions, versions, aliases, mappings as in AWS), so a check that
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
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from testkit.template import ACCOUNT_ID, REGION, CreatedResources, function_arn, resolved, resources_of_type

_STUB_NOTE = b"This function runs in the local stack's worker process (geft_local.workers), not in moto.\n"


@dataclass(frozen=True)
class ControlPlane:
    """What ``describe_control_plane`` made: the stack resources, and the ARNs moto gave each function
    version and alias (by logical id: what their ``Ref`` resolves to)."""

    resources: list[StackResource]
    refs: dict[str, str]


@dataclass(frozen=True)
class StackResource:
    """One row of ``list-stack-resources``: the logical id, the deployed type and the physical id."""

    logical_id: str
    resource_type: str
    physical_id: str

    def to_json(self) -> dict[str, str]:
        return {"logicalId": self.logical_id, "type": self.resource_type, "physicalId": self.physical_id}


def describe_control_plane(
    template: Mapping[str, Any], *, session: Any, created: CreatedResources, parameters: Mapping[str, str]
) -> ControlPlane:
    """Create the roles, functions, versions, aliases, stream mappings, alarms and dashboards of the
    deployed ``template`` (``testkit.template.Deployment``) in moto. ``created`` must name the functions
    already (``Deployment.create``) and is only read (the local stack starts its workers meanwhile)."""
    private = CreatedResources(
        refs=dict(created.refs),
        attributes=dict(created.attributes),
        topics=dict(created.topics),
        stack_name=created.stack_name,
    )
    builder = _Builder(template, session, private, parameters)
    builder.roles()
    builder.functions()
    builder.alarms()
    builder.dashboards()
    kinds = {"AWS::Lambda::Version", "AWS::Lambda::Alias"}
    refs = {
        row.logical_id: private.refs[row.logical_id]
        for row in builder.resources
        if row.resource_type in kinds
    }
    return ControlPlane(builder.resources, refs)


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

    def properties(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each resource of ``resource_type``, its properties resolved (placeholders: module docstring)."""
        for logical_id, resource in resources_of_type(self.template, resource_type).items():
            properties = resolved(
                resource.get("Properties", {}), self.created, self.parameters, placeholder=True
            )
            yield logical_id, properties

    def roles(self) -> None:
        iam = self.session.client("iam")
        for logical_id, resource in resources_of_type(self.template, "AWS::IAM::Role").items():
            trust = resolved(
                resource["Properties"]["AssumeRolePolicyDocument"], self.created, self.parameters
            )
            name = f"{self.created.stack_name}-{logical_id}"[:64]
            role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
            self.created.attributes[(logical_id, "Arn")] = role["Arn"]
            self.resources.append(StackResource(logical_id, "AWS::IAM::Role", name))

    def functions(self) -> None:
        """Each function with stub code (its worker runs it), then versions, aliases and mappings."""
        lambda_client = self.session.client("lambda")
        for logical_id, properties in self.properties("AWS::Lambda::Function"):
            name = self.created.ref(logical_id)
            keys = ("Role", "Runtime", "Handler", "Architectures", "MemorySize", "Timeout", "Description")
            request = {key: properties[key] for key in keys if key in properties}
            lambda_client.create_function(FunctionName=name, Code={"ZipFile": _stub_code()}, **request)
            self.resources.append(StackResource(logical_id, "AWS::Lambda::Function", name))
        for logical_id, properties in self.properties("AWS::Lambda::Version"):
            version = lambda_client.publish_version(FunctionName=properties["FunctionName"])["Version"]
            self.created.refs[logical_id] = f"{function_arn(properties['FunctionName'])}:{version}"
            self.created.attributes[(logical_id, "Version")] = version
            self.resources.append(
                StackResource(logical_id, "AWS::Lambda::Version", self.created.ref(logical_id))
            )
        for logical_id, properties in self.properties("AWS::Lambda::Alias"):
            alias = lambda_client.create_alias(
                FunctionName=properties["FunctionName"],
                Name=properties["Name"],
                FunctionVersion=properties["FunctionVersion"],
            )
            self.created.refs[logical_id] = alias["AliasArn"]
            self.resources.append(StackResource(logical_id, "AWS::Lambda::Alias", alias["AliasArn"]))
        for logical_id, properties in self.properties("AWS::Lambda::EventSourceMapping"):
            uuid = str(lambda_client.create_event_source_mapping(**properties)["UUID"])
            _describe_only(uuid, properties["FunctionName"])
            self.resources.append(StackResource(logical_id, "AWS::Lambda::EventSourceMapping", uuid))

    def alarms(self) -> None:
        cloudwatch = self.session.client("cloudwatch")
        for logical_id, properties in self.properties("AWS::CloudWatch::Alarm"):
            name = properties.setdefault("AlarmName", f"{self.created.stack_name}-{logical_id}")
            cloudwatch.put_metric_alarm(**properties)
            self.created.refs[logical_id] = name
            self.created.attributes[(logical_id, "Arn")] = (
                f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
            )
            self.resources.append(StackResource(logical_id, "AWS::CloudWatch::Alarm", name))

    def dashboards(self) -> None:
        cloudwatch = self.session.client("cloudwatch")
        for logical_id, properties in self.properties("AWS::CloudWatch::Dashboard"):
            name = properties.get("DashboardName") or f"{self.created.stack_name}-{logical_id}"
            cloudwatch.put_dashboard(DashboardName=name, DashboardBody=properties["DashboardBody"])
            self.resources.append(StackResource(logical_id, "AWS::CloudWatch::Dashboard", name))


def _describe_only(uuid: str, invoked: str) -> None:
    """The two corrections to moto of the module docstring, for the mapping just created."""
    from moto.awslambda.models import lambda_backends  # noqa: PLC0415 - moto runs in this process
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

    mapping = lambda_backends[ACCOUNT_ID][REGION]._event_source_mappings[uuid]
    mapping.function_arn = invoked if invoked.startswith("arn:") else function_arn(invoked)
    for table in dynamodb_backends[ACCOUNT_ID][REGION].tables.values():
        registered = table.lambda_event_source_mappings
        for key in [key for key, value in registered.items() if value is mapping]:
            del registered[key]


def _stub_code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("LOCAL_STACK.txt", _STUB_NOTE)
    return buffer.getvalue()
