"""DynamoDB stream records as Lambda receives them, and the event source mapping's FilterCriteria.

Shared by the tests and benchmarks (stream events built from moto's own records of items the receiver
wrote: ``StreamFeed.of``) and the local stack's stream pump, so all deliver exactly what Lambda would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from testkit.template import Deployment, resolve


def streams_client(session: Any) -> Any:
    """A dynamodbstreams client that moto answers (botocore >= 1.44 would otherwise send stream
    calls to an account-scoped host moto does not serve)."""
    from botocore.config import Config  # noqa: PLC0415

    return session.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))


def read_all_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record currently in the stream, from the start of each shard (TRIM_HORIZON)."""
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            records.extend(response["Records"])
            iterator = response.get("NextShardIterator")
    return records


def to_lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda delivers it (eventSourceARN, epoch creation time)."""
    lambda_record = json.loads(json.dumps(record, default=_json_default))
    lambda_record["eventSourceARN"] = stream_arn
    lambda_record["eventVersion"] = "1.1"
    created = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        lambda_record["dynamodb"]["ApproximateCreationDateTime"] = int(created.timestamp())
    return dict(lambda_record)


class StreamFeed:
    """Reads a stream from its start and hands out, as one Lambda batch, the records written since
    the last call that pass ``patterns`` (the event source mapping's FilterCriteria)."""

    def __init__(self, streams: Any, stream_arn: str, patterns: Iterable[Mapping[str, Any]]) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._patterns = list(patterns)
        self._seen: set[str] = set()

    @classmethod
    def of(
        cls,
        session: Any,
        deployment: Deployment,
        function: str = "DecisionProcessorFunction",
        event: str = "GuaranteeStream",
    ) -> StreamFeed:
        """The stream of ``function``'s ``event`` (the event source mapping SAM makes of a DynamoDB event),
        read through its FilterCriteria."""
        properties = deployment.template["Resources"][function + event]["Properties"]
        stream_arn = resolve(properties["EventSourceArn"], deployment.created, deployment.parameters)
        return cls(streams_client(session), stream_arn, filter_patterns(properties))

    def next_event(self) -> dict[str, Any]:
        records = []
        for record in read_all_records(self._streams, self._stream_arn):
            sequence = record["dynamodb"]["SequenceNumber"]
            if sequence in self._seen:
                continue
            self._seen.add(sequence)
            lambda_record = to_lambda_record(record, self._stream_arn)
            if matches_any(self._patterns, lambda_record):
                records.append(lambda_record)
        return {"Records": records}


def matches_any(patterns: Iterable[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """Lambda's filtering: a record passes when any pattern matches (no patterns: all pass)."""
    patterns = list(patterns)
    return not patterns or any(matches(pattern, record) for pattern in patterns)


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """The subset of Lambda event filtering our template uses: nested objects whose leaves are
    lists of allowed literal values, plus ``{"exists": bool}`` and ``{"prefix": str}``."""
    if not isinstance(value, Mapping):
        return False
    for key, expected in pattern.items():
        present = key in value
        if isinstance(expected, Mapping):
            if not present or not matches(expected, value[key]):
                return False
        elif isinstance(expected, list):
            if not any(_leaf_matches(option, present, value.get(key)) for option in expected):
                return False
        else:
            raise ValueError(f"unsupported filter pattern at {key!r}: {expected!r}")
    return True


def filter_patterns(event_properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    filters = event_properties.get("FilterCriteria", {}).get("Filters", [])
    return [json.loads(entry["Pattern"]) for entry in filters]


def _leaf_matches(option: Any, present: bool, actual: Any) -> bool:
    if isinstance(option, Mapping):
        if "exists" in option:
            return bool(option["exists"]) is present
        if "prefix" in option:
            return present and isinstance(actual, str) and actual.startswith(option["prefix"])
        raise ValueError(f"unsupported filter operator {option!r}")
    return present and actual == option


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, bytes | bytearray):
        import base64  # noqa: PLC0415

        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot serialize {type(value).__name__}")
