"""The stack as deployed from template.yaml, once for the tests, the benchmarks and the local stack.

``Deployment.of`` reads the template with one set of parameter values as CloudFormation would (its
Rules checked, false conditions dropped, known intrinsics resolved: ``template_render``);
``Deployment.create`` creates its stateful resources (tables and streams, queues, topics, secrets)
through a boto3 session pointed at moto, and ``environment`` is the environment SAM gives a function,
references resolved to what was created. The template is the single source of truth: nothing here
declares a table twice.
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

from testkit.template_render import failed_rules, resolve_known

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
_TABLE_PROPERTIES = ("KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes")
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
WEBHOOK_SECRET_VARIABLE = "WEBHOOK_SECRET_ARN"  # noqa: S105 - a variable's name, not a secret
FLINKS_CREDENTIALS_VARIABLE = "FLINKS_CREDENTIALS_SECRET_ARN"


class DeploymentError(ValueError):
    """CloudFormation would refuse these parameters (a template Rule fails)."""


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
                return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{created.refs[base]}:$LATEST"
            pseudo = {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT_ID,
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


def secret_referenced_by(template: Mapping[str, Any], variable: str) -> str | None:
    """The logical id of the ``AWS::SecretsManager::Secret`` a function's ``variable`` refers to."""
    secret_ids = resources_of_type(template, "AWS::SecretsManager::Secret")
    sources = [template.get("Globals", {}).get("Function", {})]
    functions = resources_of_type(template, "AWS::Serverless::Function").values()
    sources += [resource.get("Properties", {}) for resource in functions]
    for properties in sources:
        value = properties.get("Environment", {}).get("Variables", {}).get(variable)
        if isinstance(value, Mapping) and value.get("Ref") in secret_ids:
            return str(value["Ref"])
    return None


@dataclass
class Deployment:
    """One stack: the template as CloudFormation deploys it with ``parameters``, and what was created."""

    template: dict[str, Any]
    parameters: dict[str, str]
    stack_name: str
    created: CreatedResources = field(default_factory=CreatedResources)

    @classmethod
    def of(
        cls, template: Mapping[str, Any], parameters: Mapping[str, str] | None = None, *, stack_name: str
    ) -> Deployment:
        """``template`` (as ``load_template`` reads it) with ``parameters`` (default: the defaults)."""
        values = dict(parameters) if parameters is not None else parameter_values(template)
        broken = failed_rules(template, values)
        if broken:
            raise DeploymentError("template rules refuse these parameters: " + "; ".join(broken))
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": stack_name}
        return cls(resolve_known(template, values, pseudo), values, stack_name)

    def create(
        self, session: Any, *, webhook_secret: str, flinks_username: str, flinks_password: str
    ) -> CreatedResources:
        """Create the resources through ``session``, the secrets shaped as deployed (``{"current": ...}``,
        ``{"username", "password"}``); functions are named first (one's environment may name another)."""
        values: dict[str, dict[str, Any]] = {}
        if webhook := secret_referenced_by(self.template, WEBHOOK_SECRET_VARIABLE):
            values[webhook] = {"current": webhook_secret}
        if credentials := secret_referenced_by(self.template, FLINKS_CREDENTIALS_VARIABLE):
            values[credentials] = {"username": flinks_username, "password": flinks_password}
        self.created = create_resources(
            self.template, session=session, stack_name=self.stack_name, secret_values=values
        )
        for logical_id in resources_of_type(self.template, "AWS::Serverless::Function"):
            self.created.refs.setdefault(logical_id, self.function_name(logical_id))
        return self.created

    def function_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def environment(self, logical_id: str, **overrides: str) -> dict[str, str]:
        return function_environment(self.template, logical_id, self.created, self.parameters) | overrides

    def ref(self, logical_id: str) -> str:
        return self.created.ref(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self.created.get_att(logical_id, attribute)
