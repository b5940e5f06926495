"""What the pipeline tests share: a guarantee's way through both functions (``Pipeline``: the sandbox
plays Flinks, moto the table, the stream feeds the processor) and the operator CLI against the same
moto stack (``Cli``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.flinks import FlinksSandbox, Scenario
from testkit.inprocess import InProcessStack
from testkit.streams import StreamFeed, streams_client

Invoke = Callable[..., dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
Scheduled = Callable[..., Any]
# A policy that sends a guarantee over 1,000 to a person (modules that need one set it as processor_env).
REVIEW_POLICY_ENV = {
    "DECISION_POLICY": json.dumps(
        {
            "default": "accept",
            "rules": [{"name": "large-amount", "when": {"amount": {"gt": 1000}}, "decision": "review"}],
        }
    )
}
FAR_FUTURE_MS = int((time.time() + 10 * 86_400) * 1000)


def reconcile_when_due(scheduled: Scheduled, **env: str) -> Any:
    """One reconciler run (its composition root as the template builds it, plus ``env``) on a clock far
    enough ahead that every answered session is due; its summary."""
    from scheduled_jobs import reconciler

    config, repository, flinks = scheduled(reconciler, "ReconcilerFunction", **env)
    return reconciler.reconcile(
        repository, flinks, config, deadline=time.monotonic() + 30, clock=lambda: FAR_FUTURE_MS / 1000
    )


def dead_letter(stack: InProcessStack, event: dict[str, Any]) -> None:
    """Send what Lambda sends to the stream's OnFailure queue once a batch's retries are exhausted."""
    sequences = [int(record["dynamodb"]["SequenceNumber"]) for record in event["Records"]]
    stream_arn = stack.get_att("GuaranteesTable", "StreamArn")
    streams = streams_client(stack.session)
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    message = {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "functionError": None},
        "version": "1.0",
        "timestamp": "2026-12-01T12:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": str(min(sequences)),
            "endSequenceNumber": str(max(sequences)),
            "batchSize": len(event["Records"]),
            "streamArn": stream_arn,
        },
    }
    queue_url = stack.ref("DecisionDeadLetterQueue")
    stack.session.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))


def dead_letters(stack: InProcessStack) -> int:
    """Messages in the dead-letter queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    queue_url = stack.ref("DecisionDeadLetterQueue")
    attributes = stack.session.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return sum(int(attributes["Attributes"][name]) for name in names)


def guarantee_item(items: Items, session_id: str) -> dict[str, Any]:
    """The session's one guarantee item, deserialized."""
    [item] = [i for i in items() if i["pk"] == session_id and str(i["sk"]).startswith("GUARANTEE#")]
    return item


@dataclass
class Pipeline:
    sandbox: FlinksSandbox
    stack: InProcessStack
    feed: StreamFeed
    invoke_receiver: Invoke
    invoke_processor: Invoke

    def session(self, preset: str = "accept", **scenario: Any) -> str:
        """A session the sandbox knows, in a preset scenario with field overrides."""
        return self.sandbox.add_session(scenario=Scenario.preset(preset, **scenario))

    def receive(self, session_id: str, **fields: Any) -> None:
        """Deliver a correctly signed guarantee webhook for ``session_id``; it must be acknowledged."""
        assert self.invoke_receiver(self.stack.webhook(session_id, **fields))["statusCode"] == 200

    def guarantee(self, preset: str = "accept", **scenario: Any) -> tuple[str, dict[str, Any]]:
        """A new session's guarantee stored, and the stream batch that carries it."""
        session_id = self.session(preset, **scenario)
        self.receive(session_id)
        return session_id, self.feed.next_event()

    def in_review(self) -> str:
        """A guarantee of 2,500 decided (under REVIEW_POLICY_ENV: sent to a person); its session id."""
        session_id = self.sandbox.add_session(scenario=Scenario(amount="2500.00"))
        self.receive(session_id, amount=2500)
        assert self.process() == {"batchItemFailures": []}
        return session_id

    def process(
        self, event: dict[str, Any] | None = None, *, timeout_seconds: float = 20.0
    ) -> dict[str, Any]:
        """One processor invoke: with ``event``, or with what the stream holds since the last read."""
        return self.invoke_processor(
            event if event is not None else self.feed.next_event(), timeout_seconds=timeout_seconds
        )

    def items(self) -> list[dict[str, Any]]:
        return self.stack.items()

    def item(self, session_id: str) -> dict[str, Any]:
        return guarantee_item(self.stack.items, session_id)

    def outcome(self, session_id: str) -> tuple[str, str | None, str | None]:
        """The session's guarantee as the audit trail sums it up: (status, decision, decisionRule)."""
        item = self.item(session_id)
        return item["status"], item.get("decision"), item.get("decisionRule")

    def confirms(self, session_id: str) -> list[bool]:
        return self.sandbox.confirms_for(session_id)

    def dead_letter(self, event: dict[str, Any]) -> None:
        """Lambda gave up on ``event``'s batch: its failure record goes to the stream's OnFailure queue."""
        dead_letter(self.stack, event)

    def dead_letters(self) -> int:
        return dead_letters(self.stack)


@dataclass
class Cli:
    """``geft-ops --local-state FILE ...`` in this process, against the test's moto stack; returns
    ``(exit code, stdout, stderr)``."""

    state: Path
    capsys: pytest.CaptureFixture[str]

    @classmethod
    def for_stack(cls, stack: InProcessStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
        state = tmp_path / "stack.json"
        outputs = {
            "GuaranteesTableName": stack.ref("GuaranteesTable"),
            "GuaranteesTableStreamArn": stack.get_att("GuaranteesTable", "StreamArn"),
            "DeadLetterQueueUrl": stack.ref("DecisionDeadLetterQueue"),
        }
        # "running": this process plays the local stack; in-process moto intercepts the calls
        document = {"pid": os.getpid(), "endpointUrl": None, "region": "us-east-1", "outputs": outputs}
        state.write_text(json.dumps(document))
        return cls(state, capsys)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from geft_ops.cli import main as geft_ops

        self.capsys.readouterr()  # drop what the functions logged before
        code = geft_ops(["--local-state", str(self.state), *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err
