"""Item 5: AWS and Flinks calls per guarantee, counted on cold and warm containers, and the bytes logged.

Both functions run in this process under moto (``mock_aws``, writes atomic), so every count comes
from real requests: every botocore client's calls (``testkit.aws.AwsCalls``) and the Flinks
sandbox's journal. Run as a child: ``python -m benchmarks.calls_bench OUT.json``.
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from benchmarks.inprocess import BenchStack, prepare
from testkit.aws import READ_OPERATIONS, WRITE_OPERATIONS

WARM_GUARANTEES = 50
BATCH_SIZE = 10  # the template's StreamBatchSize default


class CountingStream(io.TextIOBase):
    """Stands in for stdout: counts what the functions log (Powertools JSON lines and EMF metrics)."""

    def __init__(self) -> None:
        self.chars = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.chars += len(text.encode())
        self.lines += text.count("\n")
        return len(text)

    def writable(self) -> bool:
        return True


def _by_kind(counts: Counter[str], guarantees: int) -> dict[str, Any]:
    dynamodb = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("dynamodb:")}
    return {
        "operations": dict(sorted(counts.items())),
        "per_guarantee": {
            "dynamodb_writes": sum(v for k, v in dynamodb.items() if k in WRITE_OPERATIONS) / guarantees,
            "dynamodb_reads": sum(v for k, v in dynamodb.items() if k in READ_OPERATIONS) / guarantees,
            "secretsmanager_calls": sum(v for k, v in counts.items() if k.startswith("secretsmanager:"))
            / guarantees,
            "other_aws_calls": sum(
                v for k, v in counts.items() if not k.startswith(("dynamodb:", "secretsmanager:"))
            )
            / guarantees,
        },
    }


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size rule: attribute names plus values (numbers ~1 byte per 2 digits + 1)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "N":
        digits = len(str(Decimal(inner).normalize()).replace("-", "").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    sizes: dict[str, Callable[[], int]] = {
        "S": lambda: len(str(inner).encode()),
        "B": lambda: len(inner),
        "BOOL": lambda: 1,
        "NULL": lambda: 1,
    }
    return sizes.get(kind, lambda: len(json.dumps(inner)))()


def _phase(stack: BenchStack, sink: CountingStream, sessions: list[str]) -> dict[str, Any]:
    """Deliver the sessions' webhooks, then process the stream in batches of BATCH_SIZE."""
    journal_before = len(stack.sandbox.calls())
    chars, lines = sink.chars, sink.lines
    with stack.aws_calls.counting() as receiver_counts:
        for session_id in sessions:
            stack.receive(session_id)
    receiver_log = (sink.chars - chars, sink.lines - lines)
    records = stack.next_event()["Records"]
    chars, lines = sink.chars, sink.lines
    with stack.aws_calls.counting() as processor_counts:
        for start in range(0, len(records), BATCH_SIZE):
            stack.process({"Records": records[start : start + BATCH_SIZE]})
    processor_log = (sink.chars - chars, sink.lines - lines)
    stack.check_confirmed(sessions)
    flinks = Counter(entry.endpoint for entry in stack.sandbox.calls()[journal_before:])
    n = len(sessions)
    return {
        "guarantees": n,
        "receiver": _by_kind(receiver_counts, n),
        "processor": _by_kind(processor_counts, n),
        "flinks_calls": dict(flinks),
        "flinks_per_guarantee": {endpoint: count / n for endpoint, count in flinks.items()},
        "log_bytes_per_guarantee": {"receiver": receiver_log[0] / n, "processor": processor_log[0] / n},
        "log_lines_per_guarantee": {"receiver": receiver_log[1] / n, "processor": processor_log[1] / n},
    }


def _follow_ups(stack: BenchStack, sink: CountingStream, sessions: list[str]) -> dict[str, Any]:
    """Each session's final-status webhook, then the reconciler (run as if its delay had passed)
    until its queue is empty: what every guarantee costs after the confirm."""
    import os
    import time

    chars = sink.chars
    with stack.aws_calls.counting() as status_counts:
        for session_id in sessions:
            stack.receive(session_id, status="Completed")
    status_log = sink.chars - chars
    os.environ.update(stack.stack.environment("ReconcilerFunction", FLINKS_BASE_URL=stack.sandbox.base_url))
    from scheduled_jobs import reconciler
    from scheduled_jobs.reconciler import Reconciliation

    reconciler._dependencies.cache_clear()
    config, repository, flinks = reconciler._dependencies()
    later = time.time() + 2 * 86_400  # every follow-up is due
    runs, cleared = 0, 0
    with stack.aws_calls.counting() as reconcile_counts:
        while True:
            summary = reconciler.reconcile(
                repository, flinks, config, deadline=time.monotonic() + 60, clock=lambda: later
            )
            finished = (
                Reconciliation.ALREADY_KNOWN,
                Reconciliation.RECONCILED,
                Reconciliation.NOT_FOUND,
                Reconciliation.GAVE_UP,
            )
            done = sum(summary.counts[result] for result in finished)
            if not done:
                break
            runs, cleared = runs + 1, cleared + done
    n = len(sessions)
    return {
        "status_webhook": {**_by_kind(status_counts, n), "log_bytes": status_log / n},
        "reconciler": {
            **_by_kind(reconcile_counts, max(cleared, 1)),
            "follow_ups_cleared": cleared,
            "runs_needed": runs,
            "batch_limit": config.batch_limit,
        },
    }


def main() -> None:
    prepare()
    out = sys.argv[1]
    sink = CountingStream()
    real_stdout, sys.stdout = sys.stdout, sink  # before the handlers import Powertools' Logger
    try:
        with BenchStack(latency_ms=0, pool_size=16, count_aws_calls=True, fakes="in-process") as stack:
            cold_sessions = stack.new_sessions(BATCH_SIZE)
            cold = _phase(stack, sink, cold_sessions)
            warm_sessions = stack.new_sessions(WARM_GUARANTEES)
            warm = _phase(stack, sink, warm_sessions)
            items = [
                item
                for item in stack.stack.raw_items()
                if item["sk"]["S"].startswith("GUARANTEE#") and item["status"]["S"] == "CONFIRMED"
            ]
            stored = stack.webhook_event(stack.new_sessions(1)[0])  # the body a RECEIVED item holds
            # After the items were measured: the reconciler removes them from OpsQueueIndex.
            follow_ups = _follow_ups(stack, sink, cold_sessions + warm_sessions)
    finally:
        sys.stdout = real_stdout
    sizes = sorted(item_size(item) for item in items)
    result = {
        "cold_container": cold,
        "warm_container": warm,
        "follow_ups": follow_ups,
        "item_bytes": {
            "confirmed_max": sizes[-1],
            "confirmed_median": sizes[len(sizes) // 2],
            "webhook_body": len(stored["body"].encode()),
            "in_ops_queue_index": sum(1 for item in items if "opsQueue" in item) / len(items),
        },
    }
    with open(out, "w") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    main()
