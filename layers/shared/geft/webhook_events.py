"""What a signed webhook body is: a guarantee, a session's final status, or something to quarantine.

Flinks does not publish the guarantee webhook's payload (flinks-geft.md §1.2), so classification is
deliberately lenient: any signed JSON object with a UUID ``sessionId`` is a guarantee unless it says
it is a ``SessionSetupStatusChanged`` event or carries a final session ``status``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from geft.canonical import sha256_of

SESSION_STATUS_EVENT_TYPE = "sessionsetupstatuschanged"
FINAL_SESSION_STATUSES = frozenset({"Completed", "Failed", "Canceled", "Expired"})
_TYPE_KEYS = ("type", "eventType", "event", "eventName", "EventType")
_GUARANTEE_ID_KEYS = ("guaranteeId", "eventId")
_GUARANTEE_AMOUNT_KEYS = ("amount", "guaranteeAmount")
# Epoch values above this are milliseconds (year 5138 in seconds).
_EPOCH_MILLIS_THRESHOLD = 100_000_000_000
_MAX_AMOUNT_EXPONENT = 20
_MAX_EPOCH_EXPONENT = 20
_UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class QuarantineReason(StrEnum):
    NOT_UTF8 = "not-utf8"
    NOT_JSON = "not-json"
    NOT_AN_OBJECT = "not-a-json-object"
    NO_SESSION_ID = "no-uuid-session-id"
    UNKNOWN_STATUS = "unknown-session-status"
    OUTSIDE_REPLAY_WINDOW = "outside-replay-window"
    # The guarantee's key is stored already, with other content: a redelivery carries the same content,
    # so this may be a second guarantee that nothing tells apart (same amount, or no amount and no id).
    SAME_KEY_OTHER_CONTENT = "same-key-other-content"


@dataclass(frozen=True)
class GuaranteeEvent:
    session_id: str
    guarantee_key: str
    when: datetime | None
    content_sha256: str  # of the body without its `when`: equal for a redelivery, whenever it was sent


@dataclass(frozen=True)
class SessionStatusEvent:
    session_id: str
    status: str
    status_details: str | None
    when: datetime | None


@dataclass(frozen=True)
class UnrecognizedEvent:
    reason: QuarantineReason
    session_id: str | None = None


ClassifiedEvent = GuaranteeEvent | SessionStatusEvent | UnrecognizedEvent


@dataclass(frozen=True)
class ReplayWindow:
    """Signed ``when`` values older than ``max_age_seconds`` or further ahead than ``max_future_seconds``
    are not acted on. ``max_age_seconds == 0`` turns the check off."""

    max_age_seconds: int
    max_future_seconds: int

    def admits(self, when: datetime | None, now: datetime) -> bool:
        if when is None or self.max_age_seconds == 0:
            return True
        age = (now - when).total_seconds()
        return -self.max_future_seconds <= age <= self.max_age_seconds


def classify(body: bytes) -> ClassifiedEvent:
    """Classify a signed body. Never raises on hostile input."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return UnrecognizedEvent(QuarantineReason.NOT_UTF8)
    try:
        document = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and integers over Python's digit limit.
        return UnrecognizedEvent(QuarantineReason.NOT_JSON)
    if not isinstance(document, dict):
        return UnrecognizedEvent(QuarantineReason.NOT_AN_OBJECT)
    return _classify_object(document, body)


def parse_when(value: object) -> datetime | None:
    """``when`` as ISO-8601 or epoch seconds (or milliseconds); None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal | float) or (isinstance(value, str) and _is_number(value)):
        return _from_epoch(Decimal(str(value)))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _classify_object(document: dict[str, Any], raw: bytes) -> ClassifiedEvent:
    fields = _merged_fields(document)
    session_id = _uuid_or_none(fields.get("sessionId"))
    if _is_session_status(fields):
        status = fields.get("status")
        if session_id is None:
            return UnrecognizedEvent(QuarantineReason.NO_SESSION_ID)
        if status not in FINAL_SESSION_STATUSES:
            return UnrecognizedEvent(QuarantineReason.UNKNOWN_STATUS, session_id)
        details = fields.get("statusDetails")
        return SessionStatusEvent(
            session_id=session_id,
            status=str(status),
            status_details=details if isinstance(details, str) else None,
            when=parse_when(fields.get("when")),
        )
    if session_id is None:
        return UnrecognizedEvent(QuarantineReason.NO_SESSION_ID)
    return GuaranteeEvent(
        session_id=session_id,
        guarantee_key=_guarantee_key(fields),
        when=parse_when(fields.get("when")),
        content_sha256=content_fingerprint(document, raw),
    )


def content_fingerprint(document: Mapping[str, Any], raw: bytes) -> str:
    """sha256 of the body's content without ``when`` (top level and ``data``), keys sorted, types kept.

    Flinks' retries may carry a new ``when``; anything else that differs means another event. A body
    nested too deeply to canonicalize is fingerprinted as its exact bytes.
    """
    content = {key: value for key, value in document.items() if key != "when"}
    envelope = content.get("data")
    if isinstance(envelope, dict):
        content["data"] = {key: value for key, value in envelope.items() if key != "when"}
    try:
        return sha256_of(content)
    except RecursionError:
        return "bytes:" + hashlib.sha256(raw).hexdigest()


def _merged_fields(document: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields, falling back to a ``data`` envelope: the payload shape is unpublished."""
    envelope = document.get("data")
    if isinstance(envelope, dict):
        return {**envelope, **document}
    return document


def _is_session_status(fields: Mapping[str, Any]) -> bool:
    for key in _TYPE_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value.strip().lower() == SESSION_STATUS_EVENT_TYPE:
            return True
    return fields.get("status") in FINAL_SESSION_STATUSES


def _guarantee_key(fields: Mapping[str, Any]) -> str:
    """What tells a second guarantee of one session (an NBO) apart from a redelivery of the first."""
    for key in _GUARANTEE_ID_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return "id:" + value.strip()[:128]
    for key in _GUARANTEE_AMOUNT_KEYS:
        value = fields.get(key)
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return "amount:" + _canonical_amount(Decimal(value))
    return "single"


def _canonical_amount(amount: Decimal) -> str:
    if not amount.is_finite() or abs(amount.adjusted()) > _MAX_AMOUNT_EXPONENT:
        return str(amount)[:64]  # absurd values: keep them distinct without expanding 1E+999999
    return format(amount.quantize(Decimal("0.01")), "f")


def _uuid_or_none(value: object) -> str | None:
    """The canonical lowercase form of a dashed UUID; other spellings are not session ids."""
    if isinstance(value, str) and _UUID_PATTERN.fullmatch(value):
        return value.lower()
    return None


def _is_number(text: str) -> bool:
    try:
        Decimal(text.strip())
    except InvalidOperation:
        return False
    return True


def _from_epoch(seconds: Decimal) -> datetime | None:
    # Beyond 1E+20 s no date exists; checked before any arithmetic, which would raise decimal.Overflow
    # on exponents past the context's Emax (a signed `when` of 1e999999999 once crashed the receiver).
    if not seconds.is_finite() or seconds.adjusted() > _MAX_EPOCH_EXPONENT:
        return None
    if abs(seconds) >= _EPOCH_MILLIS_THRESHOLD:
        seconds = seconds / 1000
    try:
        return datetime.fromtimestamp(float(seconds), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
