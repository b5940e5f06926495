"""The HTTP API emulation over real HTTP on 127.0.0.1, with a function stand-in that records the event
it was given: the payload v2 event API Gateway builds, and the answers API Gateway gives itself."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from geft_local.console import Console
from geft_local.gateway import HttpApiGateway, Route, http_api_routes
from geft_local.workers import InvokeResult

from testkit.template import Deployment

pytestmark = pytest.mark.e2e

Answer = Callable[[dict[str, Any]], InvokeResult]


class RecordingFunction:
    """Stands in for a function's container: keeps each event, answers what the test planned."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.answer: Answer = lambda event: InvokeResult("r", payload={"statusCode": 200, "body": "ok"})

    def __call__(self, function: str, event: dict[str, Any]) -> InvokeResult:
        self.events.append((function, event))
        return self.answer(event)


@pytest.fixture
def function() -> RecordingFunction:
    return RecordingFunction()


@pytest.fixture
def gateway(function: RecordingFunction) -> Iterator[HttpApiGateway]:
    routes = sorted(
        [
            Route("Webhook", "POST", "/webhooks/flinks"),
            Route("Item", "GET", "/items/1"),
            Route("Files", "ANY", "/files"),
        ],
        key=Route.specificity,
    )
    running = HttpApiGateway(routes, function, Console(stream=None), port=0)
    running.start()
    yield running
    running.stop()


def request(
    gateway: HttpApiGateway,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.putrequest(method, target)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_routes_are_read_from_the_templates_http_api_events(template: dict[str, Any]) -> None:
    routes = http_api_routes(Deployment.of(template, stack_name="geft-test").template)

    assert [route.route_key for route in routes] == ["POST /webhooks/flinks"]
    assert routes[0].function_logical_id == "WebhookReceiverFunction"


def test_a_request_becomes_the_payload_v2_event(gateway: HttpApiGateway, function: RecordingFunction) -> None:
    # WHEN a JSON webhook arrives with repeated headers, a cookie and a query string
    status, _, _ = request(
        gateway,
        "POST",
        "/webhooks/flinks?a=1&b=2&a=3",
        body=b'{"sessionId": "x"}',
        headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-Webhook-Signature", "sha256=AB"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
            ("Cookie", "c1=v1; c2=v2"),
            ("User-Agent", "Flinks-Webhooks"),
        ],
    )

    # THEN the function got what API Gateway would send
    assert status == 200
    [(name, event)] = function.events
    assert name == "Webhook"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/flinks"
    assert event["rawPath"] == "/webhooks/flinks"
    assert event["rawQueryString"] == "a=1&b=2&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    headers = event["headers"]
    assert headers["x-webhook-signature"] == "sha256=AB"
    assert headers["x-repeated"] == "one,two"
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert all(key == key.lower() for key in headers)
    assert "cookie" not in headers
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/webhooks/flinks",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "Flinks-Webhooks",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == "POST /webhooks/flinks"
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert (event["body"], event["isBase64Encoded"]) == ('{"sessionId": "x"}', False)


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/json", "é".encode(), False),
        ("text/plain", b"hello", False),
        ("application/octet-stream", b"hello", True),
        (None, b"hello", True),
        ("application/json", b"\xff\xfe not utf-8", True),
    ],
    ids=["json-utf8", "text", "binary-type", "no-type", "json-not-utf8"],
)
def test_bodies_are_text_only_when_utf8_and_textual(
    gateway: HttpApiGateway, function: RecordingFunction, content_type: str | None, body: bytes, encoded: bool
) -> None:
    headers = [("Content-Type", content_type)] if content_type else []

    request(gateway, "POST", "/webhooks/flinks", body=body, headers=headers)

    [(_, event)] = function.events
    assert event["isBase64Encoded"] is encoded
    received = base64.b64decode(event["body"]) if encoded else event["body"].encode()
    assert received == body


def test_routes_match_their_method_and_path(gateway: HttpApiGateway, function: RecordingFunction) -> None:
    request(gateway, "GET", "/items/1?x=1")
    request(gateway, "DELETE", "/files")
    status, _, body = request(gateway, "POST", "/items/1")

    assert [(name, event["routeKey"]) for name, event in function.events] == [
        ("Item", "GET /items/1"),
        ("Files", "ANY /files"),
    ]
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_the_functions_answer_is_mapped_back(gateway: HttpApiGateway, function: RecordingFunction) -> None:
    function.answer = lambda event: InvokeResult(
        "r",
        payload={
            "statusCode": 202,
            "headers": {"X-Custom": "yes", "content-type": "application/octet-stream"},
            "cookies": ["session=1; Path=/"],
            "body": base64.b64encode(b"\x00\x01binary").decode(),
            "isBase64Encoded": True,
        },
    )

    status, headers, body = request(gateway, "POST", "/webhooks/flinks", body=b"{}")

    assert status == 202
    assert headers["x-custom"] == "yes"
    assert headers["set-cookie"] == "session=1; Path=/"
    assert headers["apigw-requestid"]
    assert body == b"\x00\x01binary"


def test_a_bare_json_answer_is_a_200_json_response(
    gateway: HttpApiGateway, function: RecordingFunction
) -> None:
    function.answer = lambda event: InvokeResult("r", payload={"hello": "world"})

    status, headers, body = request(gateway, "GET", "/items/1")

    assert (status, headers["content-type"], json.loads(body)) == (
        200,
        "application/json",
        {"hello": "world"},
    )


@pytest.mark.parametrize(
    "result",
    [
        InvokeResult("r", payload={"errorType": "ValueError"}, error_type="ValueError"),
        InvokeResult("r", payload={"errorType": "Sandbox.Timedout"}, error_type="Sandbox.Timedout"),
        InvokeResult("r", payload={"statusCode": "two hundred"}),
        InvokeResult("r", payload={"statusCode": 200, "body": 12}),
    ],
    ids=["exception", "timeout", "bad-status", "bad-body"],
)
def test_function_errors_and_malformed_answers_are_500(
    gateway: HttpApiGateway, function: RecordingFunction, result: InvokeResult
) -> None:
    function.answer = lambda event: result

    status, _, body = request(gateway, "POST", "/webhooks/flinks", body=b"{}")

    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})


def test_an_oversized_body_is_413_without_invoking(
    gateway: HttpApiGateway, function: RecordingFunction
) -> None:
    body = b"x" * (10 * 1024 * 1024 + 1)

    status, _, answer = request(gateway, "POST", "/webhooks/flinks", body=body)

    assert (status, json.loads(answer)) == (413, {"message": "Request Entity Too Large"})
    assert function.events == []


def test_a_chunked_body_is_read(gateway: HttpApiGateway, function: RecordingFunction) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.request(
            "POST",
            "/webhooks/flinks",
            body=iter([b'{"a":', b"1}"]),
            headers={"Content-Type": "application/json"},
        )
        assert connection.getresponse().status == 200
    finally:
        connection.close()

    [(_, event)] = function.events
    assert event["body"] == '{"a":1}'


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_another_method_on_a_post_route_is_api_gateways_404(
    gateway: HttpApiGateway, function: RecordingFunction, method: str
) -> None:
    # WHEN the webhook route (POST only, as in template.yaml) is called with another method
    status, headers, answer = request(gateway, method, "/webhooks/flinks", body=b"{}")

    # THEN API Gateway answers for an unmatched route itself, and the function never runs
    assert status == 404
    if method != "HEAD":
        assert json.loads(answer) == {"message": "Not Found"}
    assert headers["apigw-requestid"]
    assert function.events == []


def test_the_request_id_header_is_the_events_request_id(
    gateway: HttpApiGateway, function: RecordingFunction
) -> None:
    _, headers, _ = request(gateway, "POST", "/webhooks/flinks", body=b"{}")

    [(_, event)] = function.events
    assert headers["apigw-requestid"] == event["requestContext"]["requestId"]


def test_stop_frees_the_port(function: RecordingFunction) -> None:
    gateway = HttpApiGateway([Route("Webhook", "ANY", "/w")], function, Console(stream=None), port=0)
    gateway.start()
    port = gateway.port
    request(gateway, "POST", "/w", body=b"{}")

    gateway.stop()

    again = HttpApiGateway([], function, Console(stream=None), port=port)
    again.stop()
