"""The decision policy's input facts, read from a Flinks G-EFT session.

Reads both documented shapes of ``GET /details`` (reference section 5.4):

* current: ``guaranteeDetails{guaranteeOffered, highestDebitAmountToGuarantee, *RiskLevel}`` and
  ``payor.account.availableBalance``;
* legacy: ``guarantee{status, approvedAt, coverage}`` and ``payor.verifiedAccount`` (which has no balance).

``/details`` is authoritative. The webhook only fills what ``/details`` lacks: top-level fields one by one,
and the guarantee block as a whole (so one offer's fields are never mixed with another's).

A fact that is missing, null or of the wrong type is absent from the result (never None), so the policy
treats it as unknown. Money is an exact ``Decimal`` (see ``geft.policy.as_decimal``); booleans are not money.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Any, Final

from geft.policy import as_decimal

_RISK_LEVELS: Final = ("overallRiskLevel", "transactionRiskLevel", "userRiskLevel", "otherRiskLevel")

# Legacy guarantee.status, compared case-insensitively; any other status leaves guaranteeOffered unknown.
_LEGACY_OFFERED: Final[Mapping[str, bool]] = {
    "approved": True,
    "offered": True,
    "granted": True,
    "declined": False,
    "rejected": False,
    "refused": False,
}


def facts_from_session(
    details: Mapping[str, Any] | None,
    webhook_guarantee_details: Mapping[str, Any] | None = None,
    webhook_body: Mapping[str, Any] | None = None,
) -> dict[str, object]:
    """Policy facts from ``/details`` (either shape), falling back to what the webhook carried."""
    sources = [source for source in (details, webhook_body) if source is not None]
    guarantee = _guarantee_block(details, webhook_guarantee_details, webhook_body)
    amount = as_decimal(_first(sources, "amount"))
    highest = as_decimal(guarantee.get("highestDebitAmountToGuarantee"))
    candidates: dict[str, object | None] = {
        "amount": amount,
        "currency": _text(_first(sources, "currency")),
        "referenceId": _text(_first(sources, "referenceId")),
        "guaranteeOffered": _flag(guarantee.get("guaranteeOffered")),
        "highestDebitAmountToGuarantee": highest,
        **{level: _text(guarantee.get(level)) for level in _RISK_LEVELS},
        "availableBalance": as_decimal(_first(sources, "payor", "account", "availableBalance")),
        "shortfall": _difference(amount, highest),
    }
    return {field: value for field, value in candidates.items() if value is not None}


# Wide enough that no two JSON numbers overflow when subtracted (1e999999999 - 100 is still exact
# in magnitude): an absurd amount must reach the policy as a number, not crash the batch.
_EXACT = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation])


def _difference(minuend: Decimal | None, subtrahend: Decimal | None) -> Decimal | None:
    if minuend is None or subtrahend is None:
        return None
    return _EXACT.subtract(minuend, subtrahend)


def already_decided(details: Mapping[str, Any] | None) -> bool | None:
    """``guaranteeDetails.guaranteeAccepted`` if a real boolean (a confirm reached Flinks), else None."""
    block = details.get("guaranteeDetails") if details is not None else None
    accepted = block.get("guaranteeAccepted") if isinstance(block, Mapping) else None
    return accepted if isinstance(accepted, bool) else None


def _guarantee_block(
    details: Mapping[str, Any] | None,
    webhook_guarantee_details: Mapping[str, Any] | None,
    webhook_body: Mapping[str, Any] | None,
) -> Mapping[str, Any]:
    """The first guarantee block found, in the current shape: /details, then the webhook's."""
    for block in (_block_of(details), webhook_guarantee_details, _block_of(webhook_body)):
        if isinstance(block, Mapping):
            return block
    return {}


def _block_of(source: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    current = source.get("guaranteeDetails") if source is not None else None
    if isinstance(current, Mapping):
        return current
    legacy = source.get("guarantee") if source is not None else None
    return _from_legacy(legacy) if isinstance(legacy, Mapping) else None


def _from_legacy(guarantee: Mapping[str, Any]) -> dict[str, object]:
    """Legacy ``guarantee{status, coverage}`` as the current block's two fields it can tell."""
    status = guarantee.get("status")
    coverage = guarantee.get("coverage")
    return {
        "guaranteeOffered": _LEGACY_OFFERED.get(status.strip().casefold())
        if isinstance(status, str)
        else None,
        "highestDebitAmountToGuarantee": coverage.get("amount")
        if isinstance(coverage, Mapping)
        else coverage,
    }


def _first(sources: list[Mapping[str, Any]], *path: str) -> object:
    """The first non-null value at ``path`` among ``sources``."""
    for source in sources:
        node: object = source
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            return node
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None
