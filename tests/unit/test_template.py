"""What the validators miss in template.yaml: wiring, IAM scope, stream settings, alarms, dashboard.

sam validate, cfn-lint and checkov check shapes; these tests pin the meaning (a typo such as
``ReportBatchItemFailure`` or a role that can read the other function's secret passes all three).
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from testkit.streams import matches_any
from tests.support.templates import OPERATOR_KEYS, deployed

REPO = Path(__file__).resolve().parents[2]

# Actions that have no resource-level permissions in IAM: "*" is the only possible resource.
NO_RESOURCE_LEVEL = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}
XRAY = {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
# Every configuration the IAM tests look at: sandbox as shipped, sandbox with the operator's keys, prod.
CONFIGURATIONS = {
    "sandbox": ("default", {}),
    "sandbox-with-keys": ("default", OPERATOR_KEYS),
    "prod": ("prod", {}),
    "prod-with-keys": ("prod", OPERATOR_KEYS),
}
SERVICE = {"service": "flinks-geft"}
OPS_INDEX = "${GuaranteesTable.Arn}/index/OpsQueueIndex"


# ----------------------------------------------------------------- helpers


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties", {}))


def render(value: Any) -> str:
    """A reference as a short readable string: ``Table.Arn``, ``WebhookSecret``, ``*``."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return ".".join(value["Fn::GetAtt"])
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return str(value["Fn::Sub"])
    return str(value)


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """The role's inline policy statements (of a ``deployed`` template: no ``Fn::If`` left)."""
    return [
        statement
        for policy in props(template, role_id)["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def grants(template: dict[str, Any], role_id: str) -> set[tuple[str, str]]:
    return {
        (action, render(resource))
        for statement in statements(template, role_id)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def configured(template: dict[str, Any], configuration: str) -> dict[str, Any]:
    environment, overrides = CONFIGURATIONS[configuration]
    return deployed(template, environment, **overrides)


def all_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every role, in every configuration (the keys, prod's hook)."""
    found = []
    for configuration in CONFIGURATIONS:
        rendered = configured(template, configuration)
        for role in [name for name, r in rendered["Resources"].items() if r["Type"] == "AWS::IAM::Role"]:
            found += statements(rendered, role)
    return found


def dimensions(alarm: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: render(d["Value"]) for d in alarm.get("Dimensions", [])}


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as JSON, every ``${...}`` replaced by 0 (some sit where a number goes)."""
    body = props(template, "PipelineDashboard")["DashboardBody"]["Fn::Sub"]
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "0", body)))


def dashboard_metrics(template: dict[str, Any]) -> list[list[Any]]:
    """The dashboard's metric rows (math expressions, rows without a namespace, left out)."""
    return [
        metric
        for widget in dashboard(template)["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if isinstance(metric[0], str)
    ]


def dashboard_expressions(template: dict[str, Any]) -> list[str]:
    return [
        part["expression"]
        for widget in dashboard(template)["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        for part in metric
        if isinstance(part, dict) and "expression" in part
    ]


def deploy_overrides(environment: str) -> dict[str, str]:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    overrides = config[environment]["deploy"]["parameters"]["parameter_overrides"]
    return dict(entry.split("=", 1) for entry in overrides)


# ----------------------------------------------------------------- runtime and handlers


def test_globals_pin_runtime_and_architecture(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]

    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    layer = template["Resources"]["SharedLayer"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize(
    ("function_id", "module_file"),
    [
        ("WebhookReceiverFunction", "functions/webhook_receiver/webhook_receiver/handler.py"),
        ("DecisionProcessorFunction", "functions/decision_processor/decision_processor/handler.py"),
    ],
)
def test_handler_points_at_a_module_defining_it(
    template: dict[str, Any], function_id: str, module_file: str
) -> None:
    # GIVEN the function's CodeUri and Handler
    function = props(template, function_id)
    module, _, name = function["Handler"].rpartition(".")

    # WHEN the handler is resolved the way the Lambda runtime does
    source = REPO / function["CodeUri"] / (module.replace(".", "/") + ".py")

    # THEN the module exists and defines the function at top level
    assert source == REPO / module_file
    tree = ast.parse(source.read_text())
    assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_receiver_answers_only_post_on_the_webhook_route(template: dict[str, Any]) -> None:
    receiver = props(template, "WebhookReceiverFunction")

    # POST only: API Gateway itself answers any other method or path (404) without invoking the receiver
    (event,) = receiver["Events"].values()
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {
        "ApiId": {"Ref": "WebhookHttpApi"},
        "Method": "POST",
        "Path": "/webhooks/flinks",
    }
    assert receiver["Environment"]["Variables"]["WEBHOOK_PATH"] == "/webhooks/flinks"


# ----------------------------------------------------------------- secrets and IAM


@pytest.mark.parametrize(
    ("function_id", "variable", "secret_id"),
    [
        ("WebhookReceiverFunction", "WEBHOOK_SECRET_ARN", "WebhookSecret"),
        ("DecisionProcessorFunction", "FLINKS_CREDENTIALS_SECRET_ARN", "FlinksApiSecret"),
    ],
)
def test_each_function_gets_its_own_secret(
    template: dict[str, Any], function_id: str, variable: str, secret_id: str
) -> None:
    assert props(template, function_id)["Environment"]["Variables"][variable] == {"Ref": secret_id}


@pytest.mark.parametrize(
    ("role_id", "foreign_secret"),
    [("DecisionProcessorRole", "WebhookSecret"), ("WebhookReceiverRole", "FlinksApiSecret")],
)
def test_no_role_reads_the_other_functions_secret(
    template: dict[str, Any], role_id: str, foreign_secret: str
) -> None:
    for configuration in CONFIGURATIONS:
        rendered = configured(template, configuration)
        assert foreign_secret not in {resource for _, resource in grants(rendered, role_id)}


def test_functions_use_their_explicit_roles_only(template: dict[str, Any]) -> None:
    for function_id, role_id in (
        ("WebhookReceiverFunction", "WebhookReceiverRole"),
        ("DecisionProcessorFunction", "DecisionProcessorRole"),
        ("ReviewTimeoutFunction", "ReviewTimeoutRole"),
        ("ReconcilerFunction", "ReconcilerRole"),
    ):
        function = props(template, function_id)
        assert function["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
        assert "Policies" not in function  # SAM policy templates would widen the role
        assert "ManagedPolicyArns" not in props(template, role_id)


# What each role grants beyond writing its own log group and sending traces: exactly this.
ROLE_GRANTS = {
    ("WebhookReceiverRole", "WebhookReceiverLogGroup"): {
        ("dynamodb:PutItem", "GuaranteesTable.Arn"),
        ("dynamodb:UpdateItem", "GuaranteesTable.Arn"),
        ("secretsmanager:GetSecretValue", "WebhookSecret"),
    },
    ("DecisionProcessorRole", "DecisionProcessorLogGroup"): {
        ("dynamodb:DescribeStream", "GuaranteesTable.StreamArn"),
        ("dynamodb:GetRecords", "GuaranteesTable.StreamArn"),
        ("dynamodb:GetShardIterator", "GuaranteesTable.StreamArn"),
        ("dynamodb:ListStreams", "*"),
        ("dynamodb:UpdateItem", "GuaranteesTable.Arn"),
        ("dynamodb:GetItem", "GuaranteesTable.Arn"),
        ("secretsmanager:GetSecretValue", "FlinksApiSecret"),
        ("sqs:SendMessage", "DecisionDeadLetterQueue.Arn"),
    },
    ("ReviewTimeoutRole", "ReviewTimeoutLogGroup"): {
        ("dynamodb:Query", OPS_INDEX),
        ("dynamodb:UpdateItem", "GuaranteesTable.Arn"),
    },
    ("ReconcilerRole", "ReconcilerLogGroup"): {
        ("dynamodb:Query", OPS_INDEX),
        ("dynamodb:GetItem", "GuaranteesTable.Arn"),
        ("dynamodb:UpdateItem", "GuaranteesTable.Arn"),
        ("secretsmanager:GetSecretValue", "FlinksApiSecret"),
    },
}


@pytest.mark.parametrize(("role_id", "log_group"), list(ROLE_GRANTS))
def test_role_grants_exactly(template: dict[str, Any], role_id: str, log_group: str) -> None:
    logs = {("logs:CreateLogStream", f"{log_group}.Arn"), ("logs:PutLogEvents", f"{log_group}.Arn")}
    assert grants(deployed(template), role_id) == ROLE_GRANTS[(role_id, log_group)] | logs | XRAY


VIA = {"dynamodb": "TABLE", "secretsmanager": "SECRETS", "sqs": "QUEUE"}


def _key_grants(role: str, operator_keys: bool) -> set[tuple[str, str, str]]:
    """(action, key, service it may be used through) the role needs; key is the operator's or the stack's."""
    table = OPERATOR_KEYS["TableKmsKeyArn"] if operator_keys else "EncryptionKey.Arn"
    secrets = OPERATOR_KEYS["SecretsKmsKeyArn"] if operator_keys else "EncryptionKey.Arn"
    queue = OPERATOR_KEYS["QueueKmsKeyArn"] if operator_keys else "EncryptionKey.Arn"
    table_use = {(a, table, "dynamodb") for a in ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")}
    table_use.add(("kms:DescribeKey", table, "dynamodb"))
    needs = {
        "WebhookReceiverRole": table_use | {("kms:Decrypt", secrets, "secretsmanager")},
        "DecisionProcessorRole": table_use
        | {("kms:Decrypt", secrets, "secretsmanager")}
        | {("kms:GenerateDataKey", queue, "sqs"), ("kms:Decrypt", queue, "sqs")},
        "ReviewTimeoutRole": table_use,
        "ReconcilerRole": table_use | {("kms:Decrypt", secrets, "secretsmanager")},
    }
    return needs[role]


def kms_grants(template: dict[str, Any], role_id: str) -> set[tuple[str, str, str]]:
    """(action, key, kms:ViaService service) of every KMS statement of the role."""
    found = set()
    for statement in statements(template, role_id):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("kms:")]
        if not actions:
            continue
        via = render(statement["Condition"]["StringEquals"]["kms:ViaService"])
        service = via.removeprefix("${AWS::Region}").split(".", 1)[0]
        found |= {(a, render(r), service) for a in actions for r in as_list(statement["Resource"])}
    return found


@pytest.mark.parametrize(
    "role_id", ["WebhookReceiverRole", "DecisionProcessorRole", "ReviewTimeoutRole", "ReconcilerRole"]
)
@pytest.mark.parametrize(
    ("configuration", "operator_keys"),
    [("sandbox-with-keys", True), ("prod", False), ("prod-with-keys", True)],
)
def test_kms_use_is_exactly_what_each_function_needs_through_its_service(
    template: dict[str, Any], role_id: str, configuration: str, operator_keys: bool
) -> None:
    # GIVEN a configuration with customer managed keys (the operator's, or prod's own)
    rendered = configured(template, configuration)

    # THEN the role may use exactly the keys of its stores, each only through that store's service
    assert kms_grants(rendered, role_id) == _key_grants(role_id, operator_keys)


@pytest.mark.parametrize(
    "role_id", ["WebhookReceiverRole", "DecisionProcessorRole", "ReviewTimeoutRole", "ReconcilerRole"]
)
def test_sandbox_without_keys_grants_no_kms(template: dict[str, Any], role_id: str) -> None:
    assert kms_grants(deployed(template), role_id) == set()


def test_every_kms_statement_is_limited_to_one_service(template: dict[str, Any]) -> None:
    kms_statements = [
        s for s in all_statements(template) if any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]

    assert kms_statements
    for statement in kms_statements:
        assert set(statement["Condition"]) == {"StringEquals"}, statement["Sid"]
        (key,) = statement["Condition"]["StringEquals"]
        assert key == "kms:ViaService", statement["Sid"]


def test_star_resource_only_where_iam_offers_nothing_narrower(template: dict[str, Any]) -> None:
    for statement in all_statements(template):
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= NO_RESOURCE_LEVEL, statement["Sid"]
            assert statement["Sid"].endswith("HasNoResourceLevelPermissions")


def test_no_role_can_delete_scan_or_use_wildcard_actions(template: dict[str, Any]) -> None:
    actions = {action for statement in all_statements(template) for action in as_list(statement["Action"])}
    assert "codedeploy:PutLifecycleEventHookExecutionStatus" in actions  # prod's hook role is included

    forbidden = [a for a in actions if re.search(r"Delete|Scan|\*", a.split(":", 1)[1])]
    assert forbidden == []
    assert all(statement["Effect"] == "Allow" for statement in all_statements(template))


def test_query_only_on_the_ops_queue_index(template: dict[str, Any]) -> None:
    resources = {
        render(resource)
        for statement in all_statements(template)
        if "dynamodb:Query" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }

    assert resources == {OPS_INDEX}


# ----------------------------------------------------------------- stream


def test_stream_event_source_settings(template: dict[str, Any]) -> None:
    (event,) = props(template, "DecisionProcessorFunction")["Events"].values()
    stream = event["Properties"]
    parameters = template["Parameters"]

    assert event["Type"] == "DynamoDB"
    assert stream["Stream"] == {"Fn::GetAtt": ["GuaranteesTable", "StreamArn"]}
    assert stream["StartingPosition"] == "TRIM_HORIZON"
    assert stream["BatchSize"] == {"Ref": "StreamBatchSize"}
    assert stream["MaximumBatchingWindowInSeconds"] == {"Ref": "StreamBatchingWindowSeconds"}
    assert parameters["StreamBatchingWindowSeconds"]["Default"] == 0  # no wait unless asked for
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["DestinationConfig"] == {
        "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["DecisionDeadLetterQueue", "Arn"]}}
    }
    # -1 means "forever" for both: the parameters must not allow it
    retries = parameters[render(stream["MaximumRetryAttempts"])]
    assert retries["MinValue"] >= 0
    assert retries["Default"] <= 10
    record_age = parameters[render(stream["MaximumRecordAgeInSeconds"])]
    assert record_age["MinValue"] >= 60
    assert record_age["MaxValue"] <= 604800
    assert template["Resources"]["GuaranteesTable"]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_IMAGE"
    }


def _stream_record(event_name: str, record_type: str, status: str) -> dict[str, Any]:
    image = {"recordType": {"S": record_type}, "status": {"S": status}}
    return {"eventName": event_name, "dynamodb": {"NewImage": image}}


@pytest.mark.parametrize(
    ("record", "admitted"),
    [
        pytest.param(_stream_record("INSERT", "GUARANTEE", "RECEIVED"), True, id="new-guarantee"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "REVIEWED"), True, id="review-decided"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "REDRIVE"), True, id="redrive"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "RECEIVED"), False, id="released-claim"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "DECIDING"), False, id="own-claim"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "REVIEW"), False, id="held-for-review"),
        pytest.param(_stream_record("MODIFY", "GUARANTEE", "CONFIRMED"), False, id="own-confirm"),
        pytest.param(_stream_record("INSERT", "GUARANTEE", "DECIDING"), False, id="not-received"),
        pytest.param(_stream_record("INSERT", "SESSION", "RECEIVED"), False, id="session-status"),
        pytest.param(_stream_record("INSERT", "QUARANTINE", "RECEIVED"), False, id="quarantine"),
        pytest.param(_stream_record("REMOVE", "GUARANTEE", "RECEIVED"), False, id="ttl-removal"),
        pytest.param(_stream_record("MODIFY", "SESSION", "REVIEWED"), False, id="not-a-guarantee"),
    ],
)
def test_filter_admits_new_guarantees_and_operator_decisions_only(
    template: dict[str, Any], record: dict[str, Any], admitted: bool
) -> None:
    (event,) = props(template, "DecisionProcessorFunction")["Events"].values()
    patterns = [json.loads(entry["Pattern"]) for entry in event["Properties"]["FilterCriteria"]["Filters"]]

    assert matches_any(patterns, record) is admitted


# ----------------------------------------------------------------- state


def test_table_is_on_demand_recoverable_retained_and_expiring(template: dict[str, Any]) -> None:
    table = template["Resources"]["GuaranteesTable"]
    properties = table["Properties"]

    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props(deployed(template, "prod"), "GuaranteesTable")["DeletionProtectionEnabled"] is True
    assert props(deployed(template), "GuaranteesTable")["DeletionProtectionEnabled"] is False


STACK_KEY = "EncryptionKey.Arn"


def encryption(rendered: dict[str, Any]) -> dict[str, str | None]:
    """The key each store is encrypted with (None: AWS owned or AWS managed)."""

    def key(value: Any) -> str | None:
        return None if value is None else render(value)

    table = props(rendered, "GuaranteesTable")["SSESpecification"]
    stores: dict[str, str | None] = {
        "GuaranteesTable": key(table.get("KMSMasterKeyId")) if table["SSEEnabled"] else None,
        "DecisionDeadLetterQueue": key(props(rendered, "DecisionDeadLetterQueue")["KmsMasterKeyId"]),
        "AlarmTopic": key(props(rendered, "AlarmTopic").get("KmsMasterKeyId")),
    }
    for name, resource in rendered["Resources"].items():
        if resource["Type"] in ("AWS::SecretsManager::Secret", "AWS::Logs::LogGroup"):
            stores[name] = key(resource["Properties"].get("KmsKeyId"))
    return stores


def test_sandbox_keeps_aws_owned_and_managed_keys(template: dict[str, Any]) -> None:
    stores = encryption(deployed(template))

    assert stores.pop("DecisionDeadLetterQueue") == "alias/aws/sqs"
    assert set(stores.values()) == {None}  # the table's AWS owned key, aws/secretsmanager, CloudWatch Logs'
    assert "EncryptionKey" not in deployed(template)["Resources"]


def test_prod_encrypts_every_store_with_its_own_customer_managed_key(template: dict[str, Any]) -> None:
    rendered = deployed(template, "prod")
    stores = encryption(rendered)

    # table (and so its stream), both secrets, the queue, the topic and every log group (the hook's too)
    assert len([name for name in stores if name.endswith("LogGroup")]) == 8
    assert stores == dict.fromkeys(stores, STACK_KEY)
    assert props(rendered, "GuaranteesTable")["SSESpecification"]["SSEType"] == "KMS"


def test_an_operators_keys_replace_the_stacks_key(template: dict[str, Any]) -> None:
    # GIVEN prod with the operator's table and logs keys only
    keys = {name: OPERATOR_KEYS[name] for name in ("TableKmsKeyArn", "LogsKmsKeyArn")}
    rendered = deployed(template, "prod", **keys)
    stores = encryption(rendered)

    # THEN those stores use them, the rest the stack's key, which still exists
    assert stores.pop("GuaranteesTable") == keys["TableKmsKeyArn"]
    assert {name: stores.pop(name) for name in list(stores) if name.endswith("LogGroup")} == dict.fromkeys(
        [name for name in encryption(rendered) if name.endswith("LogGroup")], keys["LogsKmsKeyArn"]
    )
    assert set(stores.values()) == {STACK_KEY}
    # and with every key brought, the stack creates none
    assert "EncryptionKey" not in deployed(template, "prod", **OPERATOR_KEYS)["Resources"]
    assert set(encryption(deployed(template, "prod", **OPERATOR_KEYS)).values()) <= set(
        OPERATOR_KEYS.values()
    )


def test_the_stacks_key_rotates_is_retained_and_admits_only_what_needs_it(template: dict[str, Any]) -> None:
    key = deployed(template, "prod")["Resources"]["EncryptionKey"]
    statements = {statement["Sid"]: statement for statement in key["Properties"]["KeyPolicy"]["Statement"]}

    # retained: the table is retained, and a deleted key would make it unreadable for good
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert statements["TheAccountAdministersTheKey"]["Principal"]["AWS"] == "arn:aws:iam::123456789012:root"
    alarms = statements["CloudWatchAlarmsPublishToTheAlarmTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(alarms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    logs = statements["CloudWatchLogsEncryptsThisStacksLogGroups"]
    assert logs["Principal"]["Service"] == "logs.ca-central-1.amazonaws.com"
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == [
        "arn:aws:logs:ca-central-1:123456789012:log-group:/aws/lambda/flinks-geft-prod/*",
        "arn:aws:logs:ca-central-1:123456789012:log-group:/aws/apigateway/flinks-geft-prod/*",
    ]
    assert set(statements) == {
        "TheAccountAdministersTheKey",
        "CloudWatchAlarmsPublishToTheAlarmTopic",
        logs["Sid"],
    }
    assert "EncryptionKeyAlias" in deployed(template, "prod")["Resources"]


def test_dead_letter_queue_keeps_messages_14_days(template: dict[str, Any]) -> None:
    assert props(template, "DecisionDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


@pytest.mark.parametrize("secret_id", ["WebhookSecret", "FlinksApiSecret"])
def test_secrets_are_generated_placeholders_with_instructions(
    template: dict[str, Any], secret_id: str
) -> None:
    secret = props(template, secret_id)

    assert "GenerateSecretString" in secret
    assert "Set it to JSON" in secret["Description"]


@pytest.mark.parametrize(
    ("secret_id", "readers"),
    [
        ("WebhookSecret", {"WebhookReceiverRole.Arn"}),
        ("FlinksApiSecret", {"DecisionProcessorRole.Arn", "ReconcilerRole.Arn"}),
    ],
)
def test_only_its_functions_read_a_secret_whatever_iam_says(
    template: dict[str, Any], secret_id: str, readers: set[str]
) -> None:
    # GIVEN the secret's resource policy
    rendered = deployed(template)
    (policy,) = [
        r["Properties"]
        for r in rendered["Resources"].values()
        if r["Type"] == "AWS::SecretsManager::ResourcePolicy"
        and r["Properties"]["SecretId"] == {"Ref": secret_id}
    ]
    deny, allow = policy["ResourcePolicy"]["Statement"]

    # THEN every principal but its readers is denied the value, and the readers are exactly the roles
    # whose IAM policies read it
    assert policy["BlockPublicPolicy"] is True
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == (
        "Deny",
        "*",
        "secretsmanager:GetSecretValue",
    )
    excepted = {render(arn) for arn in deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]}
    assert excepted == readers
    assert (allow["Effect"], allow["Action"]) == ("Allow", "secretsmanager:GetSecretValue")
    assert {render(arn) for arn in as_list(allow["Principal"]["AWS"])} == readers
    iam_readers = {
        f"{role}.Arn"
        for role in ("WebhookReceiverRole", "DecisionProcessorRole", "ReviewTimeoutRole", "ReconcilerRole")
        if ("secretsmanager:GetSecretValue", secret_id) in grants(rendered, role)
    }
    assert iam_readers == readers


def test_break_glass_roles_join_the_readers(template: dict[str, Any]) -> None:
    role = "arn:aws:iam::123456789012:role/security-break-glass"
    rendered = deployed(template, SecretReadersBreakGlassArns=role)

    deny = props(rendered, "WebhookSecretResourcePolicy")["ResourcePolicy"]["Statement"][0]
    excepted = deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]
    receiver = {"Fn::GetAtt": ["WebhookReceiverRole", "Arn"]}
    assert excepted == {"Fn::Split": [",", {"Fn::Join": [",", [receiver, role]]}]}


# ----------------------------------------------------------------- functions, API, logs


@pytest.mark.parametrize(
    ("function_id", "memory", "timeout", "concurrency"),
    [
        ("WebhookReceiverFunction", 512, 6, "ReceiverReservedConcurrency"),
        ("DecisionProcessorFunction", 512, 60, "ProcessorReservedConcurrency"),
    ],
)
def test_function_sizing_and_optional_reserved_concurrency(
    template: dict[str, Any], function_id: str, memory: int, timeout: int, concurrency: str
) -> None:
    function = props(template, function_id)

    assert (function["MemorySize"], function["Timeout"]) == (memory, timeout)
    condition, reserved, unreserved = function["ReservedConcurrentExecutions"]["Fn::If"]
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": concurrency}, "0"]}]}
    assert (reserved, unreserved) == ({"Ref": concurrency}, {"Ref": "AWS::NoValue"})
    assert template["Parameters"][concurrency]["Default"] == 0


@pytest.mark.parametrize(
    ("function_id", "log_group_id"),
    [
        ("WebhookReceiverFunction", "WebhookReceiverLogGroup"),
        ("DecisionProcessorFunction", "DecisionProcessorLogGroup"),
        ("ReviewTimeoutFunction", "ReviewTimeoutLogGroup"),
        ("ReconcilerFunction", "ReconcilerLogGroup"),
    ],
)
def test_each_function_logs_to_its_declared_log_group(
    template: dict[str, Any], function_id: str, log_group_id: str
) -> None:
    assert props(template, function_id)["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert props(template, log_group_id)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize(
    ("function_id", "schedule"),
    [("ReviewTimeoutFunction", "rate(1 minute)"), ("ReconcilerFunction", "rate(5 minutes)")],
)
def test_scheduled_jobs_run_alone_on_their_schedule(
    template: dict[str, Any], function_id: str, schedule: str
) -> None:
    function = props(template, function_id)
    (event,) = function["Events"].values()

    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", schedule)
    # one run at a time: two overlapping runs would only race each other on the same queue
    assert function["ReservedConcurrentExecutions"] == 1


def test_ops_queue_index_is_sparse_and_keys_only(template: dict[str, Any]) -> None:
    (index,) = template["Resources"]["GuaranteesTable"]["Properties"]["GlobalSecondaryIndexes"]

    assert index["IndexName"] == "OpsQueueIndex"
    assert index["KeySchema"] == [
        {"AttributeName": "opsQueue", "KeyType": "HASH"},
        {"AttributeName": "opsDueAtMs", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_api_throttles_and_writes_json_access_logs_without_bodies(template: dict[str, Any]) -> None:
    api = props(template, "WebhookHttpApi")
    access_log = api["AccessLogSettings"]

    assert api["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    assert access_log["DestinationArn"] == {"Fn::GetAtt": ["WebhookApiAccessLogGroup", "Arn"]}
    assert props(template, "WebhookApiAccessLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # $context.error.messageString is already a quoted JSON string
    line = json.loads(access_log["Format"].replace("$context.error.messageString", '"-"'))
    assert set(line) == {
        *("requestId", "requestTime", "ip", "routeKey", "status", "latency"),
        *("integrationLatency", "responseLength", "errorMessage"),
    }
    assert not re.search(r"body|header|querystring", access_log["Format"], re.IGNORECASE)


# ----------------------------------------------------------------- alarms


# (alarm, namespace, metric, dimensions, statistic, threshold)
def new_version(function: str) -> dict[str, str]:
    """The dimensions of a function's errors on the version its live alias was last moved to."""
    return {
        "FunctionName": function,
        "Resource": f"${{{function}}}:live",
        "ExecutedVersion": str({"Fn::Select": [7, {"Fn::Split": [":", {"Ref": f"{function}.Version"}]}]}),
    }


ALARMS = [
    (
        "SignatureRejectedAlarm",
        *("FlinksGeft", "SignatureRejected", {**SERVICE, "BodyShape": "geft-webhook"}, "Sum", "1"),
    ),
    (
        "SignatureProbesAlarm",
        *("FlinksGeft", "SignatureRejected", {**SERVICE, "BodyShape": "other"}),
        *("Sum", "SignatureProbesAlarmThreshold"),
    ),
    ("QuarantinedAlarm", "FlinksGeft", "Quarantined", SERVICE, "Sum", "1"),
    ("ConfirmFailedAlarm", "FlinksGeft", "ConfirmFailed", SERVICE, "Sum", "1"),
    ("ReceiverErrorsAlarm", "AWS/Lambda", "Errors", {"FunctionName": "WebhookReceiverFunction"}, "Sum", "1"),
    (
        "ReceiverThrottlesAlarm",
        "AWS/Lambda",
        "Throttles",
        {"FunctionName": "WebhookReceiverFunction"},
        "Sum",
        "1",
    ),
    (
        "ProcessorErrorsAlarm",
        "AWS/Lambda",
        "Errors",
        {"FunctionName": "DecisionProcessorFunction"},
        "Sum",
        "1",
    ),
    (
        "ProcessorThrottlesAlarm",
        *("AWS/Lambda", "Throttles", {"FunctionName": "DecisionProcessorFunction"}, "Sum", "1"),
    ),
    (
        "IteratorAgeAlarm",
        *("AWS/Lambda", "IteratorAge", {"FunctionName": "DecisionProcessorFunction"}, "Maximum"),
        "IteratorAgeAlarmThresholdMs",
    ),
    (
        "DeadLetterQueueAlarm",
        *(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": "DecisionDeadLetterQueue.QueueName"},
        ),
        *("Maximum", "1"),
    ),
    ("Api4xxAlarm", "AWS/ApiGateway", "4xx", {"ApiId": "WebhookHttpApi"}, "Sum", "Api4xxAlarmThreshold"),
    ("Api5xxAlarm", "AWS/ApiGateway", "5xx", {"ApiId": "WebhookHttpApi"}, "Sum", "1"),
    (
        "ReviewTimeoutErrorsAlarm",
        "AWS/Lambda",
        "Errors",
        {"FunctionName": "ReviewTimeoutFunction"},
        "Sum",
        "1",
    ),
    ("ReconcilerErrorsAlarm", "AWS/Lambda", "Errors", {"FunctionName": "ReconcilerFunction"}, "Sum", "1"),
    ("StuckGuaranteesAlarm", "FlinksGeft", "StuckGuarantees", SERVICE, "Sum", "1"),
    ("GuaranteeHeldAlarm", "FlinksGeft", "GuaranteeHeld", SERVICE, "Sum", "1"),
    ("ClaimRefusedAlarm", "FlinksGeft", "ClaimRefused", SERVICE, "Sum", "1"),
    ("ReviewAgingAlarm", "FlinksGeft", "OldestReviewAgeSeconds", SERVICE, "Maximum", "ReviewAgeAlarmSeconds"),
    ("SweeperErrorsAlarm", "AWS/Lambda", "Errors", {"FunctionName": "SweeperFunction"}, "Sum", "1"),
    ("AuditTrailErrorsAlarm", "AWS/Lambda", "Errors", {"FunctionName": "AuditTrailFunction"}, "Sum", "1"),
    (
        "AuditDeadLettersAlarm",
        *("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": "AuditDeadLetterQueue.QueueName"}),
        *("Maximum", "1"),
    ),
    *(
        (f"{name}NewVersionErrorsAlarm", "AWS/Lambda", "Errors", new_version(function), "Sum", "1")
        for name, function in (
            ("Receiver", "WebhookReceiverFunction"),
            ("Processor", "DecisionProcessorFunction"),
            ("ReviewTimeout", "ReviewTimeoutFunction"),
            ("Reconciler", "ReconcilerFunction"),
            ("Sweeper", "SweeperFunction"),
            ("AuditTrail", "AuditTrailFunction"),
        )
    ),
]


def test_the_alarm_set_is_exactly_the_documented_one(template: dict[str, Any]) -> None:
    declared = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    assert declared == {alarm[0] for alarm in ALARMS} | METRIC_MATH_ALARMS


# Alarms on a metric math expression (a rate), tested one by one below.
METRIC_MATH_ALARMS = {"FlinksErrorRateAlarm"}


def test_flinks_error_rate_alarm_divides_failed_calls_by_all_calls_when_there_are_enough(
    template: dict[str, Any],
) -> None:
    alarm = props(template, "FlinksErrorRateAlarm")
    queries = {query["Id"]: query for query in alarm["Metrics"]}

    stats = {
        query_id: (query["MetricStat"]["Metric"]["MetricName"], query["MetricStat"]["Stat"])
        for query_id, query in queries.items()
        if "MetricStat" in query
    }
    assert stats == {"failed": ("FlinksCallFailed", "Sum"), "calls": ("FlinksCallCount", "Sum")}
    assert all(
        dimensions(query["MetricStat"]["Metric"]) == SERVICE
        for query in queries.values()
        if "MetricStat" in query
    )
    assert queries["errorRate"]["Expression"] == "IF(calls >= 5, 100 * failed / calls, 0)"
    assert [query["Id"] for query in alarm["Metrics"] if query["ReturnData"]] == ["errorRate"]
    # sustained: 3 of 5 minutes at or above the configured percentage
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3)
    assert alarm["Threshold"] == {"Ref": "FlinksErrorRateAlarmPercent"}
    assert template["Parameters"]["FlinksErrorRateAlarmPercent"]["Default"] == 20
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@pytest.mark.parametrize(
    ("alarm_id", "namespace", "metric", "expected_dimensions", "statistic", "threshold"),
    [pytest.param(*alarm, id=alarm[0]) for alarm in ALARMS],
)
def test_alarm_watches_the_right_metric_and_notifies_the_topic(
    template: dict[str, Any],
    alarm_id: str,
    namespace: str,
    metric: str,
    expected_dimensions: dict[str, str],
    statistic: str,
    threshold: str,
) -> None:
    alarm = props(template, alarm_id)

    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert dimensions(alarm) == expected_dimensions
    assert alarm["Statistic"] == statistic
    assert render(alarm["Threshold"]) == threshold
    assert alarm["ComparisonOperator"] in {"GreaterThanOrEqualToThreshold", "GreaterThanThreshold"}
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def custom_metrics(template: dict[str, Any], namespace: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, dimensions) of every custom metric the alarms and the dashboard read."""
    alarms = [props(template, alarm[0]) for alarm in ALARMS]
    read = [(alarm["MetricName"], dimensions(alarm)) for alarm in alarms if alarm["Namespace"] == namespace]
    for metric in dashboard_metrics(template):
        if metric[0] == namespace:
            parts = [part for part in metric if not isinstance(part, dict)]
            read.append((parts[1], dict(zip(parts[2::2], parts[3::2], strict=True))))
    return read


def test_custom_metrics_are_read_with_the_namespace_and_service_they_are_emitted_with(
    template: dict[str, Any],
) -> None:
    # GIVEN the namespace and service name the functions' Powertools Metrics run with
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace, service = variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]

    # WHEN the alarms and the dashboard read custom metrics
    read = custom_metrics(template, namespace)

    # THEN each carries the service dimension Powertools adds to every metric
    assert len(read) > len([alarm for alarm in ALARMS if alarm[1] == namespace])
    for name, dims in read:
        assert dims.get("service") == service, name


def test_every_custom_metric_read_is_emitted_by_the_code(template: dict[str, Any]) -> None:
    source = "\n".join(
        path.read_text() for root in ("functions", "layers") for path in (REPO / root).rglob("*.py")
    )

    read = {name for name, _ in custom_metrics(template, "FlinksGeft")}

    assert {name for name in read if f'"{name}"' not in source} == set()


def test_alarm_email_subscribes_only_when_given(template: dict[str, Any]) -> None:
    subscription = template["Resources"]["AlarmEmailSubscription"]

    assert subscription["Condition"] == "HasAlarmEmail"
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_alarm_runbook_link_has_a_section() -> None:
    # GIVEN the headings of docs/operations.md as GitHub anchors
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", operations, re.MULTILINE)
    }

    # WHEN the alarm descriptions link to it
    links = set(re.findall(r"docs/operations\.md#([a-z0-9-]+)", (REPO / "template.yaml").read_text()))

    # THEN every link lands on a section
    assert len(links) >= 10
    assert links <= anchors


# ----------------------------------------------------------------- dashboard and outputs


def test_dashboard_shows_the_pipeline_at_a_glance(template: dict[str, Any]) -> None:
    shown = {
        tuple(part for part in metric if not isinstance(part, dict)) for metric in dashboard_metrics(template)
    }
    stats = {
        (metric[1], part.get("stat"))
        for metric in dashboard_metrics(template)
        for part in metric
        if isinstance(part, dict)
    }

    for name in (
        "Received",
        "Duplicate",
        "ConfirmFailed",
        "SignatureRejected",
        "Quarantined",
        "DecisionRetried",
    ):
        assert ("FlinksGeft", name, "service", "flinks-geft") in shown, name
    for decision in ("accept", "reject"):
        assert ("FlinksGeft", "Decided", "Decision", decision, "service", "flinks-geft") in shown
    assert {("WebhookToConfirmLatency", "p50"), ("WebhookToConfirmLatency", "p99")} <= stats
    families = {metric[:2] for metric in shown}
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/Lambda", "IteratorAge")} <= families
    assert {("AWS/ApiGateway", m) for m in ("4xx", "5xx", "Latency")} <= families
    assert {("AWS/Lambda", m) for m in ("Errors", "Throttles", "Duration")} <= families
    # the Flinks row: latency per operation, calls by status class, the alarm's error rate
    assert ("FlinksCallLatency", "p99") in stats
    for operation in ("authorize", "details", "confirm", "status"):
        assert ("FlinksGeft", "FlinksCallLatency", "Operation", operation, "service", "flinks-geft") in shown
    assert any('MetricName="FlinksCalls"' in expression for expression in dashboard_expressions(template))
    assert "IF(calls >= 5, 100 * failed / calls, 0)" in dashboard_expressions(template)
    (alarm_widget,) = [w for w in dashboard(template)["widgets"] if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(ALARMS) + len(METRIC_MATH_ALARMS)


def test_dashboard_references_only_what_the_template_declares(template: dict[str, Any]) -> None:
    body = props(template, "PipelineDashboard")["DashboardBody"]["Fn::Sub"]
    known = set(template["Resources"]) | set(template["Parameters"]) | {"AWS::Region"}

    references = {name.split(".", 1)[0] for name in re.findall(r"\$\{([^}]+)\}", body)}
    assert references <= known


def test_outputs_give_the_operator_everything_it_looks_up(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {
        "WebhookUrl",
        "GuaranteesTableName",
        "WebhookSecretArn",
        "FlinksApiSecretArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "DashboardUrl",
        "AlarmTopicArn",
        "WebhookReceiverFunctionName",
        "DecisionProcessorFunctionName",
        "GuaranteesTableStreamArn",
    }
    assert deployed(template)["Outputs"]["WebhookUrl"]["Value"] == {
        "Fn::Sub": "https://${WebhookHttpApi}.execute-api.ca-central-1.${AWS::URLSuffix}/webhooks/flinks"
    }


# ----------------------------------------------------------------- samconfig


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("default", {"Environment": "sandbox", "FlinksBaseUrl": "https://payments-uat.flinksapp.com"}),
        ("prod", {"Environment": "prod", "FlinksBaseUrl": "https://payments.flinksapp.com"}),
    ],
)
def test_samconfig_environments_override_real_parameters_with_valid_values(
    template: dict[str, Any], environment: str, expected: dict[str, str]
) -> None:
    overrides = deploy_overrides(environment)

    assert overrides.items() >= expected.items()
    for name, value in overrides.items():
        spec = template["Parameters"][name]  # a typo here would be silently ignored by CloudFormation
        if "AllowedValues" in spec:
            assert value in {str(v) for v in spec["AllowedValues"]}, name
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), name
        if "MinValue" in spec:
            assert float(value) >= spec["MinValue"], name


def test_prod_is_stricter_than_sandbox(template: dict[str, Any]) -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    sandbox, prod = deploy_overrides("default"), deploy_overrides("prod")
    default_retention = template["Parameters"]["LogRetentionDays"]["Default"]

    assert (
        config["default"]["global"]["parameters"]["stack_name"]
        != config["prod"]["global"]["parameters"]["stack_name"]
    )
    assert int(prod["LogRetentionDays"]) > int(sandbox.get("LogRetentionDays", default_retention))
    assert (
        int(prod["ReceiverReservedConcurrency"])
        >= template["Parameters"]["ApiThrottlingBurstLimit"]["Default"]
    )
    assert int(prod["ProcessorReservedConcurrency"]) > 0
    for environment in ("default", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        # AUTO_EXPAND: the AWS::LanguageExtensions transform; never NAMED_IAM (no role has a fixed name)
        assert deploy["capabilities"] == "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        assert deploy["confirm_changeset"] is True
        assert deploy["resolve_s3"] is True
