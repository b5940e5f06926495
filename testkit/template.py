"""The stack as deployed from template.yaml, once for the tests, the benchmarks and the local stack.

``Deployment.of`` turns the template, with one set of parameter values, into the CloudFormation a
deployment creates (``sam_transform``: Rules checked, what AWS::LanguageExtensions resolves resolved,
SAM's own transform, false conditions dropped): ``template`` holds ``AWS::Lambda::Function`` with Globals
merged by SAM, its versions and aliases, the event source mappings and schedule rules SAM generates.
``Deployment.create`` creates its stateful resources (tables and streams, queues, topics, secrets)
through a boto3 session pointed at moto and names the functions, aliases, versions and layers;
``environment`` is a function's environment, references resolved to what was created. The template is
the single source of truth: nothing here declares a table twice or merges Globals.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.sam_transform import ACCOUNT_ID, REGION, DeploymentError, pseudo_parameters, transformed
from testkit.template_render import is_literal, resolve_intrinsics

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
_TABLE_PROPERTIES = ("KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes")
WEBHOOK_SECRET_VARIABLE = "WEBHOOK_SECRET_ARN"  # noqa: S105 - a variable's name, not a secret
FLINKS_CREDENTIALS_VARIABLE = "FLINKS_CREDENTIALS_SECRET_ARN"
__all__ = ["ACCOUNT_ID", "REGION", "DeploymentError"]


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


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def function_behind(template: Mapping[str, Any], reference: Any) -> str | None:
    """The logical id of the ``AWS::Lambda::Function`` a ``Ref``/``Fn::GetAtt`` (or a name in an
    ``Fn::Sub``) points at, through the alias or version SAM put in between."""
    if isinstance(reference, Mapping):
        reference = reference.get("Ref") or reference.get("Fn::GetAtt")
    if isinstance(reference, list):
        reference = reference[0]
    resource = template.get("Resources", {}).get(str(reference).split(".", 1)[0], {})
    if resource.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        return function_behind(template, resource["Properties"]["FunctionName"])
    return str(reference).split(".", 1)[0] if resource.get("Type") == "AWS::Lambda::Function" else None


def resolved(
    node: Any,
    created: CreatedResources,
    parameters: Mapping[str, str] | None = None,
    *,
    placeholder: bool = False,
) -> Any:
    """``node`` with every intrinsic function resolved to what was created (and ``parameters``). With
    ``placeholder``, a resource the local stack does not create (the HTTP API, a KMS key) resolves to
    ``<stack>-<LogicalId>[-<Attribute>]``, inert where nothing reaches it."""
    attributes = {f"{logical_id}.{name}": value for (logical_id, name), value in created.attributes.items()}
    known = pseudo_parameters(created.stack_name) | created.refs | attributes | dict(parameters or {})

    def lookup(name: str) -> Any:
        if name in known or not placeholder:
            return known.get(name)
        return f"{created.stack_name}-{name.replace('.', '-', 1)}"

    value = resolve_intrinsics(node, lookup)
    if not is_literal(value):
        raise ValueError(f"cannot resolve {json.dumps(value, default=str)[:200]} locally")
    return value


def resolve(value: Any, created: CreatedResources, parameters: Mapping[str, str] | None = None) -> str:
    """``value`` resolved as an environment variable holds it (a string; booleans as JSON has them)."""
    value = resolved(value, created, parameters)
    return str(value).lower() if isinstance(value, bool) else str(value)


def secret_referenced_by(template: Mapping[str, Any], variable: str) -> str | None:
    """The logical id of the ``AWS::SecretsManager::Secret`` a function's ``variable`` refers to."""
    secret_ids = resources_of_type(template, "AWS::SecretsManager::Secret")
    for function in resources_of_type(template, "AWS::Lambda::Function").values():
        value = function["Properties"].get("Environment", {}).get("Variables", {}).get(variable)
        if isinstance(value, Mapping) and value.get("Ref") in secret_ids:
            return str(value["Ref"])
    return None


@dataclass
class Deployment:
    """One stack: the CloudFormation SAM makes of the template with ``parameters``, and what was created."""

    template: dict[str, Any]
    parameters: dict[str, str]
    stack_name: str
    created: CreatedResources = field(default_factory=CreatedResources)

    @classmethod
    def of(
        cls,
        template: Mapping[str, Any],
        parameters: Mapping[str, str] | None = None,
        *,
        stack_name: str,
        template_dir: Path = REPO_ROOT,
    ) -> Deployment:
        """``template`` (as ``load_template`` reads it) with ``parameters`` (default: the defaults); the
        code folders are read relative to ``template_dir``. ``DeploymentError`` when a Rule refuses."""
        values = parameter_values(template) | dict(parameters or {})
        cloudformation = transformed(template, values, stack_name=stack_name, template_dir=template_dir)
        return cls(cloudformation, values, stack_name, CreatedResources(stack_name=stack_name))

    def create(
        self, session: Any, *, webhook_secret: str, flinks_username: str, flinks_password: str
    ) -> CreatedResources:
        """Create the resources through ``session``, the secrets shaped as deployed (``{"current": ...}``,
        ``{"username", "password"}``); functions, their versions, aliases and layers are named first
        (one's environment may name another; ``control_plane`` replaces them with moto's)."""
        values: dict[str, dict[str, Any]] = {}
        if webhook := secret_referenced_by(self.template, WEBHOOK_SECRET_VARIABLE):
            values[webhook] = {"current": webhook_secret}
        if credentials := secret_referenced_by(self.template, FLINKS_CREDENTIALS_VARIABLE):
            values[credentials] = {"username": flinks_username, "password": flinks_password}
        self.created = create_resources(
            self.template, session=session, stack_name=self.stack_name, secret_values=values
        )
        self.name_functions()
        return self.created

    def name_functions(self) -> None:
        """What ``Ref``/``Fn::GetAtt`` give for the functions, their first version, aliases and layers."""
        refs, attributes = self.created.refs, self.created.attributes
        for logical_id in resources_of_type(self.template, "AWS::Lambda::Function"):
            refs.setdefault(logical_id, self.function_name(logical_id))
            attributes.setdefault((logical_id, "Arn"), function_arn(self.function_name(logical_id)))
        for kind, suffix in (("AWS::Lambda::Version", "1"), ("AWS::Lambda::Alias", None)):
            for logical_id, resource in resources_of_type(self.template, kind).items():
                properties = resource["Properties"]
                function = function_behind(self.template, properties["FunctionName"])
                qualifier = suffix or properties["Name"]
                refs.setdefault(logical_id, f"{function_arn(self.function_name(str(function)))}:{qualifier}")
                attributes.setdefault((logical_id, "Version"), "1")
        for logical_id, resource in resources_of_type(self.template, "AWS::Lambda::LayerVersion").items():
            name = resource["Properties"].get("LayerName", logical_id)
            refs.setdefault(logical_id, f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:1")

    def function_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def function(self, logical_id: str) -> dict[str, Any]:
        """The ``AWS::Lambda::Function``'s properties as SAM generated them (Globals merged)."""
        resource = self.template["Resources"][logical_id]
        if resource["Type"] != "AWS::Lambda::Function":
            raise KeyError(f"{logical_id} is a {resource['Type']}, not a function")
        return dict(resource["Properties"])

    def environment(self, logical_id: str, **overrides: str) -> dict[str, str]:
        variables = self.function(logical_id).get("Environment", {}).get("Variables", {})
        return {
            name: resolve(value, self.created, self.parameters) for name, value in variables.items()
        } | overrides
