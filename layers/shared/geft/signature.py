"""Flinks webhook signatures: ``X-Webhook-Signature: sha256=<HEX>`` over the exact raw body bytes.

Flinks sends uppercase hex; we compare case-insensitively and in constant time, before anything
parses the body (flinks-geft.md §1.3).
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Iterable

SIGNATURE_HEADER = "x-webhook-signature"
_SCHEME = "sha256="
_HEX_DIGITS = frozenset(string.hexdigits)
_HEX_LENGTH = hashlib.sha256().digest_size * 2


def compute_signature(body: bytes, secret: str) -> str:
    """The header value Flinks would send for ``body``: ``sha256=`` and uppercase hex."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _SCHEME + digest.upper()


def verify_signature(body: bytes, header_value: str | None, secrets: Iterable[str]) -> bool:
    """True when ``header_value`` is a well-formed signature of ``body`` under any of ``secrets``."""
    received = _received_hex(header_value)
    if received is None:
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
        # No early exit: every configured secret is compared, so timing says nothing about which matched.
        matched |= hmac.compare_digest(expected, received)
    return matched


def _received_hex(header_value: str | None) -> bytes | None:
    if not header_value:
        return None
    value = header_value.strip()
    if value[: len(_SCHEME)].lower() != _SCHEME:
        return None
    hex_part = value[len(_SCHEME) :]
    if len(hex_part) != _HEX_LENGTH or not _HEX_DIGITS.issuperset(hex_part):
        return None
    return hex_part.lower().encode("ascii")
