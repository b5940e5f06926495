"""What the code reads from a Flinks G-EFT session: the decision policy's input facts (``/details``),
whether Flinks already holds a decision (``/details``), and the session's status (``/status``).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final

from geft.policy import as_decimal
from geft.webhook_events import FINAL_SESSION_STATUSES

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


@dataclass(frozen=True)
class ReportedStatus:
    """What ``GET /status`` says: ``status`` and ``statusDetails`` when Flinks sent them as strings."""

    status: str | None
    status_details: str | None

    @property
    def final(self) -> bool:
        """Completed, Failed, Canceled or Expired: nothing will change any more."""
        return self.status in FINAL_SESSION_STATUSES


def reported_status(answer: Mapping[str, Any]) -> ReportedStatus:
    """The reconciler's reading of a ``GET /status`` answer (anything but a string is not a status)."""
    return ReportedStatus(_text(answer.get("status")), _text(answer.get("statusDetails")))


class RecordedDecision(Enum):
    NONE = "none"  # /details shows no decision: nothing reached Flinks, or it is not applied yet
    OURS = "ours"  # the decision Flinks shows is this guarantee's
    UNATTRIBUTABLE = "unattributable"  # Flinks shows a decision that may belong to another guarantee


@dataclass(frozen=True)
class GuaranteeIdentity:
    """What tells one guarantee of a session from another: its id, else its amount (from the webhook)."""

    guarantee_id: str | None
    amount: Decimal | None

    @classmethod
    def of_webhook(cls, guarantee_key: str, body: Mapping[str, Any]) -> GuaranteeIdentity:
        guarantee_id = guarantee_key.removeprefix("id:") if guarantee_key.startswith("id:") else None
        fields = {**body.get("data", {}), **body} if isinstance(body.get("data"), Mapping) else body
        amount = next(
            (
                number
                for key in ("amount", "guaranteeAmount")
                if (number := as_decimal(fields.get(key))) is not None
            ),
            None,
        )
        return cls(guarantee_id, amount)


@dataclass(frozen=True)
class DecisionAtFlinks:
    """What ``/details`` says about the decision for one guarantee, and how we know."""

    recorded: RecordedDecision
    accepted: bool | None = None
    evidence: str = ""


def decision_at_flinks(
    details: Mapping[str, Any] | None,
    guarantee: GuaranteeIdentity,
    answered_siblings: Sequence[GuaranteeIdentity] = (),
) -> DecisionAtFlinks:
    """Whether Flinks already records a decision for ``guarantee`` (the one rule; see decisions.md).

    ``guaranteeDetails.guaranteeAccepted`` is session-wide in the documented shape, so it is taken as this
    guarantee's only when that is certain: the guarantee ids match, or, without ids to compare, no other
    guarantee of the session may have been confirmed (``answered_siblings``: the ones we sent, or may
    have sent, a confirm for) and the amounts /details shows agree with this guarantee's. Anything but a
    JSON boolean there is no decision.
    """
    block = details.get("guaranteeDetails") if details is not None else None
    accepted = block.get("guaranteeAccepted") if isinstance(block, Mapping) else None
    if not isinstance(accepted, bool) or not isinstance(block, Mapping) or details is None:
        return DecisionAtFlinks(RecordedDecision.NONE)
    shown_id = block.get("guaranteeId")
    if guarantee.guarantee_id is not None and isinstance(shown_id, str) and shown_id:
        if shown_id == guarantee.guarantee_id:
            return DecisionAtFlinks(RecordedDecision.OURS, accepted, f"/details shows guarantee {shown_id}")
        return DecisionAtFlinks(
            RecordedDecision.UNATTRIBUTABLE,
            accepted,
            f"/details shows a decision for guarantee {shown_id}, not {guarantee.guarantee_id}",
        )
    if answered_siblings:
        return DecisionAtFlinks(
            RecordedDecision.UNATTRIBUTABLE,
            accepted,
            f"another guarantee of this session was also answered, and /details cannot tell which one "
            f"its decision ({'accept' if accepted else 'reject'}) belongs to",
        )
    shown_amounts = {
        number
        for number in (
            as_decimal(details.get("amount")),
            as_decimal(block.get("highestDebitAmountToGuarantee")),
        )
        if number is not None
    }
    if guarantee.amount is None or not shown_amounts or guarantee.amount in shown_amounts:
        return DecisionAtFlinks(
            RecordedDecision.OURS,
            accepted,
            "the session's only answered guarantee, and /details agrees on it",
        )
    return DecisionAtFlinks(
        RecordedDecision.UNATTRIBUTABLE,
        accepted,
        f"/details shows a decision for amount {_amounts(shown_amounts)}, this guarantee is for "
        f"{guarantee.amount}",
    )


def _amounts(amounts: set[Decimal]) -> str:
    return "/".join(str(amount) for amount in sorted(amounts)) or "unknown"


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
