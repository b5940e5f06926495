"""Console lines for each guarantee as it flows, read from the table's stream (a second consumer).

Every state change of an item is a stream record carrying its new image, so the stream tells the whole
story without polling the table: a guarantee ``RECEIVED``, retried (``DECIDING`` attempts), and its end
(``CONFIRMED`` with the decision, the rule and ``webhookToConfirmMs``, or ``FAILED`` with
``failureReason``); plus quarantined bodies and session final statuses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from geft_local.console import Console

POLL_INTERVAL_S = 0.25
_GUARANTEE_PREFIX = "GUARANTEE#"
_QUARANTINE_PK = "QUARANTINE"
_SESSION_SK = "SESSION"


def attribute(image: Mapping[str, Any], name: str) -> Any:
    """A scalar attribute of a DynamoDB-JSON image (S and N as text, BOOL as bool), or None."""
    value = image.get(name)
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    ((kind, content),) = value.items()
    if kind in ("S", "N"):
        return str(content)
    if kind == "BOOL":
        return bool(content)
    return None


def describe_change(  # noqa: PLR0911 - one return per kind of line reads best
    event_name: str, image: Mapping[str, Any], previous_status: str | None
) -> str | None:
    """One console line for an item's new image, or None when the change is not worth a line."""
    pk, sk = attribute(image, "pk"), attribute(image, "sk")
    if pk is None or sk is None:
        return None
    if pk == _QUARANTINE_PK:
        if event_name != "INSERT":
            return None
        session = attribute(image, "sessionId")
        where = f" (session {session})" if session else ""
        return f"quarantined a signed body{where}: {attribute(image, 'reason')}"
    if sk == _SESSION_SK:
        if attribute(image, "finalStatus") is None:
            return None
        details = attribute(image, "finalStatusDetails")
        suffix = f" ({details})" if details else ""
        return f"{pk} session final status {attribute(image, 'finalStatus')}{suffix}"
    if sk.startswith(_GUARANTEE_PREFIX):
        return _guarantee_line(pk, event_name, image, previous_status)
    return None


def _guarantee_line(  # noqa: PLR0911 - one return per kind of line reads best
    pk: str, event_name: str, image: Mapping[str, Any], previous_status: str | None
) -> str | None:
    status = attribute(image, "status")
    attempts = attribute(image, "attempts") or "0"
    if status == "RECEIVED" and event_name == "INSERT":
        return f"{pk} guarantee received"
    if status == "DECIDING" and attribute(image, "claimId") is not None:
        return f"{pk} deciding again, attempt {attempts}" if int(attempts) > 1 else None
    if status in ("RECEIVED", "DECIDING") and previous_status == "DECIDING":
        return f"{pk} attempt {attempts} failed transiently; claim released (the stream retries the record)"
    if status == previous_status or status is None:
        return None  # a follow-up write (e.g. reconciliation bookkeeping), not a new state
    decided = _decision_text(image)
    if status == "CONFIRMED":
        recovered = " (recovered from Flinks /details)" if attribute(image, "recoveredFromDetails") else ""
        latency = attribute(image, "webhookToConfirmMs")
        return f"{pk} received -> {decided} -> CONFIRMED{recovered}, webhook-to-confirm {latency} ms"
    if status == "FAILED":
        return f"{pk} received -> {decided} -> FAILED: {attribute(image, 'failureReason')}"
    if status == "REVIEW":
        return f"{pk} received -> {decided} -> REVIEW: waiting for an operator or the review timeout"
    if status == "REVIEWED":
        who = attribute(image, "reviewer")
        return f"{pk} review decided {attribute(image, 'reviewDecision')} by {who}; confirming"
    return f"{pk} guarantee {previous_status or 'new'} -> {status}"


def _decision_text(image: Mapping[str, Any]) -> str:
    decision = attribute(image, "decision")
    if decision is None:
        return "no decision"
    return f"decided {decision} (rule {attribute(image, 'decisionRule')})"


class FlowMonitor:
    """Follows one table stream from its start and prints ``describe_change`` lines."""

    def __init__(
        self, *, streams: Any, stream_arn: str, console: Console, poll_interval_s: float = POLL_INTERVAL_S
    ) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._console = console
        self._poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: dict[tuple[str, str], str] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-monitor", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

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
        image = record.get("dynamodb", {}).get("NewImage") or {}
        key = (str(attribute(image, "pk")), str(attribute(image, "sk")))
        previous = self._status.get(key)
        status = attribute(image, "status")
        if status is not None:
            self._status[key] = status
        line = describe_change(str(record.get("eventName", "")), image, previous)
        if line is not None:
            self._console.emit("flow", line)
