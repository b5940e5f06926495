"""One spelling per JSON value: keys sorted, numbers exact (250 == 250.00), types kept (250 != "250").

Fingerprints built on it do not change when a sender reorders keys or writes 10.0 for 10. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal


def canonical_json(value: object) -> str:
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda pair: str(pair[0]))
        return "{" + ",".join(f"{json.dumps(str(key))}:{canonical_json(item)}" for key, item in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | Decimal):
        return "n:" + _exact_number(Decimal(value))
    return json.dumps(str(value))


def sha256_of(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def _exact_number(number: Decimal) -> str:
    """Trailing zeros dropped without the rounding ``Decimal.normalize()`` would apply."""
    if not number.is_finite():
        return str(number)
    sign, digits, exponent = number.as_tuple()
    kept = list(digits)
    while len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent = int(exponent) + 1
    if kept == [0]:
        return "0"
    return f"{'-' if sign else ''}{''.join(map(str, kept))}e{exponent}"
