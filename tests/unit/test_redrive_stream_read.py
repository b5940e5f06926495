"""The dead-letter redrive reads a batch's records from the stream, past the empty pages DynamoDB Streams
answers before the records of an open shard, and falls back to the table when it never reaches them."""

from __future__ import annotations

from collections import deque
from typing import Any

import boto3
from botocore.stub import Stubber
from geft.models import GuaranteeRef
from geft_ops.commands import _make_visible, _read_batch

SESSION = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"


class PagedStream:
    """A streams client answering the given pages in order (each a list of sequence numbers)."""

    def __init__(self, pages: list[list[int]], *, open_shard: bool = True) -> None:
        self._pages = deque(pages)
        self._open = open_shard
        self.reads = 0

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self.reads += 1
        sequences = self._pages.popleft() if self._pages else []
        more = bool(self._pages) or self._open
        return {
            "Records": [
                {
                    "dynamodb": {
                        "SequenceNumber": str(n),
                        "Keys": {"pk": {"S": SESSION}, "sk": {"S": f"GUARANTEE#k{n}"}},
                    }
                }
                for n in sequences
            ],
            "NextShardIterator": f"it-{self.reads}" if more else None,
        }


def test_empty_pages_before_the_records_are_read_past() -> None:
    stream = PagedStream([[], [], [], [10, 11], [12, 99]])

    refs = _read_batch(stream, "it-0", start=10, end=12)

    assert refs == [GuaranteeRef(SESSION, "k10"), GuaranteeRef(SESSION, "k11"), GuaranteeRef(SESSION, "k12")]


def test_a_closed_shard_ends_the_read() -> None:
    stream = PagedStream([[], [10]], open_shard=False)

    assert _read_batch(stream, "it-0", start=10, end=20) == [GuaranteeRef(SESSION, "k10")]


def test_an_open_shard_that_never_reaches_the_batch_falls_back_to_the_table() -> None:
    stream = PagedStream([[] for _ in range(500)])

    assert _read_batch(stream, "it-0", start=10, end=12) is None
    assert stream.reads == 100  # bounded: a redrive never spins on an idle shard


def test_a_stale_receipt_handle_does_not_stop_the_other_dead_letters_being_made_visible() -> None:
    # AWS may refuse a handle whose hold ran out; the rest must still be released, and nothing raised
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"
    with Stubber(sqs) as stub:
        stub.add_client_error("change_message_visibility", "ReceiptHandleIsInvalid")
        stub.add_response(
            "change_message_visibility",
            {},
            {"QueueUrl": queue_url, "ReceiptHandle": "fresh", "VisibilityTimeout": 0},
        )
        _make_visible(sqs, queue_url, ["stale", "fresh"])
        stub.assert_no_pending_responses()
