"""The receiver's logic: route and size checks, signature first, classify, persist exactly once.

Transport-free: the handler adapts API Gateway events to ``WebhookRequest`` and maps the errors
raised here to HTTP statuses in one table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from geft.errors import GeftError
from geft.models import GuaranteeRef
from geft.observability import MetricUnit, logger, metrics
from geft.repository import GuaranteeRepository
from geft.secrets import JsonSecret, WebhookSecrets
from geft.signature import SIGNATURE_HEADER, verify_signature
from geft.webhook_events import (
    GuaranteeEvent,
    QuarantineReason,
    ReplayWindow,
    SessionStatusEvent,
    UnrecognizedEvent,
    classify,
)

from webhook_receiver.edge import record_signature_rejected_shape


class RequestRejectedError(GeftError):
    """The request is refused before anything is stored; the handler's one table gives each subclass
    its HTTP status and the code the caller sees."""


class RouteNotFoundError(RequestRejectedError):
    """The path is not the webhook's route."""


class MethodNotAllowedError(RequestRejectedError):
    """The route takes POST only."""


class PayloadTooLargeError(RequestRejectedError):
    """The body is larger than MAX_BODY_BYTES."""


class MalformedRequestError(RequestRejectedError):
    """The event's body is not a string, or cannot be decoded to bytes."""


class InvalidSignatureError(RequestRejectedError):
    """The signature is missing or matches no current webhook secret."""


class Receipt(StrEnum):
    """What the receiver did with a signed webhook (the ``outcome`` field of its 200 answer)."""

    STORED = "stored"  # a new guarantee, RECEIVED and on its way to a decision
    DUPLICATE = "duplicate"  # a redelivery: nothing changed
    STATUS_RECORDED = "status-recorded"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names, as API Gateway payload v2 delivers them
    body: bytes


@dataclass(frozen=True)
class Acknowledgement:
    receipt: Receipt
    session_id: str | None = None


class WebhookReceiver:
    def __init__(
        self,
        *,
        webhook_path: str,
        max_body_bytes: int,
        secret: JsonSecret,
        repository: GuaranteeRepository,
        replay_window: ReplayWindow,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhook_path = webhook_path
        self._max_body_bytes = max_body_bytes
        self._secret = secret
        self._repository = repository
        self._replay_window = replay_window
        self._clock = clock

    def check_route(self, method: str, path: str) -> None:
        if path.rstrip("/") != self._webhook_path:
            raise RouteNotFoundError(f"no route for {path}")
        if method != "POST":
            raise MethodNotAllowedError(f"{method} is not allowed on {path}; use POST")

    def check_size(self, size: int) -> None:
        if size > self._max_body_bytes:
            raise PayloadTooLargeError(
                f"body of {size} bytes exceeds the limit of {self._max_body_bytes} bytes"
            )

    def receive(self, request: WebhookRequest) -> Acknowledgement:
        self.check_route(request.method, request.path)
        self.check_size(len(request.body))
        self._verify(request.body, request.headers.get(SIGNATURE_HEADER))
        received_at_ms = int(self._clock() * 1000)
        event = classify(request.body)
        if not isinstance(event, UnrecognizedEvent) and not self._replay_window.admits(
            event.when, datetime.fromtimestamp(received_at_ms / 1000, tz=UTC)
        ):
            event = UnrecognizedEvent(QuarantineReason.OUTSIDE_REPLAY_WINDOW, event.session_id)
        if event.session_id:
            logger.append_keys(session_id=event.session_id)
        match event:
            case GuaranteeEvent():
                return self._store_guarantee(event, request.body, received_at_ms)
            case SessionStatusEvent():
                return self._record_status(event, request.body, received_at_ms)
            case UnrecognizedEvent():
                return self._quarantine(event, request.body, received_at_ms)

    def _verify(self, body: bytes, signature: str | None) -> None:
        if verify_signature(body, signature, WebhookSecrets.from_document(self._secret.get()).candidates):
            return
        # The secret may have just been rotated: re-read it once before refusing the delivery.
        refreshed = self._secret.refresh()
        if refreshed is not None and verify_signature(
            body, signature, WebhookSecrets.from_document(refreshed).candidates
        ):
            return
        metrics.add_metric(name="SignatureRejected", unit=MetricUnit.Count, value=1)
        record_signature_rejected_shape(body)  # by shape: a wrong secret pages, a scanner does not
        logger.warning("webhook signature rejected", signature_present=bool(signature), body_bytes=len(body))
        raise InvalidSignatureError("missing or invalid X-Webhook-Signature")

    def _store_guarantee(self, event: GuaranteeEvent, body: bytes, received_at_ms: int) -> Acknowledgement:
        insertion = self._repository.insert_guarantee(
            GuaranteeRef(event.session_id, event.guarantee_key),
            raw_body=body.decode("utf-8"),
            content_sha256=event.content_sha256,
            received_at_ms=received_at_ms,
            event_when=event.when.isoformat() if event.when else None,
        )
        if not insertion.stored and insertion.existing_content_sha256 not in (None, event.content_sha256):
            # Not a redelivery (its content differs) yet nothing tells it apart: a person looks.
            conflict = UnrecognizedEvent(QuarantineReason.SAME_KEY_OTHER_CONTENT, event.session_id)
            return self._quarantine(conflict, body, received_at_ms)
        receipt = Receipt.STORED if insertion.stored else Receipt.DUPLICATE
        metrics.add_metric(
            name="Received" if insertion.stored else "Duplicate", unit=MetricUnit.Count, value=1
        )
        logger.info("guarantee webhook accepted", outcome=receipt.value, guarantee_key=event.guarantee_key)
        return Acknowledgement(receipt, event.session_id)

    def _record_status(self, event: SessionStatusEvent, body: bytes, received_at_ms: int) -> Acknowledgement:
        recorded = self._repository.record_session_status(
            event.session_id,
            status=event.status,
            status_details=event.status_details,
            raw_body=body.decode("utf-8"),
            received_at_ms=received_at_ms,
            source="webhook",
        )
        receipt = Receipt.STATUS_RECORDED if recorded else Receipt.DUPLICATE
        metrics.add_metric(
            name="SessionStatusRecorded" if recorded else "Duplicate", unit=MetricUnit.Count, value=1
        )
        logger.info("session status webhook accepted", outcome=receipt.value, final_status=event.status)
        return Acknowledgement(receipt, event.session_id)

    def _quarantine(self, event: UnrecognizedEvent, body: bytes, received_at_ms: int) -> Acknowledgement:
        self._repository.quarantine(
            body, reason=event.reason.value, session_id=event.session_id, received_at_ms=received_at_ms
        )
        metrics.add_metric(name="Quarantined", unit=MetricUnit.Count, value=1)
        logger.warning("signed webhook quarantined", reason=event.reason.value, body_bytes=len(body))
        return Acknowledgement(Receipt.QUARANTINED, event.session_id)
