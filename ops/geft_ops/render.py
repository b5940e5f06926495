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
    final = session["finalStatus"]
    for guarantee in session["guarantees"]:
        lines += _guarantee(guarantee, final_status_known=bool(final))
    lines.append(
        f"  final status: {clean(final['status'])} {clean(final['details'] or '')} "
        f"({clean(final['source'])}, {clean(final['at'])})"
        if final
        else "  final status: unknown yet"
    )
    if session.get("sessionHistory"):
        lines.append("  session history")
        lines += _history(session["sessionHistory"])
    return "\n".join(lines)


def _guarantee(guarantee: Mapping[str, Any], *, final_status_known: bool) -> list[str]:
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
    follow_up = guarantee["followUp"]
    # A reconciliation still queued once the final status is known is only bookkeeping (the
    # reconciler's next run clears it): showing it as "waiting" would say the opposite of the truth.
    if follow_up and not (final_status_known and follow_up["queue"] == "RECONCILE"):
        lines.append(f"    waiting    {clean(follow_up['queue'])} until {clean(follow_up['due'])}")
    lines.append("    history")
    lines += _history(guarantee["history"])
    return lines


def _history(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """History rows in columns as wide as their widest cell, two spaces apart."""
    rows = []
    for entry in entries:
        moved = f"{clean(entry['from'])} -> {clean(entry['to'])}" if entry["from"] else clean(entry["to"])
        who = clean(entry["by"]) + (f" ({clean(entry['note'])})" if entry["note"] else "")
        reason = f": {clean(entry['reason'])}" if entry["reason"] else ""
        rows.append((clean(entry["at"]), clean(entry["change"]), moved, who + reason))
    change_width = max((len(row[1]) for row in rows), default=0)
    moved_width = max((len(row[2]) for row in rows), default=0)
    return [
        f"      {at}  {change:<{change_width}}  {moved:<{moved_width}}  {who}"
        for at, change, moved, who in rows
    ]


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
        shadow_code = f" ({clean(shadow['reason'])})" if shadow["reason"] else ""
        lines.append(
            f"    shadow     {clean(shadow['verdict'])} by rule {clean(shadow['rule'])}{shadow_code}, "
            f"policy {clean(shadow['policy'])} (never acted on)"
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


# -- the policy lab (geft_ops.policy_lab) -----------------------------------------------------------------

_FINAL_STATUS_COLUMNS = ("Completed", "Failed", "Canceled", "Expired", "unknown")


def backtest(report: Mapping[str, Any]) -> str:
    """``policy backtest``: what changes, how the changed ones ended, rule by rule, then examples."""
    evaluated, changed = report["evaluated"], report["changed"]
    lines = [
        _window(report["window"]),
        f"candidate      {clean(report['candidate'])}",
        *(
            f"today          {clean(label)}: {count} guarantees"
            for label, count in report["todayPolicies"].items()
        ),
        f"considered     {report['considered']} guarantees",
        f"not evaluated  {report['notEvaluated']['total']} (no policy inputs recorded: never guessed)",
        *(f"  {count:>11}  {clean(reason)}" for reason, count in report["notEvaluated"]["byReason"].items()),
        f"evaluated      {evaluated}: {changed} decided differently ({_share(changed, evaluated)}), "
        f"{report['unchanged']} the same ({report['sameDecisionOtherRule']} of them by another rule)",
    ]
    if report["transitions"]:
        rows = [
            {"change": _arrow(row["change"]), "count": row["count"], **row["finalStatus"]}
            for row in report["transitions"]
        ]
        rows += [
            {"change": f"{row['decision']} (unchanged)", "count": row["count"], **row["finalStatus"]}
            for row in report["unchangedFinalStatus"]
        ]
        lines += ["", "how the sessions ended (final status), the changed ones first:"]
        lines.append(table(rows, ("change", "count", *_FINAL_STATUS_COLUMNS)))
    if report["rules"]:
        lines += ["", table(report["rules"], ("rule", "today", "candidate"))]
    if report["candidateMissingFacts"]:
        missing = ", ".join(
            f"{clean(fact)} {count}" for fact, count in report["candidateMissingFacts"].items()
        )
        lines += ["", f"candidate decided missing-facts for lack of: {missing}"]
    if report["examples"]:
        rows = [_decision_pair(example, "today", "candidate") for example in report["examples"]]
        lines += ["", f"changed, newest {len(rows)} of {changed}:"]
        lines.append(
            table(
                rows,
                (
                    "sessionId",
                    "receivedAt",
                    "today",
                    "todayRule",
                    "answer",
                    "candidate",
                    "candidateRule",
                    "finalStatus",
                ),
            )
        )
    return "\n".join(lines)


def shadow_report(report: Mapping[str, Any]) -> str:
    """``policy shadow-report``: agreement, disagreements by decision and by rule, then the list."""
    with_shadow = report["withShadow"]
    lines = [
        _window(report["window"]),
        *(f"shadow policy  {clean(label)}: {count}" for label, count in report["shadowPolicies"].items()),
        f"guarantees     {report['considered']}: {with_shadow} with a shadow decision, "
        f"{report['withoutShadow']} without",
    ]
    if not with_shadow:
        lines.append("no shadow decisions in this window: is ShadowDecisionPolicy set?")
        return "\n".join(lines)
    lines.append(
        f"agreement      {report['agree']} of {with_shadow} ({_share(report['agree'], with_shadow)}); "
        f"{report['disagree']} disagree; {report['sameDecisionOtherRule']} agree by another rule"
    )
    if report["byDecision"]:
        lines += ["", table(report["byDecision"], ("live", "shadow", "count"))]
        lines += ["", table(report["byRule"], ("liveRule", "shadowRule", "live", "shadow", "count"))]
    if report["disagreements"]:
        rows = [_decision_pair(entry, "live", "shadow") for entry in report["disagreements"]]
        lines += ["", f"disagreements, newest {len(rows)} of {report['disagree']}:"]
        lines.append(
            table(
                rows, ("sessionId", "receivedAt", "live", "liveRule", "shadow", "shadowRule", "finalStatus")
            )
        )
    return "\n".join(lines)


def review_stats(stats: Mapping[str, Any]) -> str:
    """``review stats``: the queue now, then how the window's reviews were answered, by whom."""
    queue = stats["queue"]
    answered, people = stats["answered"], stats["answeredByPeople"]
    times = stats["timeToDecisionMs"]
    lines = [
        f"window          {clean(stats['window']['since'])} .. now (the queue: whenever received)",
        f"queue now       {queue['total']} waiting: {queue['policyReviews']} policy reviews"
        f"{_oldest(queue['oldestReviewAgeMs'])}, {queue['holds']} holds{_oldest(queue['oldestHoldAgeMs'])}",
        f"answered        {answered} policy reviews: {people} by people, {stats['answeredByTimeout']} by the "
        f"review timeout ({_share(stats['answeredByTimeout'], answered)}); "
        f"{stats['holdsAnswered']} holds answered",
        f"time to answer  all: {_spread(times['all'])}; people: {_spread(times['people'])}",
        f"overturned      {stats['overturned']} of {people} people's answers "
        f"({_share(stats['overturned'], people)}) differ from the review timeout's fallback "
        f"({clean(stats['fallback'])})",
    ]
    if stats["reviewers"]:
        rows = [{**row, "median": duration(row["medianTimeToDecisionMs"])} for row in stats["reviewers"]]
        lines += [
            "",
            table(rows, ("reviewer", "note", "answered", "accepted", "rejected", "overturned", "median")),
        ]
    if stats["byRule"]:
        rows = [
            {**row, "answers": ", ".join(f"{answer} {count}" for answer, count in row["answers"].items())}
            for row in stats["byRule"]
        ]
        lines += ["", table(rows, ("rule", "answered", "answers"))]
    return "\n".join(lines)


def duration(ms: int | None) -> str:
    """A duration an operator reads at a glance: 850 ms, 12.3 s, 4m 05s, 2h 10m."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {second:02d}s"
    hours, minute = divmod(minutes, 60)
    return f"{hours}h {minute:02d}m"


def _window(window: Mapping[str, Any]) -> str:
    statuses = ", ".join(clean(status) for status in window["statuses"]) or "any status"
    return (
        f"window         received {clean(window['since'])} .. {clean(window['until'] or 'now')} "
        f"({statuses}; {window['scannedItems']} items scanned)"
    )


def _decision_pair(entry: Mapping[str, Any], first: str, second: str) -> dict[str, Any]:
    row = {
        "sessionId": entry["sessionId"],
        "receivedAt": entry["receivedAt"],
        first: entry[first]["decision"],
        f"{first}Rule": entry[first]["rule"],
        second: entry[second]["decision"],
        f"{second}Rule": entry[second]["rule"],
        "finalStatus": entry["finalStatus"],
    }
    if "answer" in entry:
        row["answer"] = entry["answer"]
    return row


def _arrow(change: str) -> str:
    return change.replace("->", " -> ")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _spread(percentiles: Mapping[str, Any]) -> str:
    if not percentiles["count"]:
        return "none answered"
    return f"p50 {duration(percentiles['p50'])}, p90 {duration(percentiles['p90'])} ({percentiles['count']})"


def _oldest(age_ms: int | None) -> str:
    return f" (oldest {duration(age_ms)})" if age_ms is not None else ""
