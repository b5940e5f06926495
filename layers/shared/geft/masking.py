"""Account numbers (and other long digit runs) masked for display: all but the last four digits.

Used wherever an operator reads what Flinks sent (``geft-ops show``, ``quarantine show``, review
notices). Display only: stored bodies are never altered (they are the evidence).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# 7+ digits not inside a word or a UUID: Canadian account numbers are 7-12 digits.
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z-])\d{7,}(?![0-9A-Za-z-])")
_ACCOUNT_KEYS = re.compile(r"account|transit|institution", re.IGNORECASE)


def mask_text(text: str) -> str:
    return _LONG_DIGITS.sub(lambda match: _masked(match.group()), text)


def mask_document(value: Any, *, key: str = "") -> Any:
    """A JSON document with account-like values masked; keys and structure unchanged."""
    if isinstance(value, Mapping):
        return {name: mask_document(item, key=str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [mask_document(item, key=key) for item in value]
    if isinstance(value, str):
        if _ACCOUNT_KEYS.search(key) and len(value) > 4 and value.isdigit():
            return _masked(value)
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and _ACCOUNT_KEYS.search(key):
        return _masked(str(value))
    return value


def _masked(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]
