"""``make smoke`` against the local stack: the documented command passes on a healthy stack without
changing it, and each check fails when what it watches is broken (an alarm firing or gone, the
dashboard gone, the mapping on $LATEST or disabled, a receiver that takes a bad signature or stores it,
a refusal that says too much)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from geft_checks import smoke
from geft_checks.smoke import (
    ReadOnlyViolationError,
    alarms_quiet,
    bad_signature_rejected,
    dashboard_exists,
    forbid_writes,
    stream_invokes_live_alias,
)
from geft_local.stack import LocalStack
from geft_ops.resources import StackResources, from_local_state

from testkit import http
from testkit.http import RecordingServer, Request
from tests.e2e.conftest import StartStack
from tests.support.commands import documented_line, run_documented

pytestmark = pytest.mark.e2e

CHECK_NAMES = ["bad-signature", "alarms", "dashboard", "stream-mapping"]


@pytest.fixture(scope="module")
def smoke_stack(start_stack: StartStack) -> LocalStack:
    return start_stack("smoke")


@pytest.fixture
def resources(smoke_stack: LocalStack) -> StackResources:
    """The stack as the smoke test finds it (its state file), with writes refused as the command does."""
    found = from_local_state(smoke_stack.state_path)
    forbid_writes(found.session)
    return found


def _table_items(stack: LocalStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.aws.client("dynamodb").scan(
        TableName=stack.pipeline_table, ConsistentRead=True
    )["Items"]
    return items


def _processor_mapping(stack: LocalStack) -> dict[str, Any]:
    outputs = stack.outputs()
    mappings = stack.aws.client("lambda").list_event_source_mappings(
        EventSourceArn=outputs["GuaranteesTableStreamArn"]
    )["EventSourceMappings"]
    mine: dict[str, Any] = next(
        mapping for mapping in mappings if outputs["DecisionProcessorFunctionName"] in mapping["FunctionArn"]
    )
    return mine


def test_make_smoke_local_passes_and_changes_nothing(smoke_stack: LocalStack) -> None:
    # GIVEN the local stack running, with what its table holds now
    before = _table_items(smoke_stack)

    # WHEN the local form README documents runs as written, finding the stack as make local's tools do
    line = documented_line("README.md", "make smoke LOCAL=1")
    assert line == "make smoke LOCAL=1"
    completed = run_documented(
        ["bash", "-c", line], environment={"LOCAL_RUN_DIR": str(smoke_stack.config.run_dir)}
    )

    # THEN every check passed, each on its own line with what it saw
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[:2] for line in lines] == [["PASS", name] for name in CHECK_NAMES]
    assert "401" in lines[0]
    assert "invalid_signature" in lines[0]
    alarms = [row for row in smoke_stack.stack_resources() if row.resource_type == "AWS::CloudWatch::Alarm"]
    assert alarms
    assert f"{len(alarms)} alarms owned by the stack ({len(alarms)} OK), none in ALARM" in lines[1]
    assert f"{smoke_stack.config.stack_name}-pipeline" in lines[2]
    assert "DecisionProcessorFunction:live" in lines[3]
    assert completed.stdout.rstrip().endswith("all 4 checks passed")
    # AND the one wrongly signed POST stored nothing (the table is as it was)
    assert _table_items(smoke_stack) == before


def test_smoke_is_read_only_by_construction(resources: StackResources, smoke_stack: LocalStack) -> None:
    # GIVEN the smoke test's session (writes refused)
    before = _table_items(smoke_stack)

    # WHEN anything tries to write through it
    with pytest.raises(ReadOnlyViolationError):
        resources.client("dynamodb").put_item(TableName=smoke_stack.pipeline_table, Item={"pk": {"S": "x"}})
    with pytest.raises(ReadOnlyViolationError):
        resources.client("cloudwatch").set_alarm_state(AlarmName="x", StateValue="ALARM", StateReason="x")

    # THEN nothing was sent
    assert _table_items(smoke_stack) == before


def test_an_alarm_in_alarm_fails_the_smoke_test(smoke_stack: LocalStack, resources: StackResources) -> None:
    # GIVEN one of the stack's alarms firing
    name = f"{smoke_stack.config.stack_name}-receiver-errors"
    cloudwatch = smoke_stack.aws.client("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    try:
        # WHEN the alarms check runs, and the whole command
        result = alarms_quiet(resources)
        exit_code = smoke.main(["--local-state", str(smoke_stack.state_path)])
    finally:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test over")

    # THEN it fails naming the alarm, and the command exits 1
    assert not result.passed
    assert f"in ALARM: {name}" in result.saw
    assert exit_code == 1


def test_an_alarm_the_stack_owns_but_cloudwatch_lacks_fails(resources: StackResources) -> None:
    # GIVEN the stack's resources naming an alarm that does not exist (deleted by hand)
    rows = [
        *resources.local["resources"],
        {"logicalId": "GoneAlarm", "type": "AWS::CloudWatch::Alarm", "physicalId": "geft-e2e-smoke-gone"},
    ]
    doctored = replace(resources, local={**resources.local, "resources": rows})

    # WHEN the alarms check runs
    result = alarms_quiet(doctored)

    # THEN it fails naming the missing one
    assert not result.passed
    assert "missing from CloudWatch: geft-e2e-smoke-gone" in result.saw


def test_a_missing_dashboard_fails(smoke_stack: LocalStack, resources: StackResources) -> None:
    # GIVEN the dashboard deleted
    name = f"{smoke_stack.config.stack_name}-pipeline"
    cloudwatch = smoke_stack.aws.client("cloudwatch")
    body = cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"]
    assert dashboard_exists(resources).passed
    cloudwatch.delete_dashboards(DashboardNames=[name])
    try:
        # WHEN the dashboard check runs
        result = dashboard_exists(resources)
    finally:
        cloudwatch.put_dashboard(DashboardName=name, DashboardBody=body)

    # THEN it fails
    assert not result.passed
    assert f"{name} does not exist" in result.saw


def test_a_mapping_on_latest_fails(smoke_stack: LocalStack, resources: StackResources) -> None:
    # GIVEN the processor's stream mapping pointed at the unqualified function ($LATEST)
    mapping = _processor_mapping(smoke_stack)
    lambda_client = smoke_stack.aws.client("lambda")
    processor = smoke_stack.outputs()["DecisionProcessorFunctionName"]
    assert stream_invokes_live_alias(resources).passed
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], FunctionName=processor)
    try:
        # WHEN the mapping check runs
        result = stream_invokes_live_alias(resources)
    finally:
        _repoint(mapping["UUID"], mapping["FunctionArn"])

    # THEN it fails saying what the mapping invokes instead of the alias
    assert not result.passed
    assert f"the processor's mapping invokes {processor} ($LATEST)" in result.saw
    assert stream_invokes_live_alias(resources).passed


def test_a_disabled_mapping_fails(smoke_stack: LocalStack, resources: StackResources) -> None:
    # GIVEN the processor's mapping disabled
    mapping = _processor_mapping(smoke_stack)
    lambda_client = smoke_stack.aws.client("lambda")
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    try:
        result = stream_invokes_live_alias(resources)
    finally:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)

    # THEN it fails: its records would wait on the stream
    assert not result.passed
    assert "is Disabled" in result.saw


def _repoint(uuid: str, function_arn: str) -> None:
    """Back to the alias: moto's update would record the alias's version (control_plane's docstring)."""
    from moto.awslambda.models import lambda_backends

    lambda_backends["123456789012"]["us-east-1"]._event_source_mappings[uuid].function_arn = function_arn


# -- receivers that misbehave -------------------------------------------------------------------------


Answer = Callable[[bytes], tuple[int, bytes]]


@contextlib.contextmanager
def fake_receiver(answer: Answer) -> Iterator[str]:
    """An HTTP receiver on 127.0.0.1 that answers every POST with ``answer(body)``; yields its URL."""

    def reply(request: Request) -> http.Answer:
        status, body = answer(request.body)
        return http.Answer(status, body, (("content-type", "application/json"),))

    with RecordingServer(reply) as server:
        yield f"{server.url}/webhooks/flinks"


def _aimed_at(resources: StackResources, url: str) -> StackResources:
    return replace(resources, outputs={**resources.outputs, "WebhookUrl": url})


REFUSAL = json.dumps({"error": {"code": "invalid_signature", "requestId": "r-1"}}).encode()


def test_a_receiver_that_accepts_a_bad_signature_fails(resources: StackResources) -> None:
    # GIVEN a receiver that answers 200 to anything
    with fake_receiver(lambda body: (200, b'{"outcome": "stored"}')) as url:
        # WHEN the check posts its wrongly signed delivery there
        result = bad_signature_rejected(_aimed_at(resources, url))

    # THEN it fails: signature checking is broken
    assert not result.passed
    assert "200" in result.saw
    assert "signature checking is broken" in result.saw


def test_a_receiver_that_refuses_but_stores_fails(smoke_stack: LocalStack, resources: StackResources) -> None:
    # GIVEN a receiver that answers 401 as ours does, but first writes the delivery to the table
    dynamodb = smoke_stack.aws.client("dynamodb")

    def store_then_refuse(body: bytes) -> tuple[int, bytes]:
        session_id = json.loads(body)["sessionId"]
        dynamodb.put_item(
            TableName=smoke_stack.pipeline_table,
            Item={
                "pk": {"S": session_id},
                "sk": {"S": "GUARANTEE#single"},
                "recordType": {"S": "GUARANTEE"},
                "status": {"S": "RECEIVED"},
                "sessionId": {"S": session_id},
            },
        )
        return 401, REFUSAL

    with fake_receiver(store_then_refuse) as url:
        result = bad_signature_rejected(_aimed_at(resources, url))

    # THEN it fails: something was stored for the smoke test's session id
    assert not result.passed
    assert "stored 1 guarantee item(s)" in result.saw


def test_a_refusal_that_says_more_than_a_code_fails(resources: StackResources) -> None:
    # GIVEN a 401 that names the table
    chatty = json.dumps({"error": {"code": "invalid_signature", "requestId": "r", "table": "geft-prod"}})
    with fake_receiver(lambda body: (401, chatty.encode())) as url:
        result = bad_signature_rejected(_aimed_at(resources, url))

    # THEN it fails: an unauthenticated caller learns something about the stack
    assert not result.passed
    assert "more than a code and a request id" in result.saw


def test_the_smoke_delivery_cannot_page_or_become_a_guarantee() -> None:
    # GIVEN the delivery the smoke test sends
    from datetime import UTC, datetime

    from geft.signature import verify_signature
    from geft.webhook_events import UnrecognizedEvent, classify

    delivery = smoke.SmokeDelivery.new(datetime.now(UTC))

    # THEN its session id is synthetic and no UUID: not G-EFT shaped (no SignatureRejected page), and
    # even a receiver that skipped verification could not store it as a guarantee
    assert delivery.session_id.startswith("smoke-test-")
    assert isinstance(classify(delivery.body), UnrecognizedEvent)
    # AND its signature is well formed but matches no secret of ours
    assert delivery.signature.startswith("sha256=")
    assert not verify_signature(delivery.body, delivery.signature, ["local-dev-webhook-secret"])


# -- the deployed forms, against a stack CloudFormation made (moto's, on the local stack's endpoint) ----


def _deploy_by_cloudformation(stack: LocalStack, name: str, region: str) -> None:
    """A stack named ``name`` in ``region`` with a dashboard (moto's CloudFormation makes no alarms)
    whose outputs are the local stack's: its webhook, table and stream mapping."""
    outputs = {key: {"Value": value} for key, value in stack.outputs().items()}
    template = {
        "Resources": {
            "PipelineDashboard": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {
                    "DashboardName": f"{name}-pipeline",
                    "DashboardBody": json.dumps(
                        {"widgets": [{"type": "text", "properties": {"markdown": "-"}}]}
                    ),
                },
            }
        },
        "Outputs": outputs,
    }
    stack.aws.client("cloudformation", region_name=region).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def _aws_at(stack: LocalStack, **more: str) -> dict[str, str]:
    """Credentials and an endpoint that reach only the local moto (no real AWS)."""
    return {
        "AWS_ENDPOINT_URL": stack.moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        **more,
    }


def _verdicts(stdout: str) -> dict[str, str]:
    return {
        line.split()[1]: line.split()[0] for line in stdout.splitlines() if line.startswith(("PASS", "FAIL"))
    }


def test_the_deployed_form_finds_the_stack_by_name(smoke_stack: LocalStack) -> None:
    # GIVEN a stack deployed under README's name, in your default region
    line = documented_line("README.md", "make smoke STACK=flinks-geft-sandbox")
    assert line == "make smoke STACK=flinks-geft-sandbox"
    assert line == documented_line("docs/operations.md", "make smoke STACK=flinks-geft-sandbox")
    _deploy_by_cloudformation(smoke_stack, "flinks-geft-sandbox", "us-east-1")

    # WHEN README's line runs as written
    completed = run_documented(
        ["bash", "-c", line], environment=_aws_at(smoke_stack, AWS_DEFAULT_REGION="us-east-1")
    )

    # THEN it read that stack: its webhook, dashboard and mapping pass; alarms fail, as this stack has none
    assert "smoke test of stack flinks-geft-sandbox" in completed.stdout, completed.stderr
    assert _verdicts(completed.stdout) == {
        "bad-signature": "PASS",
        "alarms": "FAIL",
        "dashboard": "PASS",
        "stream-mapping": "PASS",
    }
    assert "FAIL  alarms          the stack owns no alarms" in completed.stdout
    assert completed.returncode != 0


def test_the_prod_form_reads_the_region_it_is_given(smoke_stack: LocalStack) -> None:
    # GIVEN the prod stack in ca-central-1, and no region of yours
    line = documented_line("README.md", "make smoke STACK=flinks-geft-prod")
    assert line == "make smoke STACK=flinks-geft-prod REGION=ca-central-1"
    assert line == documented_line("docs/operations.md", "make smoke STACK=flinks-geft-prod")
    _deploy_by_cloudformation(smoke_stack, "flinks-geft-prod", "ca-central-1")

    # WHEN the line runs with REGION, and once without it
    with_region = run_documented(["bash", "-c", line], environment=_aws_at(smoke_stack))
    without = run_documented(["make", "smoke", "STACK=flinks-geft-prod"], environment=_aws_at(smoke_stack))

    # THEN with REGION the stack is found there (its dashboard is), not in the Makefile's us-east-1
    assert "smoke test of stack flinks-geft-prod" in with_region.stdout, with_region.stderr
    assert _verdicts(with_region.stdout)["dashboard"] == "PASS"
    assert "geft-check smoke: cannot read stack flinks-geft-prod" in without.stderr
    assert without.returncode != 0
