"""The webhook emitter: plays Flinks delivering a guarantee webhook (signed ``X-Webhook-Signature:
sha256=<HEX>``, the same bytes re-sent until a 2xx, as Flinks retries)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from testkit.flinks.responses import dumps
from testkit.flinks.scenarios import MAX_PAUSE_S


@dataclass(frozen=True)
class DeliveryResult:
    """Each attempt as ``(HTTP status or None for a connection error/timeout, elapsed ms)``."""

    attempts: list[tuple[int | None, float]]
    delivered: bool


def sign_body(body: bytes, secret: str) -> str:
    """The ``X-Webhook-Signature`` value: ``sha256=`` + uppercase hex HMAC-SHA256 of the exact bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().upper()


def guarantee_webhook_body(
    session_id: str,
    *,
    reference_id: str | None = None,
    amount: Decimal | float | None = None,
    guarantee_id: str | None = None,
) -> dict[str, Any]:
    """The sandbox's guess at the (undocumented, §1.2) guarantee event body (``guaranteeId`` only
    when the offer has one)."""
    body: dict[str, Any] = {
        "type": "GuaranteeEmitted",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sessionId": session_id,
        "referenceId": reference_id,
        "amount": amount,
    }
    if guarantee_id is not None:
        body["guaranteeId"] = guarantee_id
    return body


def emit_guarantee_webhook(
    url: str,
    secret: str,
    session_id: str,
    *,
    body: dict[str, Any] | None = None,
    reference_id: str | None = None,
    amount: Decimal | float | None = None,
    guarantee_id: str | None = None,
    raw_body: bytes | None = None,
    attempts: int = 3,
    timeout: float = 5.0,
    spacing_s: float = 0.0,
) -> DeliveryResult:
    """Plays Flinks delivering a guarantee webhook: serialize once, sign those bytes, POST them until a 2xx.

    ``body`` replaces the default body; ``raw_body`` sends exact bytes (for signature-edge tests).
    A non-2xx answer, a timeout or a connection error is a failed attempt; the same bytes are re-sent up
    to ``attempts`` times, ``spacing_s`` apart. Redirects are not followed and no proxy is used.
    """
    if not 1 <= attempts <= 10:
        raise ValueError("attempts must be within 1..10")
    if not 0 < timeout <= MAX_PAUSE_S or not 0 <= spacing_s <= MAX_PAUSE_S:
        raise ValueError(f"timeout and spacing_s must be within 0..{MAX_PAUSE_S} seconds")
    if raw_body is None:
        document = (
            body
            if body is not None
            else guarantee_webhook_body(
                session_id, reference_id=reference_id, amount=amount, guarantee_id=guarantee_id
            )
        )
        raw_body = dumps(document)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Webhook-Signature": sign_body(raw_body, secret),
        "User-Agent": "geft-local-flinks-sandbox",
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    results: list[tuple[int | None, float]] = []
    for number in range(attempts):
        if number and spacing_s:
            time.sleep(spacing_s)
        request = urllib.request.Request(url, data=raw_body, headers=headers, method="POST")  # noqa: S310
        started = time.perf_counter()
        status: int | None
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read()
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            status = None
        results.append((status, round((time.perf_counter() - started) * 1000, 3)))
        if status is not None and 200 <= status < 300:
            return DeliveryResult(attempts=results, delivered=True)
    return DeliveryResult(attempts=results, delivered=False)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
