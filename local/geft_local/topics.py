"""SNS topics on the console: each of the template's topics gets a local queue subscribed to it, and
whatever is published (a review notice, say) is printed, as the review team would receive it."""

from __future__ import annotations

from typing import Any

from geft_local.console import Console
from geft_local.loop import Loop
from testkit.template import CreatedResources

POLL_INTERVAL_S = 0.5


class TopicMonitor(Loop):
    thread_name = "topic-monitor"

    def __init__(self, aws: Any, created: CreatedResources, console: Console) -> None:
        super().__init__()
        self._sqs = aws.client("sqs")
        self._console = console
        self._queues: dict[str, str] = {}
        sns = aws.client("sns")
        for logical_id, topic_arn in created.topics.items():
            url = self._sqs.create_queue(QueueName=f"console-{logical_id}")["QueueUrl"]
            queue_arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"},
            )
            self._queues[logical_id] = url

    def _run(self) -> None:
        while not self._stop.is_set():
            for logical_id, url in self._queues.items():
                try:
                    messages = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
                        "Messages", []
                    )
                except Exception as error:
                    if self._stop.is_set():
                        return
                    self._console.emit("sns", f"{logical_id}: read failed ({type(error).__name__}); retrying")
                    continue
                for message in messages:
                    for line in str(message.get("Body", "")).splitlines():
                        self._console.emit(_label(logical_id), line)
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            self._stop.wait(POLL_INTERVAL_S)


def _label(logical_id: str) -> str:
    return "review" if "Review" in logical_id else "sns"
