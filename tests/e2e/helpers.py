"""What the e2e tests share besides fixtures: reading the stack's stream, signing, sending."""

from __future__ import annotations

from typing import Any

import requests
from geft.signature import compute_signature
from geft_local.stack import LocalStack
from geft_local.streams import read_all_records, streams_client

from tests.support.constants import TEST_WEBHOOK_SECRET

TIMEOUT_S = 5.0


def stream_images(stack: LocalStack, partition_key: str) -> list[tuple[str, dict[str, Any]]]:
    """(eventName, NewImage) of every stream record of ``partition_key``, in stream order."""
    stream_arn = stack.mappings[0].stream_arn
    records = read_all_records(streams_client(stack.aws), stream_arn)
    return [
        (record["eventName"], record["dynamodb"].get("NewImage", {}))
        for record in records
        if record["dynamodb"]["Keys"]["pk"]["S"] == partition_key
    ]


def console_dump(stack: LocalStack) -> str:
    """For assertion messages: what the stack printed."""
    return "\n".join(stack.console.lines()[-60:])


def post_webhook(
    stack: LocalStack, body: bytes, *, secret: str | None = TEST_WEBHOOK_SECRET, signature: str | None = None
) -> requests.Response:
    """One delivery, as Flinks sends it: the exact bytes, signed (unless ``secret`` is None)."""
    headers = {"content-type": "application/json; charset=utf-8", "user-agent": "Flinks-Webhooks"}
    if signature is not None:
        headers["x-webhook-signature"] = signature
    elif secret is not None:
        headers["x-webhook-signature"] = compute_signature(body, secret)
    return requests.post(stack.webhook_url, data=body, headers=headers, timeout=TIMEOUT_S)
