"""Builders for webhook bodies and API Gateway HTTP API (payload v2) events.

Events start from the committed files in events/ (the ones `sam local invoke -e` uses); the builders
only replace what must be computed: the body, its encoding and its signature. Tests and benchmarks
both build their webhooks here.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from geft.signature import compute_signature

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"


@cache
def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return document


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


def guarantee_body(session_id: str | None = None, *, when: str | None = None, **fields: Any) -> bytes:
    document = {
        "type": "GuaranteeEmitted",
        "when": when or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "sessionId": session_id or str(uuid.uuid4()),
        "referenceId": "test-reference",
        "amount": 250,
        **fields,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def status_body(session_id: str, status: str = "Completed", details: str = "EFT0301") -> bytes:
    document = {
        "type": "SessionSetupStatusChanged",
        "when": datetime.now(UTC).isoformat(),
        "sessionId": session_id,
        "status": status,
        "statusDetails": details,
    }
    return json.dumps(document).encode()


def webhook_event(
    body: bytes,
    *,
    secret: str | None,
    signature: str | None = None,
    base64_encoded: bool = False,
    method: str = "POST",
    path: str = "/webhooks/flinks",
    base: str = "webhook-guarantee.json",
) -> dict[str, Any]:
    """An HTTP API v2 event carrying ``body``, signed with ``secret`` unless ``signature`` is given."""
    event = load_event(base)
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    headers = {k: v for k, v in event.get("headers", {}).items() if k.lower() != "x-webhook-signature"}
    if signature is not None:
        headers["x-webhook-signature"] = signature
    elif secret is not None:
        headers["x-webhook-signature"] = compute_signature(body, secret)
    event["headers"] = headers
    if base64_encoded:
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    else:
        event["body"] = body.decode("utf-8")
        event["isBase64Encoded"] = False
    return event
