"""The receiver's edge, in-process under moto: what an unauthenticated caller is told, and who may call.

Every refusal is a fixed code plus the request id: no ARN, account id, secret name, path or method,
whether the container is cold or warm and whatever failed. The optional source allow-list is checked
before any other work (a refused caller costs no secret read and no HMAC).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from geft.errors import ConfigError
from webhook_receiver.config import ReceiverConfig
from webhook_receiver.edge import (
    BodyShape,
    SourceAllowList,
    record_signature_rejected_shape,
    rejected_body_shape,
    request_id_of,
)

from testkit.aws import aws_calls_recorded
from testkit.template import CreatedResources
from testkit.webhooks import guarantee_body, status_body, webhook_event
from tests.support.constants import TEST_WEBHOOK_SECRET

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
REQUEST_ID = "JqVbJh1ZoAMEVdw="  # the shape API Gateway gives requestContext.requestId
SESSION_ID = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"
PROBE_PATH = "/webhooks/flinks/../../internal-probe"


def _event(body: bytes, *, secret: str | None, **changes: Any) -> dict[str, Any]:
    event = webhook_event(body, secret=secret, **changes)
    event["requestContext"]["requestId"] = REQUEST_ID
    return event


def _assert_tells_nothing(response: dict[str, Any], stack: CreatedResources, *, code: str) -> None:
    """The body is exactly {"error": {"code", "requestId"}} and names nothing of the stack."""
    document = json.loads(response["body"])
    assert document == {"error": {"code": code, "requestId": REQUEST_ID}}
    secret_arn = stack.ref("WebhookSecret")
    secret_name = secret_arn.split(":secret:", 1)[1]
    for leak in (
        "arn:",
        secret_arn,
        secret_name,
        "WebhookSecret",
        "123456789012",
        "webhooks/flinks",
        "internal-probe",
        "GET",
        "DELETE",
        "secretsmanager",
        "dynamodb",
    ):
        assert leak.lower() not in response["body"].lower(), leak
    assert set(response["headers"]) <= {"content-type", "allow"}


# ------------------------------------------------------------------ unreadable secret, cold and warm


@pytest.mark.parametrize(
    "signature",
    [pytest.param(None, id="unsigned"), pytest.param("sha256=" + "0" * 64, id="wrongly-signed")],
)
def test_cold_container_with_an_unreadable_secret_names_nothing(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke, table_items: Items, signature: str | None
) -> None:
    # GIVEN a cold container whose webhook secret cannot be read (deleted: AccessDenied looks the same)
    aws.client("secretsmanager").delete_secret(
        SecretId=stack.ref("WebhookSecret"), ForceDeleteWithoutRecovery=True
    )

    # WHEN a stranger posts to the webhook
    response = invoke_receiver(_event(guarantee_body(), secret=None, signature=signature))

    # THEN it gets 503 and a request id, nothing about the secret, and nothing is stored
    assert response["statusCode"] == 503
    _assert_tells_nothing(response, stack, code="unavailable")
    assert table_items() == []


def test_warm_container_whose_secret_became_unreadable_names_nothing(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN a warm container that read its secret, then the secret is gone
    assert invoke_receiver(_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET))["statusCode"] == 200
    aws.client("secretsmanager").delete_secret(
        SecretId=stack.ref("WebhookSecret"), ForceDeleteWithoutRecovery=True
    )

    # WHEN a wrongly signed request makes the receiver re-read the secret
    response = invoke_receiver(_event(guarantee_body(), secret="not-the-secret"))

    # THEN the re-read fails as 503 that says nothing more, and nothing new is stored
    assert response["statusCode"] == 503
    _assert_tells_nothing(response, stack, code="unavailable")
    assert len(table_items()) == 1


def test_secret_that_is_not_json_names_nothing(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke
) -> None:
    # GIVEN an operator put a plain string instead of {"current": ...}
    aws.client("secretsmanager").put_secret_value(SecretId=stack.ref("WebhookSecret"), SecretString="oops")

    # WHEN a delivery arrives
    response = invoke_receiver(_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET))

    # THEN 503 ("retry later"), with no detail of what is wrong with which secret
    assert response["statusCode"] == 503
    _assert_tells_nothing(response, stack, code="unavailable")


def test_table_failure_names_nothing(stack: CreatedResources, invoke_receiver: Invoke) -> None:
    with aws_calls_recorded() as faults:
        faults.fail("dynamodb", "PutItem", code="InternalServerError")

        response = invoke_receiver(_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET))

    assert response["statusCode"] == 503
    _assert_tells_nothing(response, stack, code="unavailable")


# ------------------------------------------------------------------ refusals do not echo the request


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/webhooks/flinks", 405, "method_not_allowed"),
        ("DELETE", "/webhooks/flinks", 405, "method_not_allowed"),
        ("POST", PROBE_PATH, 404, "not_found"),
    ],
)
def test_route_and_method_refusals_echo_neither(
    stack: CreatedResources, invoke_receiver: Invoke, method: str, path: str, status: int, code: str
) -> None:
    # GIVEN a direct invoke with a method or path API Gateway would not route (defence in depth)
    response = invoke_receiver(_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET, method=method, path=path))

    assert response["statusCode"] == status
    _assert_tells_nothing(response, stack, code=code)


def test_every_refusal_carries_only_a_code_and_the_request_id(
    stack: CreatedResources, invoke_receiver: Invoke
) -> None:
    oversized = guarantee_body(padding="x" * 262_144)
    cases = [
        (_event(guarantee_body(), secret="not-the-secret"), 401, "invalid_signature"),
        (_event(oversized, secret=TEST_WEBHOOK_SECRET), 413, "payload_too_large"),
        ({**_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET), "body": 12}, 400, "malformed_request"),
    ]
    for event, status, code in cases:
        response = invoke_receiver(event)
        assert response["statusCode"] == status
        _assert_tells_nothing(response, stack, code=code)


def test_request_id_is_api_gateways_and_a_forged_one_is_not_echoed(invoke_receiver: Invoke) -> None:
    # GIVEN an event whose requestId carries text that is no request id
    event = _event(guarantee_body(), secret="not-the-secret")
    event["requestContext"]["requestId"] = "arn:aws:secretsmanager:x <script>\n"

    # WHEN it is refused
    response = invoke_receiver(event)

    # THEN the Lambda request id stands in, and the forged text appears nowhere
    assert json.loads(response["body"])["error"]["requestId"] == "00000000-0000-4000-8000-000000000000"
    assert "script" not in response["body"]
    assert request_id_of({}, None) is None
    assert request_id_of({"requestContext": {"requestId": REQUEST_ID}}) == REQUEST_ID


# ------------------------------------------------------------------ source allow-list


@pytest.fixture
def invoke_allow_listed(
    function_env: Callable[..., dict[str, str]], invoke_receiver: Invoke
) -> Callable[[str], Invoke]:
    from webhook_receiver import handler

    def configure(cidrs: str) -> Invoke:
        function_env("WebhookReceiverFunction", ALLOWED_SOURCE_CIDRS=cidrs)
        handler._dependencies.cache_clear()
        return invoke_receiver

    return configure


def _from(source_ip: str, body: bytes, secret: str | None) -> dict[str, Any]:
    event = _event(body, secret=secret)
    event["requestContext"]["http"]["sourceIp"] = source_ip
    return event


def test_a_source_outside_the_allow_list_is_403_before_any_other_work(
    aws: Any,
    stack: CreatedResources,
    invoke_allow_listed: Callable[[str], Invoke],
    table_items: Items,
) -> None:
    # GIVEN the allow-list holds Flinks' networks and the secret is unreadable (so any read would 503)
    invoke = invoke_allow_listed("198.51.100.0/24,2001:db8:f1::/48")
    aws.client("secretsmanager").delete_secret(
        SecretId=stack.ref("WebhookSecret"), ForceDeleteWithoutRecovery=True
    )

    # WHEN strangers post, even a correctly signed body and an oversized one
    with aws_calls_recorded() as faults:
        responses = [
            invoke(_from("203.0.113.9", guarantee_body(), TEST_WEBHOOK_SECRET)),
            invoke(_from("2001:db8:bad::1", guarantee_body(padding="x" * 300_000), None)),
            invoke(_from("not-an-ip", guarantee_body(), None)),
        ]

    # THEN each gets 403 with the generic body, and no AWS call was made at all
    for response in responses:
        assert response["statusCode"] == 403
        _assert_tells_nothing(response, stack, code="forbidden")
    assert faults.calls == []
    assert table_items() == []


def test_a_source_inside_the_allow_list_is_served(
    invoke_allow_listed: Callable[[str], Invoke], table_items: Items
) -> None:
    invoke = invoke_allow_listed("198.51.100.0/24, 2001:db8:f1::/48")

    stored = invoke(_from("198.51.100.77", guarantee_body(), TEST_WEBHOOK_SECRET))
    unsigned = invoke(_from("2001:db8:f1::5", guarantee_body(), None))

    assert stored["statusCode"] == 200
    assert unsigned["statusCode"] == 401  # admitted sources are still verified
    assert len(table_items()) == 1


def test_an_empty_allow_list_admits_every_source(invoke_allow_listed: Callable[[str], Invoke]) -> None:
    invoke = invoke_allow_listed("")

    assert invoke(_from("203.0.113.9", guarantee_body(), TEST_WEBHOOK_SECRET))["statusCode"] == 200


@pytest.mark.parametrize(
    ("cidrs", "source", "admitted"),
    [
        ("", "203.0.113.9", True),
        ("203.0.113.0/24", "203.0.113.255", True),
        ("203.0.113.0/24", "203.0.114.0", False),
        ("203.0.113.7/32", "203.0.113.7", True),
        ("2001:db8::/32", "2001:db8:1::1", True),
        ("2001:db8::/32", "203.0.113.7", False),
        ("203.0.113.0/24", "::ffff:203.0.113.7", False),  # API Gateway gives IPv4 as IPv4
        ("203.0.113.0/24", "", False),
        ("203.0.113.0/24", None, False),
    ],
)
def test_allow_list_membership(cidrs: str, source: str | None, admitted: bool) -> None:
    assert SourceAllowList.parse(cidrs).admits(source) is admitted


@pytest.mark.parametrize("bad", ["203.0.113.1/24", "10.0.0.0/33", "example.com", "203.0.113.0/24;10.0.0.0/8"])
def test_a_bad_allow_list_entry_fails_the_configuration_naming_it(bad: str) -> None:
    environ = {"TABLE_NAME": "t", "WEBHOOK_SECRET_ARN": "s", "ALLOWED_SOURCE_CIDRS": f"198.51.100.0/24,{bad}"}

    with pytest.raises(ConfigError, match=re.escape(repr(bad))):
        ReceiverConfig.from_env(environ)


# ------------------------------------------------------------------ the shape of a rejected body


@pytest.mark.parametrize(
    ("body", "shape"),
    [
        pytest.param(guarantee_body(), BodyShape.GEFT_WEBHOOK, id="guarantee"),
        pytest.param(status_body(SESSION_ID), BodyShape.GEFT_WEBHOOK, id="status"),
        pytest.param(
            b'{"data": {"sessionId": "AADD08F2-83CE-456D-84ED-C68CFED4EE7B"}}',
            BodyShape.GEFT_WEBHOOK,
            id="enveloped",
        ),
        pytest.param(b'{"sessionId": "not-a-uuid", "amount": 5}', BodyShape.OTHER, id="no-uuid"),
        pytest.param(b'["aadd08f2-83ce-456d-84ed-c68cfed4ee7b"]', BodyShape.OTHER, id="array"),
        pytest.param(b"GET / HTTP/1.1", BodyShape.OTHER, id="not-json"),
        pytest.param(b"\xff\xfe", BodyShape.OTHER, id="not-utf8"),
        pytest.param(b"", BodyShape.OTHER, id="empty"),
        pytest.param(b"[" * 100_000, BodyShape.OTHER, id="deeply-nested"),
        pytest.param(b'{"sessionId": 1' + b"0" * 5000 + b"}", BodyShape.OTHER, id="huge-number"),
    ],
)
def test_rejected_body_shape(body: bytes, shape: BodyShape) -> None:
    assert rejected_body_shape(body) is shape


def _emitted_metrics(printed: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, dimensions) of every EMF document Powertools printed."""
    found = []
    for line in printed.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                dimensions = {name: document[name] for names in directive["Dimensions"] for name in names}
                found.append((metric["Name"], dimensions))
    return found


def test_the_shape_is_emitted_as_a_dimension_of_signature_rejected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN a G-EFT-shaped and a scanner's body are counted
    record_signature_rejected_shape(guarantee_body())
    record_signature_rejected_shape(b"<xml/>")

    # THEN each is a SignatureRejected datum with the service and its shape, as the alarms read it
    assert _emitted_metrics(capsys.readouterr().out) == [
        ("SignatureRejected", {"service": "flinks-geft-test", "BodyShape": "geft-webhook"}),
        ("SignatureRejected", {"service": "flinks-geft-test", "BodyShape": "other"}),
    ]


def test_a_wrongly_signed_delivery_is_counted_by_shape(
    invoke_receiver: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    invoke_receiver(_event(guarantee_body(), secret="not-the-secret"))

    service = os.environ["POWERTOOLS_SERVICE_NAME"]  # the template's, applied by the fixture
    assert ("SignatureRejected", {"service": service, "BodyShape": "geft-webhook"}) in (
        _emitted_metrics(capsys.readouterr().out)
    )
