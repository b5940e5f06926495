"""What the receiver decides about a caller before any other work, and what it tells one it refuses.

Pure: no AWS, no environment. The handler applies these at the edge of the function.

- ``SourceAllowList``: the optional allow-list of source networks (``ALLOWED_SOURCE_CIDRS``), checked
  against API Gateway's ``requestContext.http.sourceIp`` (the TCP peer, not a header a caller can set).
- ``error_body``: every refusal is a fixed code plus the request id, never an ARN, a secret's name,
  a path or a method: an unauthenticated caller learns nothing about the stack.
- ``rejected_body_shape``: whether a body that failed signature verification looks like a G-EFT
  webhook. A wrong webhook secret makes every Flinks delivery look like one; a scanner's bodies do
  not. The answer only chooses a metric dimension; the body is never stored, logged or trusted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from geft.observability import MetricUnit
from geft.webhook_events import classify

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# API Gateway's request ids are short base32/base64-like tokens; anything else is not echoed.
_REQUEST_ID = re.compile(r"[A-Za-z0-9=+/_.:-]{1,128}")
SIGNATURE_REJECTED_METRIC = "SignatureRejected"
BODY_SHAPE_DIMENSION = "BodyShape"


class BodyShape(StrEnum):
    GEFT_WEBHOOK = "geft-webhook"  # a JSON object with a UUID sessionId: Flinks, or someone imitating it
    OTHER = "other"  # anything else: probes, scanners, garbage


class InvalidAllowListError(ValueError):
    """An entry of the allow-list is not an IPv4 or IPv6 network in CIDR notation."""


@dataclass(frozen=True)
class SourceAllowList:
    """Source networks allowed to call the webhook; empty means every source is allowed."""

    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SourceAllowList:
        """``"203.0.113.0/24,2001:db8::/32"``; blanks are ignored; a bad entry raises naming it."""
        networks = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as error:
                raise InvalidAllowListError(f"{entry!r} is not a network in CIDR notation") from error
        return cls(tuple(networks))

    @property
    def enabled(self) -> bool:
        return bool(self.networks)

    def admits(self, source_ip: object) -> bool:
        """True when the list is off, or ``source_ip`` is a valid address inside one of the networks.
        A missing or malformed address is refused when the list is on."""
        if not self.networks:
            return True
        if not isinstance(source_ip, str):
            return False
        try:
            address = ipaddress.ip_address(source_ip.strip())
        except ValueError:
            return False
        return any(address.version == network.version and address in network for network in self.networks)


def source_ip_of(event: Mapping[str, Any]) -> object:
    """``requestContext.http.sourceIp`` of an HTTP API payload v2 event (None when absent)."""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    return http.get("sourceIp") if isinstance(http, Mapping) else None


def request_id_of(event: Mapping[str, Any], fallback: str | None = None) -> str | None:
    """API Gateway's ``requestContext.requestId`` (also in its access log), else ``fallback``; a value
    that does not look like a request id is never echoed."""
    context = event.get("requestContext")
    candidate = context.get("requestId") if isinstance(context, Mapping) else None
    for value in (candidate, fallback):
        if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return None


def error_body(code: str, request_id: str | None) -> dict[str, Any]:
    """The whole body of a refusal: a code from a fixed vocabulary and the request id, nothing else."""
    return {"error": {"code": code, "requestId": request_id}}


def rejected_body_shape(body: bytes) -> BodyShape:
    """Classify an unauthenticated body for the SignatureRejected metric (see the module docstring)."""
    return BodyShape.OTHER if classify(body).session_id is None else BodyShape.GEFT_WEBHOOK


def record_signature_rejected_shape(body: bytes) -> None:
    """Emit ``SignatureRejected`` with the ``BodyShape`` dimension (alongside the undimensioned count).

    Called by the receiver where it refuses a signature. The paging alarm watches
    ``BodyShape=geft-webhook`` (a wrong secret fails Flinks' own deliveries); a high-threshold alarm
    watches ``other`` (scanners)."""
    from aws_lambda_powertools.metrics import single_metric  # noqa: PLC0415 - only on a refusal

    with single_metric(name=SIGNATURE_REJECTED_METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name=BODY_SHAPE_DIMENSION, value=rejected_body_shape(body).value)
