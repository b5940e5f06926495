"""Text output of the operator CLI. Every string that came from the table or from Flinks is printed with
its control characters escaped: a webhook body cannot move the cursor, clear the screen or fake a line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def clean(value: object) -> str:
    """``value`` as one printable line: control characters (and other non-printables) escaped."""
    text = "-" if value is None else str(value)
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def as_json(data: object) -> str:
    """JSON for scripts: strings escaped by JSON itself, so no control character reaches the terminal."""
    return json.dumps(data, indent=2, default=str, ensure_ascii=True)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[clean(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def facts(values: Mapping[str, Any]) -> str:
    return " ".join(f"{clean(name)}={clean(_scalar(value))}" for name, value in values.items()) or "-"


def story(session: Mapping[str, Any]) -> str:
    """``show``: each guarantee's webhook, decision, review, confirm and history, then the final status."""
    lines = [f"session {clean(session['sessionId'])}"]
    for guarantee in session["guarantees"]:
        lines += _guarantee(guarantee)
    final = session["finalStatus"]
    lines.append(
        f"  final status: {clean(final['status'])} {clean(final['details'] or '')} "
        f"({clean(final['source'])}, {clean(final['at'])})"
        if final
        else "  final status: unknown yet"
    )
    return "\n".join(lines)


def _guarantee(guarantee: Mapping[str, Any]) -> list[str]:
    lines = [f"  guarantee {clean(guarantee['guaranteeKey'])}: {clean(guarantee['status'])}"]
    lines.append(f"    webhook    {facts(guarantee['webhook'])}")
    lines += _decision(guarantee["decisionDetail"], guarantee["shadow"])
    lines += _review(guarantee["review"])
    confirm = guarantee["confirm"]
    if confirm:
        how = " (learnt from /details)" if confirm["recoveredFromDetails"] else ""
        lines.append(
            f"    confirm    Flinks holds it since {clean(confirm['confirmedAt'])}{how}; "
            f"webhook to confirm {clean(confirm['webhookToConfirmMs'])} ms"
        )
    if guarantee["failureReason"]:
        lines.append(f"    failed     {clean(guarantee['failureReason'])}")
    if guarantee["followUp"]:
        follow_up = guarantee["followUp"]
        lines.append(f"    waiting    {clean(follow_up['queue'])} until {clean(follow_up['due'])}")
    lines.append("    history")
    for entry in guarantee["history"]:
        moved = f"{clean(entry['from'])} -> {clean(entry['to'])}" if entry["from"] else clean(entry["to"])
        who = clean(entry["by"]) + (f" ({clean(entry['note'])})" if entry["note"] else "")
        reason = f": {clean(entry['reason'])}" if entry["reason"] else ""
        lines.append(f"      {clean(entry['at'])}  {clean(entry['change']):<18} {moved:<22} {who}{reason}")
    return lines


def _decision(decision: Mapping[str, Any] | None, shadow: Mapping[str, Any] | None) -> list[str]:
    if not decision:
        return []
    code = f" ({clean(decision['reason'])})" if decision["reason"] else ""
    lines = [f"    decision   {clean(decision['verdict'])} by rule {clean(decision['rule'])}{code}"]
    if decision["inputs"]:
        lines.append(f"    facts      {facts(decision['inputs'])}")
    if decision["missingFacts"]:
        lines.append(f"    missing    {', '.join(clean(fact) for fact in decision['missingFacts'])}")
    if decision["policy"]:
        lines.append(f"    policy     {clean(decision['policy'])}")
    if shadow:
        lines.append(
            f"    shadow     {clean(shadow['verdict'])} by rule {clean(shadow['rule'])} "
            f"({clean(shadow['policy'])})"
        )
    return lines


def _review(review: Mapping[str, Any] | None) -> list[str]:
    if not review:
        return []
    lines = []
    if review["holdReason"]:
        lines.append(f"    held       {clean(review['holdReason'])}")
    elif review["requestedByRule"]:
        lines.append(
            f"    review     asked by rule {clean(review['requestedByRule'])} "
            f"at {clean(review['requestedAt'])}"
        )
    if review["decision"]:
        note = f" ({clean(review['reviewerNote'])})" if review["reviewerNote"] else ""
        lines.append(
            f"    reviewed   {clean(review['decision'])} by {clean(review['reviewer'])}{note} "
            f"at {clean(review['reviewedAt'])}: {clean(review['reason'])}"
        )
    return lines


def _scalar(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, Mapping | list) else value


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
