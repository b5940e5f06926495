"""The DynamoDB event source mapping, emulated: read the stream, filter, batch, invoke, checkpoint, as the
function's ``Type: DynamoDB`` event in template.yaml says (the settings honoured, and Lambda's semantics
for each: docs/local-stack.md).

The decisions are pure and unit-tested without AWS: ``ShardBatcher`` holds one shard's unprocessed
records and decides what to invoke next and what each outcome means (checkpoint, retry from a record,
bisect, give up); ``on_failure_message`` builds the record Lambda sends to an OnFailure destination.
``StreamPump`` is the thin shell that does the I/O: GetRecords four times a second, invoke, SQS.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from geft_local.console import Console
from geft_local.loop import Loop
from geft_local.workers import InvokeResult
from testkit.streams import filter_patterns, matches_any, to_lambda_record
from testkit.template import CreatedResources, function_arn, function_behind, resolve, resources_of_type

POLL_INTERVAL_S = 0.25
"""Lambda polls each shard of a DynamoDB stream four times a second."""

GET_RECORDS_LIMIT = 1000
RETRY_ATTEMPTS_EXHAUSTED: Final = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED: Final = "RecordAgeExceeded"
_DEFAULT_BATCH_SIZE = 100  # Lambda's default for DynamoDB streams

Condition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]


class MappingConfigError(ValueError):
    """The template's event source mapping uses something the local emulation cannot honour."""


# -- settings from the template ------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingSettings:
    """One ``Type: DynamoDB`` event of one function, with every reference resolved."""

    function_logical_id: str
    event_name: str
    stream_arn: str
    starting_position: str
    batch_size: int = _DEFAULT_BATCH_SIZE
    batching_window_s: float = 0.0
    bisect_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    report_batch_item_failures: bool = False
    on_failure_destination: str | None = None
    filters: tuple[Mapping[str, Any], ...] = ()
    enabled: bool = True

    @classmethod
    def from_event(
        cls,
        function_logical_id: str,
        event_name: str,
        properties: Mapping[str, Any],
        created: CreatedResources,
        parameters: Mapping[str, str],
    ) -> MappingSettings:
        def value(name: str, default: Any = None) -> Any:
            raw = properties.get(name, default)
            return None if raw is None else resolve(raw, created, parameters)

        starting_position = str(value("StartingPosition", "")).upper()
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise MappingConfigError(
                f"{function_logical_id}.{event_name}: StartingPosition {starting_position!r} is not "
                "emulated (use TRIM_HORIZON or LATEST)"
            )
        destination = None
        on_failure = properties.get("DestinationConfig", {}).get("OnFailure")
        if on_failure:
            if str(on_failure.get("Type", "SQS")).upper() != "SQS":
                raise MappingConfigError(
                    f"{function_logical_id}.{event_name}: only SQS OnFailure destinations are emulated"
                )
            destination = resolve(on_failure["Destination"], created, parameters)
        return cls(
            function_logical_id=function_logical_id,
            event_name=event_name,
            stream_arn=str(value("Stream")),
            starting_position=starting_position,
            batch_size=int(value("BatchSize", _DEFAULT_BATCH_SIZE)),
            batching_window_s=float(value("MaximumBatchingWindowInSeconds", 0)),
            bisect_on_function_error=_truthy(value("BisectBatchOnFunctionError", False)),
            maximum_retry_attempts=int(value("MaximumRetryAttempts", -1)),
            maximum_record_age_s=int(value("MaximumRecordAgeInSeconds", -1)),
            report_batch_item_failures="ReportBatchItemFailures"
            in [str(item) for item in properties.get("FunctionResponseTypes", [])],
            on_failure_destination=destination,
            filters=tuple(filter_patterns(properties)),
            enabled=_truthy(value("Enabled", True)),
        )


def dynamodb_event_sources(
    template: Mapping[str, Any], created: CreatedResources, parameters: Mapping[str, str]
) -> list[MappingSettings]:
    """Every DynamoDB stream ``AWS::Lambda::EventSourceMapping`` of the deployed template (what SAM makes
    of a function's ``Type: DynamoDB`` event: ``<Function><Event>``)."""
    mappings = []
    for mapping_id, mapping in resources_of_type(template, "AWS::Lambda::EventSourceMapping").items():
        properties = mapping["Properties"]
        source = properties["EventSourceArn"].get("Fn::GetAtt", [None, None])
        logical_id = function_behind(template, properties["FunctionName"])
        if logical_id is not None and list(source)[1:] == ["StreamArn"]:
            event = {**properties, "Stream": properties["EventSourceArn"]}
            event_name = mapping_id.removeprefix(logical_id)
            mappings.append(MappingSettings.from_event(logical_id, event_name, event, created, parameters))
    return mappings


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# -- the pure core -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Records handed to one invoke, in stream order (Lambda-shaped: ``to_lambda_record``)."""

    records: tuple[dict[str, Any], ...]

    @property
    def sequence_numbers(self) -> list[str]:
        return [sequence_of(record) for record in self.records]

    @property
    def first_sequence(self) -> str:
        return sequence_of(self.records[0])

    @property
    def last_sequence(self) -> str:
        return sequence_of(self.records[-1])

    def event(self) -> dict[str, Any]:
        return {"Records": [dict(record) for record in self.records]}


@dataclass(frozen=True)
class FailedRecords:
    """Records the mapping gave up on: what goes to the OnFailure destination."""

    records: tuple[dict[str, Any], ...]
    condition: Condition
    invoke_count: int
    function_error: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What one invoke's outcome means for the shard."""

    action: Literal["checkpoint", "retry", "bisect", "give-up"]
    detail: str
    failed: FailedRecords | None = None


@dataclass
class _Entry:
    record: dict[str, Any]
    matches: bool
    added_at: float


@dataclass
class ShardBatcher:
    """One shard's records between the checkpoint and what has been read, and the retry state.

    Feed it records in stream order with ``add``; ask ``expired`` and ``next_batch`` what to do; tell it
    each invoke's outcome with ``record_outcome``. It never does I/O and never reads a clock itself.
    """

    settings: MappingSettings
    checkpoint: str | None = None
    """The last sequence number the mapping is done with (delivered, filtered out or given up on)."""
    _entries: list[_Entry] = field(default_factory=list)
    _sub_batches: list[int] = field(default_factory=list)
    _head: str | None = None
    _head_failures: int = 0
    _head_invokes: int = 0

    def add(self, records: Sequence[Mapping[str, Any]], now: float) -> int:
        """Append records read from the stream; returns how many the filter dropped."""
        dropped = 0
        for record in records:
            matches = matches_any(self.settings.filters, record)
            dropped += not matches
            self._entries.append(_Entry(dict(record), matches, now))
        self._drop_handled_prefix()
        return dropped

    @property
    def pending(self) -> int:
        """Records that still have to be delivered (matching the filter)."""
        return sum(entry.matches for entry in self._entries)

    @property
    def attempts(self) -> int:
        """Invokes so far that included the oldest pending record."""
        return self._head_invokes

    def resume_point(self) -> tuple[str, str] | None:
        """Where a re-read must start: just after the checkpoint, else at the oldest record read,
        else None (the mapping's StartingPosition)."""
        if self.checkpoint is not None:
            return ("AFTER_SEQUENCE_NUMBER", self.checkpoint)
        if self._entries:
            return ("AT_SEQUENCE_NUMBER", sequence_of(self._entries[0].record))
        return None

    def clear(self) -> None:
        """Forget the records read past the checkpoint, to re-read them from it. The retry and
        bisection state stays: it is relative to the checkpoint, and the re-read brings the same records."""
        self._entries.clear()

    def expired(self, now: float) -> FailedRecords | None:
        """Pending records older than MaximumRecordAgeInSeconds at the head of the shard, given up on."""
        max_age = self.settings.maximum_record_age_s
        if max_age < 0:
            return None
        expired = []
        for entry in self._entries:
            if not entry.matches:
                continue
            if now - arrival_of(entry.record) <= max_age:
                break
            expired.append(entry.record)
        if not expired:
            return None
        invokes = self._head_invokes
        self._done_through(sequence_of(expired[-1]))
        if self._sub_batches:
            self._sub_batches[0] -= len(expired)
            if self._sub_batches[0] <= 0:
                self._sub_batches.pop(0)
        return FailedRecords(tuple(expired), RECORD_AGE_EXCEEDED, invokes)

    def next_batch(self, now: float) -> Batch | None:
        """The next records to invoke with, or None (nothing pending, or the batching window is open)."""
        limit = self._sub_batches[0] if self._sub_batches else self.settings.batch_size
        records = [entry.record for entry in self._entries if entry.matches][:limit]
        if not records:
            return None
        window = self.settings.batching_window_s
        if not self._sub_batches and len(records) < limit and window > 0 and self._head_invokes == 0:
            first_added = next(entry.added_at for entry in self._entries if entry.matches)
            if now - first_added < window:
                return None
        return Batch(tuple(records))

    def record_outcome(self, batch: Batch, result: InvokeResult) -> Verdict:
        """Apply one invoke's outcome: checkpoint, retry from a record, bisect, or give up."""
        if batch.first_sequence != self._head:
            self._head, self._head_failures, self._head_invokes = batch.first_sequence, 0, 0
        self._head_invokes += 1
        if result.function_error:
            return self._after_function_error(batch, result)
        failed = failed_item_sequences(result.payload, batch, self.settings.report_batch_item_failures)
        if not failed:
            self._done_through(batch.last_sequence)
            self._pop_sub_batch()
            return Verdict("checkpoint", f"{len(batch.records)} record(s) processed")
        lowest = min(failed, key=int)
        sequences = batch.sequence_numbers
        index = sequences.index(lowest)
        if index > 0:
            self._done_through(sequences[index - 1])
            self._head, self._head_failures, self._head_invokes = lowest, 0, 1
            if self._sub_batches:
                self._sub_batches[0] = len(sequences) - index
        self._head_failures += 1
        remaining = batch.records[index:]
        detail = f"{len(failed)} of {len(batch.records)} record(s) reported failed"
        if self._exhausted():
            return self._give_up(remaining, detail, result)
        return Verdict("retry", f"{detail}; retrying from {lowest} ({self._retry_text()})")

    def _after_function_error(self, batch: Batch, result: InvokeResult) -> Verdict:
        error = f"function error {result.error_type}"
        size = len(batch.records)
        if self.settings.bisect_on_function_error and size > 1:
            first = (size + 1) // 2
            halves = [first, size - first]
            if self._sub_batches:
                self._sub_batches[0:1] = halves
            else:
                self._sub_batches = halves
            return Verdict("bisect", f"{error}; bisecting {size} records into {first} + {size - first}")
        self._head_failures += 1
        if self._exhausted():
            return self._give_up(batch.records, error, result)
        return Verdict("retry", f"{error}; retrying {size} record(s) ({self._retry_text()})")

    def _give_up(self, records: Sequence[dict[str, Any]], detail: str, result: InvokeResult) -> Verdict:
        failed = FailedRecords(
            records=tuple(records),
            condition=RETRY_ATTEMPTS_EXHAUSTED,
            invoke_count=self._head_invokes,
            function_error="Unhandled" if result.function_error else None,
            request_id=result.request_id,
        )
        self._done_through(sequence_of(records[-1]))
        self._pop_sub_batch()
        exhausted = f"{detail}; retries exhausted after {failed.invoke_count} invoke(s)"
        return Verdict("give-up", exhausted, failed)

    def _exhausted(self) -> bool:
        maximum = self.settings.maximum_retry_attempts
        return maximum >= 0 and self._head_failures > maximum

    def _retry_text(self) -> str:
        maximum = self.settings.maximum_retry_attempts
        limit = "unlimited" if maximum < 0 else str(maximum)
        return f"retry {self._head_failures} of {limit}"

    def _pop_sub_batch(self) -> None:
        if self._sub_batches:
            self._sub_batches.pop(0)

    def _done_through(self, sequence: str) -> None:
        """Checkpoint through ``sequence``: everything up to it is handled."""
        while self._entries and int(sequence_of(self._entries[0].record)) <= int(sequence):
            self.checkpoint = sequence_of(self._entries.pop(0).record)
        self._drop_handled_prefix()
        if self._head is not None and int(self._head) <= int(sequence):
            self._head, self._head_failures, self._head_invokes = None, 0, 0

    def _drop_handled_prefix(self) -> None:
        """Filtered-out records at the head need no delivery: they are checkpointed at once."""
        while self._entries and not self._entries[0].matches:
            self.checkpoint = sequence_of(self._entries.pop(0).record)


def failed_item_sequences(response: Any, batch: Batch, report_batch_item_failures: bool) -> list[str]:
    """The sequence numbers a response reports failed; every record when an identifier is invalid.

    Without ReportBatchItemFailures, Lambda ignores the response. A null or empty response or list is
    complete success; an item whose ``itemIdentifier`` is missing, empty or not in the batch fails the
    whole batch, as does a ``batchItemFailures`` that is not a list.
    """
    if not report_batch_item_failures or not isinstance(response, Mapping):
        return []
    failures = response.get("batchItemFailures")
    if failures is None:
        return []
    sequences = batch.sequence_numbers
    if not isinstance(failures, list):
        return sequences
    failed = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in sequences:
            return sequences
        failed.append(identifier)
    return failed


def on_failure_message(
    failed: FailedRecords, *, function_arn: str, stream_arn: str, shard_id: str, now: float
) -> dict[str, Any]:
    """The record Lambda sends to a stream mapping's OnFailure destination (SQS message body)."""
    first, last = failed.records[0], failed.records[-1]
    response_context: dict[str, Any] = {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": failed.function_error or "",
    }
    return {
        "requestContext": {
            "requestId": failed.request_id or str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": failed.condition,
            "approximateInvokeCount": failed.invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": _iso(now, millis=True),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": sequence_of(first),
            "endSequenceNumber": sequence_of(last),
            "approximateArrivalOfFirstRecord": _iso(arrival_of(first)),
            "approximateArrivalOfLastRecord": _iso(arrival_of(last)),
            "batchSize": len(failed.records),
            "streamArn": stream_arn,
        },
    }


def sequence_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def arrival_of(record: Mapping[str, Any]) -> float:
    """ApproximateCreationDateTime as epoch seconds (``to_lambda_record`` already converted it)."""
    created = record.get("dynamodb", {}).get("ApproximateCreationDateTime", 0)
    return float(created.timestamp()) if isinstance(created, datetime) else float(created)


def _iso(epoch: float, *, millis: bool = False) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the I/O shell -------------------------------------------------------------------------------------

Invoke = Callable[[dict[str, Any]], InvokeResult]


@dataclass
class _Shard:
    shard_id: str
    batcher: ShardBatcher
    iterator: str | None = None


class StreamPump(Loop):
    """One event source mapping: a thread that polls the stream's shards and invokes the function."""

    def __init__(
        self,
        settings: MappingSettings,
        *,
        function_name: str,
        streams: Any,
        sqs: Any,
        invoke: Invoke,
        console: Console,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._function_arn = function_arn(function_name)
        self._streams = streams
        self._sqs = sqs
        self._invoke = invoke
        self._console = console
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self.thread_name = f"stream-pump-{settings.function_logical_id}"
        self._shards: list[_Shard] = []
        self._queue_url: str | None = None

    def start(self) -> None:
        description = self._streams.describe_stream(StreamArn=self.settings.stream_arn)["StreamDescription"]
        self._shards = [
            _Shard(shard["ShardId"], ShardBatcher(self.settings)) for shard in description["Shards"]
        ]
        for shard in self._shards:
            self._reopen(shard)
        if self.settings.on_failure_destination:
            queue_name = self.settings.on_failure_destination.rsplit(":", 1)[-1]
            self._queue_url = self._sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        super().start()  # a signalled stop ends an invoke in flight when its container is stopped

    def _reopen(self, shard: _Shard) -> None:
        """A fresh iterator: the StartingPosition at first, then from the checkpoint (as Lambda re-reads
        a shard before a retry), forgetting what was read past it."""
        arguments: dict[str, Any] = {"StreamArn": self.settings.stream_arn, "ShardId": shard.shard_id}
        resume = shard.batcher.resume_point()
        if resume is None:
            arguments["ShardIteratorType"] = self.settings.starting_position
        else:
            arguments["ShardIteratorType"], arguments["SequenceNumber"] = resume
        shard.batcher.clear()
        shard.iterator = str(self._streams.get_shard_iterator(**arguments)["ShardIterator"])

    def _run(self) -> None:
        failures_in_a_row = 0
        while not self._stop.is_set():
            try:
                busy = False
                for shard in self._shards:  # every shard, every poll (no short-circuit)
                    busy |= self._step(shard)
                failures_in_a_row = 0
            except Exception as error:  # the pump must outlive any one failed poll
                if self._stop.is_set():
                    return
                failures_in_a_row += 1
                if failures_in_a_row in (1, 10) or failures_in_a_row % 100 == 0:
                    self._console.emit(
                        "stream", f"{self._name}: poll failed ({type(error).__name__}: {error}); retrying"
                    )
                for shard in self._shards:
                    shard.iterator = None  # re-read from the checkpoint
                busy = False
            if not busy:
                self._stop.wait(self._poll_interval_s)

    @property
    def _name(self) -> str:
        return f"{self.settings.function_logical_id}.{self.settings.event_name}"

    def _step(self, shard: _Shard) -> bool:
        """One poll of one shard; True when it invoked (so the next poll should come at once)."""
        if shard.iterator is None:
            self._reopen(shard)
        assert shard.iterator is not None
        response = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        shard.iterator = response.get("NextShardIterator")
        now = self._clock()
        records = [to_lambda_record(record, self.settings.stream_arn) for record in response["Records"]]
        shard.batcher.add(records, now)
        expired = shard.batcher.expired(now)
        if expired is not None:
            self._give_up(shard, expired, "records older than MaximumRecordAgeInSeconds")
        batch = shard.batcher.next_batch(now)
        if batch is None:
            return False
        result = self._invoke(batch.event())
        if self._stop.is_set():
            return False
        verdict = shard.batcher.record_outcome(batch, result)
        if verdict.action == "checkpoint":
            return True
        span = f"{batch.first_sequence}..{batch.last_sequence}"
        if verdict.failed is not None:
            self._give_up(shard, verdict.failed, verdict.detail)
        else:
            self._console.emit("stream", f"{self._name}: batch {span}: {verdict.detail}")
        # Lambda re-reads the shard from the checkpoint before it retries.
        shard.iterator = None
        return verdict.action in ("bisect", "give-up")

    def _give_up(self, shard: _Shard, failed: FailedRecords, detail: str) -> None:
        span = f"{sequence_of(failed.records[0])}..{sequence_of(failed.records[-1])}"
        if self._queue_url is None:
            self._console.emit(
                "stream", f"{self._name}: {detail}; {len(failed.records)} record(s) {span} discarded"
            )
            return
        message = on_failure_message(
            failed,
            function_arn=self._function_arn,
            stream_arn=self.settings.stream_arn,
            shard_id=shard.shard_id,
            now=self._clock(),
        )
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))
        queue = self._queue_url.rsplit("/", 1)[-1]
        self._console.emit(
            "stream",
            f"{self._name}: {detail}; DLQ <- {len(failed.records)} record(s) {span} "
            f"({failed.condition}) on {queue}",
        )
