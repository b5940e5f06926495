"""Nothing lost, nothing confirmed twice: the bookkeeping the fault, crash, race and load tests end with.

Every stored guarantee must end CONFIRMED (with exactly one confirm in the Flinks sandbox's journal,
carrying the recorded decision), FAILED with a reason (and at most one confirm), or still be reported
for retry by the last invocation; no session may ever see a second confirm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from testkit.flinks import FlinksSandbox

TERMINAL = frozenset({"CONFIRMED", "FAILED"})


@dataclass(frozen=True)
class LedgerSummary:
    guarantees: int
    confirmed: int
    failed: int
    awaiting_retry: int
    recovered_from_details: int
    lost: int
    duplicated: int


def guarantee_items(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if str(item.get("sk", "")).startswith("GUARANTEE#")]


def audit(
    sandbox: FlinksSandbox,
    items: Callable[[], list[dict[str, Any]]],
    *,
    awaiting_retry: Iterable[str] = (),
) -> LedgerSummary:
    """Check the ledger and return its counts; fails the test on anything lost or duplicated.

    ``awaiting_retry``: session ids whose record the last invocation reported in batchItemFailures.
    """
    retry = set(awaiting_retry)
    guarantees = guarantee_items(items())
    problems: list[str] = []
    lost = duplicated = confirmed = failed = recovered = 0
    for item in guarantees:
        session_id, status = str(item["pk"]), str(item["status"])
        confirms = sandbox.confirms_for(session_id) if _known(sandbox, session_id) else []
        if len(confirms) > 1:
            duplicated += 1
            problems.append(f"{session_id}: {len(confirms)} confirms {confirms}")
        if status == "CONFIRMED":
            confirmed += 1
            recovered += bool(item.get("recoveredFromDetails"))
            expected = [item.get("decision") == "accept"]
            if confirms != expected:
                problems.append(f"{session_id}: CONFIRMED {item.get('decision')} but Flinks saw {confirms}")
        elif status == "FAILED":
            failed += 1
            if not item.get("failureReason"):
                problems.append(f"{session_id}: FAILED without a failureReason")
        elif session_id not in retry:
            lost += 1
            problems.append(f"{session_id}: left {status} and not reported for retry")
    assert not problems, "ledger broken:\n" + "\n".join(problems)
    return LedgerSummary(
        guarantees=len(guarantees),
        confirmed=confirmed,
        failed=failed,
        awaiting_retry=sum(1 for item in guarantees if str(item["status"]) not in TERMINAL),
        recovered_from_details=recovered,
        lost=lost,
        duplicated=duplicated,
    )


def _known(sandbox: FlinksSandbox, session_id: str) -> bool:
    try:
        sandbox.session_state(session_id)
    except (KeyError, ValueError):
        return False
    return True


def retried_sessions(event: dict[str, Any], answer: dict[str, Any]) -> set[str]:
    """Session ids of the records an invocation reported in batchItemFailures."""
    failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
    return {
        record["dynamodb"]["Keys"]["pk"]["S"]
        for record in event.get("Records", [])
        if record["dynamodb"]["SequenceNumber"] in failed
    }


def only_failed(event: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The batch Lambda retries: the records reported in batchItemFailures (ReportBatchItemFailures)."""
    failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
    return {"Records": [r for r in event["Records"] if r["dynamodb"]["SequenceNumber"] in failed]}
