"""Console lines for each guarantee as it flows, read from the table's stream (a second consumer).

Every write is a stream record carrying the item's new image, and every write says what it did
(``changeKind``): the stream tells the whole story without polling the table, one line per change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geft.items import GuaranteeView, guarantee_view, last_change_of, quarantine_view, session_view
from geft.models import ChangeKind

from geft_local.console import Console
from geft_local.loop import Loop

POLL_INTERVAL_S = 0.25


def describe_change(image: Mapping[str, Any]) -> str | None:
    """One console line for the change a write made (every write names its ChangeKind), or None when
    the change is bookkeeping (a reconciliation put off, a follow-up cleared)."""
    change = last_change_of(image)
    kind = change.kind if change is not None else None
    reason = f": {change.reason}" if change is not None and change.reason else ""
    session = session_view(image)
    if session is not None:
        details = f" ({session.final_status_details})" if session.final_status_details else ""
        return f"{session.session_id} session final status {session.final_status}{details}" if kind else None
    kept = quarantine_view(image)
    if kept is not None:
        where = f" (session {kept.session_id})" if kept.session_id else ""
        return f"quarantined a signed body{where}: {kept.reason}" if kind is ChangeKind.QUARANTINED else None
    guarantee = guarantee_view(image)
    if guarantee is None or kind is None:
        return None
    return _guarantee_line(guarantee, kind, reason)


def _guarantee_line(guarantee: GuaranteeView, kind: ChangeKind, reason: str) -> str | None:  # noqa: PLR0911
    sid, decision = guarantee.ref.session_id, guarantee.decision
    decided = f"decided {decision.verdict} (rule {decision.rule})" if decision else "no decision"
    match kind:
        case ChangeKind.RECEIVED:
            return f"{sid} guarantee received ({guarantee.ref.guarantee_key})"
        case ChangeKind.STORED_FROM_QUARANTINE:
            return f"{sid} guarantee stored from quarantine ({guarantee.ref.guarantee_key}){reason}"
        case ChangeKind.CLAIMED:
            return f"{sid} deciding again, attempt {guarantee.attempts}" if guarantee.attempts > 1 else None
        case ChangeKind.RELEASED:
            return f"{sid} attempt {guarantee.attempts} failed transiently; claim released{reason}"
        case ChangeKind.CONFIRMED | ChangeKind.RECOVERED:
            recovered = " (recovered from Flinks /details)" if kind is ChangeKind.RECOVERED else ""
            latency = guarantee.confirm.webhook_to_confirm_ms if guarantee.confirm else None
            return f"{sid} {decided} -> CONFIRMED{recovered}, webhook-to-confirm {latency} ms"
        case ChangeKind.FAILED:
            return f"{sid} {decided} -> FAILED{reason}"
        case ChangeKind.REVIEW_REQUESTED:
            return f"{sid} {decided} -> REVIEW: waiting for a person or the review timeout"
        case ChangeKind.HELD:
            return f"{sid} -> REVIEW (held for a person, no fallback){reason}"
        case ChangeKind.REVIEWED:
            review = guarantee.review
            who = review.reviewer if review else None
            return f"{sid} review decided {guarantee.review_decision} by {who}; confirming"
        case ChangeKind.REDRIVEN:
            return f"{sid} sent back through the decision path{reason}"
        case _:
            return None


class FlowMonitor(Loop):
    """Follows one table stream from its start and prints ``describe_change`` lines."""

    thread_name = "flow-monitor"

    def __init__(
        self, *, streams: Any, stream_arn: str, console: Console, poll_interval_s: float = POLL_INTERVAL_S
    ) -> None:
        super().__init__()
        self._streams = streams
        self._stream_arn = stream_arn
        self._console = console
        self._poll_interval_s = poll_interval_s

    def _run(self) -> None:
        iterators: dict[str, str | None] = {}
        while not self._stop.is_set():
            try:
                if not iterators:
                    iterators = self._open_iterators()
                for shard_id, iterator in list(iterators.items()):
                    if iterator is None:
                        continue
                    response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                    iterators[shard_id] = response.get("NextShardIterator")
                    for record in response["Records"]:
                        self._show(record)
            except Exception as error:  # the console must not die with one failed poll
                if self._stop.is_set():
                    return
                self._console.emit("flow", f"stream read failed ({type(error).__name__}); retrying")
                self._stop.wait(1.0)
                continue
            self._stop.wait(self._poll_interval_s)

    def _open_iterators(self) -> dict[str, str | None]:
        """Every shard from its oldest record: the monitor starts with the (new, empty) table."""
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        return {
            shard["ShardId"]: self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in shards
        }

    def _show(self, record: Mapping[str, Any]) -> None:
        line = describe_change(record.get("dynamodb", {}).get("NewImage") or {})
        if line is not None:
            self._console.emit("flow", line)
