"""API Gateway HTTP API, emulated on 127.0.0.1: the template's ``HttpApi`` routes, each request as the
payload v2 event API Gateway would send, the function's answer mapped back, and API Gateway's own 404,
413 and 500 answers. What is emulated and what is not: docs/local-stack.md.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from geft_local.console import Console
from geft_local.workers import InvokeResult
from testkit.http import Answer, Handler, LoopbackServer
from testkit.template import ACCOUNT_ID, function_behind, resources_of_type

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway HTTP API's request payload limit."""
_MAX_DISCARD_BYTES = 4 * MAX_PAYLOAD_BYTES
_API_ID = "local"
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/x-yaml",
        "application/yaml",
    }
)
_TRANSPORT_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "date", "server"})


class PortInUseError(OSError):
    """The configured port is taken by another process."""


class InvalidResponseError(ValueError):
    """The function's answer is not a valid HTTP API payload v2 response."""


# -- routes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    function_logical_id: str
    method: str
    """Upper-case method, or ``ANY``."""
    path: str
    """A fixed path (``/webhooks/flinks``) or ``$default``."""

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def specificity(self) -> tuple[bool, bool]:
        """Sort key: most specific first, as API Gateway chooses (a path beats ``$default``, a method
        beats ``ANY``)."""
        return (self.path == "$default", self.method == "ANY")

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("ANY", method.upper()) and self.path in ("$default", path)


def http_api_routes(template: Mapping[str, Any]) -> list[Route]:
    """Every route of the deployed template's HTTP APIs (the OpenAPI body SAM makes of the functions'
    HttpApi events), most specific first. Path parameters are not emulated: the template has none."""
    routes = []
    for api in resources_of_type(template, "AWS::ApiGatewayV2::Api").values():
        for path, operations in api["Properties"].get("Body", {}).get("paths", {}).items():
            if "{" in path:
                raise ValueError(f"HttpApi path {path}: path parameters are not emulated locally")
            for method, operation in operations.items():
                uri = operation.get("x-amazon-apigateway-integration", {}).get("uri", {}).get("Fn::Sub", "")
                names = [name.split(".", 1)[0] for name in re.findall(r"\$\{([^}]+)\}", str(uri))]
                targets = [function_behind(template, name) for name in names if not name.startswith("AWS::")]
                if targets and targets[0] is not None:
                    verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    routes.append(Route(targets[0], verb, "$default" if path == "/$default" else path))
    return sorted(routes, key=Route.specificity)


# -- requests and responses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    """The request target as sent: path and query string."""
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


def to_http_api_event(route: Route, request: HttpRequest, *, request_id: str, now: float) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for ``request``."""
    parts = urlsplit(request.target)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers.setdefault("x-forwarded-proto", "http")
    host = headers.get("host", "localhost")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    moment = datetime.fromtimestamp(now, tz=UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": _API_ID,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
        "http": {
            "method": request.method,
            "path": parts.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if request.body:
        body, encoded = encode_body(request.body, headers.get("content-type"))
        event["body"] = body
        event["isBase64Encoded"] = encoded
    else:
        event["isBase64Encoded"] = False
    return event


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """As text when it is valid UTF-8 and the content type is textual, else base64 (and True)."""
    if is_textual(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def is_textual(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml"))
    )


def from_lambda_result(payload: Any) -> HttpResponse:
    """Map a payload v2 answer to HTTP. A bare JSON value (no ``statusCode``) is a 200 JSON answer."""
    if not (isinstance(payload, Mapping) and "statusCode" in payload):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return HttpResponse(200, [("content-type", "application/json")], text.encode("utf-8"))
    status = payload["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int | str) or not str(status).isdigit():
        raise InvalidResponseError(f"statusCode {status!r} is not an integer")
    if not 100 <= int(status) <= 599:
        raise InvalidResponseError(f"statusCode {status} is out of range")
    headers_in = payload.get("headers") or {}
    if not isinstance(headers_in, Mapping):
        raise InvalidResponseError("headers must be an object")
    headers = [(str(name).lower(), _header_value(value)) for name, value in headers_in.items()]
    for cookie in payload.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    raw = payload.get("body")
    body: bytes
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise InvalidResponseError("body must be a string")
    elif payload.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidResponseError("body is not valid base64") from error
    else:
        body = raw.encode("utf-8")
    return HttpResponse(int(status), headers, body)


def gateway_error(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode("utf-8")
    return HttpResponse(status, [("content-type", "application/json")], body)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# -- the server ----------------------------------------------------------------------------------------

FunctionInvoker = Callable[[str, dict[str, Any]], InvokeResult]


class HttpApiGateway(LoopbackServer["HttpApiGateway"]):
    """The HTTP server. Binds in the constructor, so a taken port fails before anything else starts."""

    def __init__(
        self,
        routes: Sequence[Route],
        invoke: FunctionInvoker,
        console: Console,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
    ) -> None:
        self.routes = list(routes)
        self.invoke = invoke
        self.console = console
        try:
            super().__init__((host, port), _Handler, self, name="gateway")
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(errno.EADDRINUSE, f"port {port} on {host} is already in use") from None
            raise

    def handle(self, request: HttpRequest) -> tuple[HttpResponse, str]:
        """Answer one request; also returns what the access line says about it."""
        path = urlsplit(request.target).path
        route = next((route for route in self.routes if route.matches(request.method, path)), None)
        if route is None:
            return gateway_error(404, "Not Found"), "no route"
        request_id = _request_id()
        event = to_http_api_event(route, request, request_id=request_id, now=time.time())
        result = self.invoke(route.function_logical_id, event)
        if result.function_error:
            return (
                gateway_error(500, "Internal Server Error"),
                f"{route.function_logical_id} {result.error_type}: {result.error_message}",
            )
        try:
            response = from_lambda_result(result.payload)
        except InvalidResponseError as error:
            return gateway_error(500, "Internal Server Error"), f"{route.function_logical_id} {error}"
        # API Gateway's apigw-requestid header is the event's requestContext.requestId.
        headers = [*response.headers, ("apigw-requestid", request_id)]
        return HttpResponse(
            response.status, headers, response.body
        ), f"{route.function_logical_id} {_summary(response)}"


def _request_id() -> str:
    return base64.b32encode(uuid.uuid4().bytes[:10]).decode("ascii").rstrip("=")[:14] + "="


def _summary(response: HttpResponse) -> str:
    content_type = next((value for name, value in response.headers if name == "content-type"), "")
    if "json" in content_type and len(response.body) <= 160:
        return response.body.decode("utf-8", errors="replace")
    return f"{len(response.body)} bytes"


class _Handler(Handler):
    """The gateway prints its own access lines."""

    server: LoopbackServer[HttpApiGateway]

    def dispatch(self) -> None:
        started = time.monotonic()
        gateway = self.server.app
        try:
            body = self._read_body()
        except ValueError:
            body, self.close_connection = b"", True
            response, note = gateway_error(400, "Bad Request"), "unreadable chunked body"
            self._write(response)
            gateway.console.emit("gateway", f"{self.command} {self.path} -> 400 {note}")
            return
        if body is None:
            response, note = gateway_error(413, "Request Entity Too Large"), "body over 10 MB"
            self.close_connection = True
        else:
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response, note = gateway.handle(request)
        self._write(response)
        elapsed_ms = (time.monotonic() - started) * 1000
        gateway.console.emit(
            "gateway", f"{self.command} {self.path} -> {response.status} ({elapsed_ms:.0f} ms) {note}"
        )

    def _read_body(self) -> bytes | None:
        """The request body, or None when it is larger than API Gateway accepts."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_PAYLOAD_BYTES:
            self._discard(length)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _discard(self, length: int) -> None:
        """Read and drop a refused body (up to a bound), so the client gets the 413 rather than a reset."""
        remaining = min(length, _MAX_DISCARD_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_PAYLOAD_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _write(self, response: HttpResponse) -> None:
        headers = [(name, value) for name, value in response.headers if name not in _TRANSPORT_HEADERS]
        if not any(name == "apigw-requestid" for name, _ in response.headers):
            headers.append(("apigw-requestid", _request_id()))
        self.send(Answer(response.status, response.body, tuple(headers)))
