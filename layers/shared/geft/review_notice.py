"""The message a review team gets the moment a guarantee waits for a person (SNS, and the local console).

Everything needed to act without opening anything else: which session and guarantee, the amount, why it
needs a person (the rule and its reason code, or why a recovery was held), the facts the policy saw,
the deadline after which the fallback applies (none for a hold), and the exact command to decide.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime

from geft.items import GuaranteeView
from geft.masking import mask_document, mask_text
from geft.models import FollowUpQueue


@dataclass(frozen=True)
class ReviewNotice:
    subject: str
    message: str


def review_notice(guarantee: GuaranteeView, *, cli_target: str, fallback_decision: str) -> ReviewNotice:
    """``cli_target``: how geft-ops names the stack (``--stack NAME``; ``--local`` on the local stack)."""
    ref = guarantee.ref
    body = guarantee.body()
    amount = body.get("amount", body.get("guaranteeAmount"))
    currency = body.get("currency", "CAD")
    review = guarantee.review
    decision = guarantee.decision
    lines = [
        f"A customer is waiting: guarantee {ref.guarantee_key} of session {ref.session_id} needs a decision.",
        "",
        f"Amount:   {amount if amount is not None else 'not in the webhook'} {currency}",
    ]
    if review is not None and review.hold_reason:
        lines.append(f"Why:      held for a person: {mask_text(review.hold_reason)}")
    elif decision is not None:
        code = f" ({decision.reason})" if decision.reason else ""
        lines.append(f"Why:      rule {decision.rule}{code} asked for a review")
    if decision is not None and decision.missing_facts:
        lines.append(f"Missing:  {', '.join(decision.missing_facts)}")
    if decision is not None and decision.inputs:
        facts = mask_document(decision.inputs)
        lines.append("Facts:    " + ", ".join(f"{name}={value}" for name, value in sorted(facts.items())))
    follow_up = guarantee.follow_up
    if follow_up is not None and follow_up.queue is FollowUpQueue.REVIEW:
        deadline = datetime.fromtimestamp(follow_up.due_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        lines.append(f"Deadline: {deadline}; after it the fallback decision ({fallback_decision}) applies")
    else:
        lines.append("Deadline: none: no fallback applies to a hold; Flinks may expire the session meanwhile")
    if decision is not None and decision.policy is not None:
        lines.append(f"Policy:   {decision.policy.label()}")
    lines += ["", "Decide (the processor then confirms it with Flinks):"]
    for verdict in ("accept", "reject"):
        command = ["decide", ref.session_id, verdict, "--guarantee", ref.guarantee_key, "--reason", "<why>"]
        lines.append(f"  bin/geft-ops {cli_target} {shlex.join(command)}")
    subject = f"G-EFT review needed: session {ref.session_id}"
    return ReviewNotice(subject=subject, message="\n".join(lines))
