"""The pre-traffic probe of a new receiver version: what it sends and how its answer is judged.

Pure: no AWS. The probe is a webhook delivery API Gateway could have sent, with a signature no secret
produces. A version that starts, reads its webhook secret and verifies answers 401 with the generic
refusal body, and stores nothing; any other answer keeps the deployment from sending it traffic.

The body is deliberately not shaped like a G-EFT webhook (no UUID ``sessionId``): a probe must never
page anyone through the SignatureRejected alarm, which watches G-EFT-shaped rejections.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROBE_SIGNATURE = "sha256=" + "0" * 64  # well-formed, and no secret's HMAC of the probe body
PROBE_BODY = json.dumps({"type": "DeploymentProbe", "purpose": "pre-traffic hook"}, separators=(",", ":"))
PROBE_USER_AGENT = "geft-pre-traffic-hook"


@dataclass(frozen=True)
class InvocationOutcome:
    """What a synchronous Lambda invoke returned: ``function_error`` is Lambda's ``FunctionError``."""

    payload: Any
    function_error: str | None = None


@dataclass(frozen=True)
class Verdict:
    succeeded: bool
    reason: str


def probe_event(*, path: str, source_ip: str, request_id: str, now: datetime) -> dict[str, Any]:
    """The HTTP API (payload v2) event of a wrongly signed POST to ``path``."""
    route_key = f"POST {path}"
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "user-agent": PROBE_USER_AGENT,
            "x-webhook-signature": PROBE_SIGNATURE,
        },
        "requestContext": {
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": PROBE_USER_AGENT,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": PROBE_BODY,
        "isBase64Encoded": False,
    }


def judge(outcome: InvocationOutcome, *, request_id: str) -> Verdict:
    """Succeeded only for the receiver's own 401 refusal of this very probe."""
    if outcome.function_error:
        failure = f"the version failed the invocation ({outcome.function_error})"
        return Verdict(False, f"{failure}: {_brief(outcome)}")
    payload = outcome.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("statusCode"), int):
        return Verdict(False, f"the answer is not an HTTP response: {_brief(outcome)}")
    if payload["statusCode"] != 401:
        return Verdict(False, _wrong_status(payload["statusCode"], outcome))
    try:
        error = json.loads(payload.get("body") or "")["error"]
    except (ValueError, TypeError, KeyError):
        return Verdict(False, "401 without the receiver's refusal body")
    if error != {"code": "invalid_signature", "requestId": request_id}:
        return Verdict(False, f"401 with an unexpected body: {_brief(outcome)}")
    return Verdict(True, "401 invalid_signature: the version starts, reads its secret and verifies")


def _wrong_status(status: int, outcome: InvocationOutcome) -> str:
    if 200 <= status < 300:
        return f"a wrongly signed request was accepted ({status}): signature checking is broken"
    if status == 403:
        return "403: the allow-list refused the probe's source (PROBE_SOURCE_IP)"
    if status >= 500:
        return f"{status}: the version cannot read its secret or table (see its log)"
    return f"{status} instead of 401: {_brief(outcome)}"


def _brief(outcome: InvocationOutcome) -> str:
    text = outcome.payload if isinstance(outcome.payload, str) else json.dumps(outcome.payload, default=str)
    return text if len(text) <= 300 else text[:300] + "..."
