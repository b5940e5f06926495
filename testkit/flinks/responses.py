"""Responses: what the sandbox answers, as bytes and as the quirks of the transport (``Reply``), and the
``/details`` bodies in the current and the legacy documented shapes (flinks-geft.md §5.4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from testkit.flinks.scenarios import Fault
from testkit.http import Answer

if TYPE_CHECKING:
    from testkit.flinks.sandbox import Session

_PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    502: "https://tools.ietf.org/html/rfc9110#section-15.6.3",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
    504: "https://tools.ietf.org/html/rfc9110#section-15.6.5",
}
_PROBLEM_TITLES = {401: "Authentication Required", 404: "Session Not Found"}
_MALFORMED_BODY = b"<html><body>upstream answered something that is not JSON</body></html>"
_STREAM_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Reply(Answer):
    drop: bool = False
    """Close the connection without answering (status and body are ignored)."""
    body_size: int | None = None
    """Stream a synthetic body of this many bytes instead of ``body`` (``oversize``)."""
    chunked: bool = False
    dribble_s: float | None = None
    dribble_whole: bool = False
    journal_index: int | None = None


DROPPED = Reply(status=0, drop=True)


def after_fault(answer: Reply, fault: Fault | None) -> tuple[Reply, str | None]:
    """Applies a fault that lets the call act normally: ``lost`` drops the answer, ``malformed`` spoils it."""
    if fault is None:
        return answer, None
    if fault.kind == "lost":
        return replace(answer, drop=True), fault.spec
    if fault.kind == "malformed" and 200 <= answer.status < 300:
        return replace(answer, body=_MALFORMED_BODY, headers=(("Content-Type", "text/html"),)), fault.spec
    if fault.kind == "oversize" and 200 <= answer.status < 300:
        return replace(answer, body=b"", body_size=fault.size, chunked=fault.chunked), fault.spec
    if fault.kind == "dribble":
        return replace(answer, dribble_s=fault.seconds, dribble_whole=fault.whole_answer), fault.spec
    return answer, fault.spec


def oversize_body(size: int) -> Iterator[bytes]:
    """``{"pad":"xxx..."}`` of exactly ``size`` bytes, in chunks: never ``size`` bytes at once."""
    prefix, suffix = (b'{"pad":"', b'"}') if size >= 10 else (b"", b"")
    left = size - len(prefix) - len(suffix)
    filler = b"x" * _STREAM_CHUNK_BYTES
    yield prefix
    while left > 0:
        step = min(left, _STREAM_CHUNK_BYTES)
        yield filler[:step]
        left -= step
    yield suffix


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def json_reply(status: int, document: object, *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, dumps(document), (("Content-Type", "application/json; charset=utf-8"), *headers))


def problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    document: dict[str, Any] = {
        "type": _PROBLEM_TYPES.get(status, "about:blank"),
        "title": title or _PROBLEM_TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "traceId": str(uuid.uuid4()),
    }
    if detail:
        document["detail"] = detail
    return Reply(
        status, dumps(document), (("Content-Type", "application/problem+json; charset=utf-8"), *headers)
    )


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with the JSON merge patch ``patch`` applied (RFC 7386), as a new object."""
    merged = dict(document)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def details_body(session: Session) -> dict[str, Any]:
    """The current documented ``/details`` shape (§5.4)."""
    scenario = session.scenario
    return {
        "sessionId": session.session_id,
        "status": session.status,
        "step": {
            "current": "GuaranteeOffer" if session.current.decision is None else "Complete",
            "aggregationRequestId": session.aggregation_request_id,
            "padId": None,
        },
        "referenceId": session.reference_id,
        "amount": session.current.amount,
        "type": "EFT",
        "direction": "DEBIT",
        "currency": "CAD",
        "options": {
            "guarantee": {"enable": True},
            "notificationPreferences": {"language": "EN"},
            "showConsentScreen": False,
        },
        "payor": {
            "email": "payor@example.com",
            "firstName": "Jean-Claude",
            "lastName": "Topinambour",
            "account": {
                "institutionCode": "777",
                "transitNumber": "00011",
                "accountNumber": "XXXXX1234",
                "accountLabel": "Chequing",
                "availableBalance": session.available_balance,
            },
        },
        "guaranteeDetails": {
            "guaranteeOffered": scenario.guarantee_offered,
            "guaranteeAccepted": session.shown_accepted(),
            "highestDebitAmountToGuarantee": session.current.highest_debit,
            "overallRiskLevel": scenario.overall_risk_level,
            "transactionRiskLevel": scenario.transaction_risk_level,
            "userRiskLevel": scenario.user_risk_level,
            "otherRiskLevel": scenario.other_risk_level,
            **({"guaranteeId": session.current.guarantee_id} if scenario.expose_guarantee_ids else {}),
        },
    }


def legacy_details_body(session: Session) -> dict[str, Any]:
    """The older documented ``/details`` shape: ``guarantee{status, approvedAt, coverage}``."""
    offered = session.scenario.guarantee_offered
    return {
        "sessionId": session.session_id,
        "status": session.status,
        "referenceId": session.reference_id,
        "amount": session.current.amount,
        "currency": "CAD",
        "created_at": session.created_at,
        "updated_at": session.updated_at or session.created_at,
        "completed_at": session.current.decided_at,
        "payor": {
            "firstName": "Jean-Claude",
            "lastName": "Topinambour",
            "verifiedAccount": {
                "institutionName": "Sandbox Bank",
                "accountType": "Chequing",
                "accountNumber": "XXXXX1234",
                "transitNumber": "00011",
                "institutionCode": "777",
            },
        },
        "guarantee": {
            "status": "Approved" if offered else "Declined",
            "approvedAt": session.created_at if offered else None,
            "coverage": session.current.highest_debit,
        },
    }
