"""Create the template's stateful resources (tables, queues, secrets) in moto, from template.yaml itself.

The template is the single source of truth: tests and the local stack never declare a table twice.
Returns the physical ids that ``Ref`` and ``Fn::GetAtt`` resolve to, so function environments can be
built the way CloudFormation would build them.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
_TABLE_PROPERTIES = ("KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes")


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse the SAM template, intrinsic functions kept as ``{"Ref": ...}`` / ``{"Fn::GetAtt": ...}``."""
    from cfnlint.decode import decode  # noqa: PLC0415 - only the local tooling needs cfn-lint

    template, problems = decode(str(path))
    if problems or template is None:
        raise ValueError(f"cannot parse {path}: {problems}")
    return dict(template)


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Parameter defaults with overrides applied, as strings (as CloudFormation passes them)."""
    values = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    for name, value in (overrides or {}).items():
        if name not in values:
            raise KeyError(f"template has no parameter {name}")
        values[name] = value
    return values


@dataclass
class CreatedResources:
    """Physical ids by logical id: what ``Ref`` and ``Fn::GetAtt`` resolve to."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # SNS topic ARNs by logical id
    stack_name: str = "geft-local"

    def ref(self, logical_id: str) -> str:
        return self.refs[logical_id]

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self.attributes[(logical_id, attribute)]


def create_resources(
    template: Mapping[str, Any],
    *,
    session: Any,
    stack_name: str = "geft-local",
    secret_values: Mapping[str, Mapping[str, Any]] | None = None,
) -> CreatedResources:
    """Create every table, queue and secret of ``template`` with ``session`` (a boto3 Session
    pointed at moto). ``secret_values`` replaces a secret's generated value by logical id."""
    created = CreatedResources(stack_name=stack_name)
    dynamodb = session.client("dynamodb")
    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        _create_table(dynamodb, f"{stack_name}-{logical_id}", resource["Properties"], logical_id, created)
    sqs = session.client("sqs")
    for logical_id, resource in resources_of_type(template, "AWS::SQS::Queue").items():
        attributes = {}
        retention = resource.get("Properties", {}).get("MessageRetentionPeriod")
        if retention is not None:
            attributes["MessageRetentionPeriod"] = str(retention)
        url = sqs.create_queue(QueueName=f"{stack_name}-{logical_id}", Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        created.refs[logical_id] = url
        created.attributes[(logical_id, "Arn")] = arn
        created.attributes[(logical_id, "QueueName")] = url.rsplit("/", 1)[-1]
    sns = session.client("sns")
    for logical_id in resources_of_type(template, "AWS::SNS::Topic"):
        arn = sns.create_topic(Name=f"{stack_name}-{logical_id}")["TopicArn"]
        created.refs[logical_id] = arn
        created.topics[logical_id] = arn
    secretsmanager = session.client("secretsmanager")
    for logical_id, resource in resources_of_type(template, "AWS::SecretsManager::Secret").items():
        value = (secret_values or {}).get(logical_id) or _generated_secret(resource.get("Properties", {}))
        arn = secretsmanager.create_secret(Name=f"{stack_name}/{logical_id}", SecretString=json.dumps(value))[
            "ARN"
        ]
        created.refs[logical_id] = arn
    return created


def _create_table(
    dynamodb: Any, table_name: str, properties: Mapping[str, Any], logical_id: str, created: CreatedResources
) -> None:
    request: dict[str, Any] = {key: properties[key] for key in _TABLE_PROPERTIES if key in properties}
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    description = dynamodb.create_table(TableName=table_name, **request)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") is True:
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    created.refs[logical_id] = table_name
    created.attributes[(logical_id, "Arn")] = description["TableArn"]
    if "LatestStreamArn" in description:
        created.attributes[(logical_id, "StreamArn")] = description["LatestStreamArn"]


def _generated_secret(properties: Mapping[str, Any]) -> dict[str, Any]:
    generate = properties.get("GenerateSecretString")
    if not generate:
        return {}
    document = json.loads(generate.get("SecretStringTemplate", "{}"))
    alphabet = string.ascii_letters + string.digits
    length = int(generate.get("PasswordLength", 32))
    document[generate["GenerateStringKey"]] = "".join(secrets.choice(alphabet) for _ in range(length))
    return dict(document)


def function_environment(
    template: Mapping[str, Any],
    function_logical_id: str,
    created: CreatedResources,
    parameters: Mapping[str, str],
) -> dict[str, str]:
    """The environment SAM gives a function: Globals, then the function's own, references resolved."""
    global_variables = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    function = template["Resources"][function_logical_id]["Properties"]
    own_variables = function.get("Environment", {}).get("Variables", {})
    merged = {**global_variables, **own_variables}
    return {name: resolve(value, created, parameters) for name, value in merged.items()}


def resolve(value: Any, created: CreatedResources, parameters: Mapping[str, str]) -> str:  # noqa: PLR0911
    """Resolve the intrinsic functions the template uses in environments: Ref, Fn::GetAtt, Fn::Sub."""
    if isinstance(value, str | int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, Mapping) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            if argument in parameters:
                return parameters[argument]
            if argument in created.refs:
                return created.refs[argument]
            base, _, attribute = str(argument).partition(".")
            if attribute in ("Version", "Alias") and base in created.refs:
                # SAM's function.Version / function.Alias: locally every invoke runs $LATEST.
                return f"arn:aws:lambda:us-east-1:123456789012:function:{created.refs[base]}:$LATEST"
            pseudo = {
                "AWS::Region": "us-east-1",
                "AWS::AccountId": "123456789012",
                "AWS::Partition": "aws",
                "AWS::StackName": created.stack_name,
            }
            if argument in pseudo:
                return pseudo[argument]
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return created.get_att(logical_id, attribute)
        if function == "Fn::Sub" and isinstance(argument, str):
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda match: resolve(
                    {"Fn::GetAtt": match[1]}
                    if "." in match[1] and not match[1].startswith("AWS::")
                    else {"Ref": match[1]},
                    created,
                    parameters,
                ),
                argument,
            )
    raise ValueError(f"cannot resolve {value!r} locally")
