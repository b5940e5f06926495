"""Lambda entry point: adapts API Gateway HTTP API (payload v2) events to the receiver.

The one table mapping errors to HTTP statuses lives here. 5xx means "we did not store it, retry";
it is never used for a request that was refused on purpose. Every refusal's body is a fixed code and
the request id (``webhook_receiver.edge.error_body``): the detail goes to the log, never to the caller.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from typing import Any

from geft.aws import AwsClients
from geft.errors import GeftError, PersistenceError, SecretError
from geft.observability import MetricUnit, logger, metrics
from geft.repository import DYNAMODB_CLIENT_CONFIG, GuaranteeRepository
from geft.secrets import JsonSecret
from geft.webhook_events import ReplayWindow

from webhook_receiver.config import ReceiverConfig
from webhook_receiver.edge import SourceAllowList, error_body, request_id_of, source_ip_of
from webhook_receiver.receiver import (
    InvalidSignatureError,
    MalformedRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RouteNotFoundError,
    WebhookReceiver,
    WebhookRequest,
)

# (error, status, code for the caller, code for the log). The two 503s tell an unauthenticated caller
# only "retry later"; the log says which dependency failed.
_STATUS_BY_ERROR: tuple[tuple[type[GeftError], int, str, str], ...] = (
    (RouteNotFoundError, 404, "not_found", "not_found"),
    (MethodNotAllowedError, 405, "method_not_allowed", "method_not_allowed"),
    (PayloadTooLargeError, 413, "payload_too_large", "payload_too_large"),
    (MalformedRequestError, 400, "malformed_request", "malformed_request"),
    (InvalidSignatureError, 401, "invalid_signature", "invalid_signature"),
    (SecretError, 503, "unavailable", "secret_unavailable"),
    (PersistenceError, 503, "unavailable", "persistence_unavailable"),
)
_JSON_HEADERS = {"content-type": "application/json"}


@functools.cache
def _dependencies() -> tuple[SourceAllowList, WebhookReceiver]:
    """Composition root, built on the first invoke and kept for the container's life. Its two clients
    (Secrets Manager, DynamoDB) come from one botocore session, each made at its first use."""
    config = ReceiverConfig.from_env()
    aws = AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG})
    return config.allowed_sources, WebhookReceiver(
        webhook_path=config.webhook_path,
        max_body_bytes=config.max_body_bytes,
        secret=JsonSecret(
            config.webhook_secret_id, max_age_seconds=config.secret_max_age_seconds, client=aws
        ),
        repository=GuaranteeRepository.for_function(config.table, client=aws),
        replay_window=ReplayWindow(config.replay_window_seconds, config.max_clock_skew_seconds),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = request_id_of(event, getattr(context, "aws_request_id", None))
    if request_id:
        logger.set_correlation_id(request_id)  # the id the caller gets back, and the access log's
    try:
        allowed_sources, receiver = _dependencies()
        if not allowed_sources.admits(source_ip_of(event)):
            # Before any other work: no body decoding, no secret read, no HMAC for a stranger.
            metrics.add_metric(name="SourceRejected", unit=MetricUnit.Count, value=1)
            logger.warning("source address not in the allow-list", source_ip=str(source_ip_of(event)))
            return _response(403, error_body("forbidden", request_id))
        acknowledgement = receiver.receive(to_request(event, receiver))
    except GeftError as error:
        return _error_response(error, request_id)
    return _response(200, {"outcome": acknowledgement.receipt.value})


def to_request(event: dict[str, Any], receiver: WebhookReceiver) -> WebhookRequest:
    """Build the request, refusing the route, the method or the size before decoding a large body."""
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "")).upper()
    path = str(event.get("rawPath") or http.get("path") or "")
    receiver.check_route(method, path)
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        raise MalformedRequestError("body must be a string")
    encoded = bool(event.get("isBase64Encoded"))
    # Refuse an oversized body before decoding it: base64 text is 4/3 of the bytes it carries, less
    # its '=' padding. (Plain text: characters never outnumber the UTF-8 bytes the receiver re-checks.)
    receiver.check_size(len(raw) * 3 // 4 - raw[-2:].count("=") if encoded else len(raw))
    try:
        body = base64.b64decode(raw, validate=True) if encoded else raw.encode("utf-8")
    except (binascii.Error, ValueError, UnicodeEncodeError) as error:
        raise MalformedRequestError("body could not be decoded") from error
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    return WebhookRequest(method=method, path=path, headers=headers, body=body)


def _error_response(error: GeftError, request_id: str | None) -> dict[str, Any]:
    for error_type, status, public_code, log_code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            if status >= 500:
                logger.exception("webhook not stored; answering 5xx so Flinks retries", error_code=log_code)
            elif status != 401:  # 401s are counted as SignatureRejected where they are decided
                metrics.add_metric(name="RequestRejected", unit=MetricUnit.Count, value=1)
                logger.info("request refused", error_code=log_code, reason=str(error))
            response = _response(status, error_body(public_code, request_id))
            if status == 405:
                response["headers"]["allow"] = "POST"
            return response
    raise error  # an error without a mapping is a bug: let Lambda report it


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(_JSON_HEADERS), "body": json.dumps(body)}
