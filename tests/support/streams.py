"""Stream events as Lambda delivers them, built from moto's own records of what was written."""

from __future__ import annotations

from typing import Any

from geft_local.streams import (
    filter_patterns,
    matches_any,
    read_all_records,
    streams_client,
    to_lambda_record,
)
from geft_local.template_resources import CreatedResources


class StreamFeed:
    """Turns what the receiver wrote into Lambda stream events, applying the template's filter."""

    def __init__(self, aws: Any, stack: CreatedResources, template: dict[str, Any]) -> None:
        self._streams = streams_client(aws)
        self._stream_arn = stack.get_att("GuaranteesTable", "StreamArn")
        properties = template["Resources"]["DecisionProcessorFunction"]["Properties"]
        self._patterns = filter_patterns(properties["Events"]["GuaranteeStream"]["Properties"])
        self._seen: set[str] = set()

    def next_event(self) -> dict[str, Any]:
        """Records written since the last call that pass the FilterCriteria, as one batch."""
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
