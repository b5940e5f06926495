"""Stream events as Lambda delivers them, built from moto's own records of what was written."""

from __future__ import annotations

from typing import Any

from geft_local import streams
from geft_local.template_resources import CreatedResources


class StreamFeed(streams.StreamFeed):
    """The processor's stream, read through the template's own FilterCriteria."""

    def __init__(self, aws: Any, stack: CreatedResources, template: dict[str, Any]) -> None:
        properties = template["Resources"]["DecisionProcessorFunction"]["Properties"]
        super().__init__(
            streams.streams_client(aws),
            stack.get_att("GuaranteesTable", "StreamArn"),
            streams.filter_patterns(properties["Events"]["GuaranteeStream"]["Properties"]),
        )
