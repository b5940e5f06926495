"""Exhausted stream retries end in the template's OnFailure queue; stopping the stack leaves nothing
behind. A stack of its own, with ``PARAM_StreamMaximumRetryAttempts=1`` as ``make local`` would take it."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import pytest
from geft_local.stack import LocalStack

from testkit.flinks import Scenario
from testkit.streams import read_all_records, streams_client
from tests.e2e.conftest import StartStack
from tests.e2e.helpers import console_dump
from tests.support.constants import TEST_WEBHOOK_SECRET

pytestmark = pytest.mark.e2e

DLQ_WAIT_S = 30.0


@pytest.fixture(scope="module")
def retry_once_stack(start_stack: StartStack) -> LocalStack:
    return start_stack("retry-once", StreamMaximumRetryAttempts="1")


def _receive_one(stack: LocalStack, queue_url: str, timeout: float) -> dict[str, Any] | None:
    sqs = stack.aws.client("sqs")
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            return dict(json.loads(messages[0]["Body"]))
    return None


def test_exhausted_retries_send_the_record_to_the_dead_letter_queue(retry_once_stack: LocalStack) -> None:
    stack = retry_once_stack
    assert stack.sandbox is not None
    queue_url = stack.on_failure_queue_url()
    assert queue_url is not None
    # GIVEN a session whose confirm always answers 503 (the processor retries 5 times per invocation)
    session_id = stack.sandbox.add_session(
        scenario=Scenario.preset("accept", faults={"confirm": ["503"] * 50})
    )

    # WHEN its guarantee is delivered
    assert stack.sandbox.emit_guarantee_webhook(stack.webhook_url, TEST_WEBHOOK_SECRET, session_id).delivered

    # THEN after the first invoke and one retry, the mapping sends Lambda's failure record to the DLQ
    message = _receive_one(stack, queue_url, DLQ_WAIT_S)
    assert message is not None, console_dump(stack)
    [sequence] = _insert_sequences(stack, session_id)
    processor = stack.workers["DecisionProcessorFunction"].spec
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert message["requestContext"]["functionArn"] == processor.arn
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "",
    }
    assert message["version"] == "1.0"
    info = message["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == sequence
    assert info["batchSize"] == 1
    assert info["streamArn"] == stack.mappings[0].stream_arn
    assert info["shardId"]
    assert {"approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"} <= set(info)
    # and Flinks never recorded a decision (a 503 is a confirm it refused, not one it may have applied):
    # the guarantee waits, released, for a redrive or the sweep
    assert stack.sandbox.confirms_for(session_id) == []
    [item] = stack.guarantees(session_id)
    assert item["status"] == "RECEIVED"
    assert "confirmAttempted" not in item
    assert item["opsQueue"].startswith("SWEEP#")
    assert stack.console.wait_for("DLQ <- 1 record(s)", timeout=2.0)


def _insert_sequences(stack: LocalStack, session_id: str) -> list[str]:
    records = read_all_records(streams_client(stack.aws), stack.mappings[0].stream_arn)
    return [
        record["dynamodb"]["SequenceNumber"]
        for record in records
        if record["eventName"] == "INSERT" and record["dynamodb"]["Keys"]["pk"]["S"] == session_id
    ]


def test_stop_leaves_no_child_processes_and_frees_the_ports(retry_once_stack: LocalStack) -> None:
    # GIVEN the running stack's containers and ports
    stack = retry_once_stack
    pids = stack.child_pids()
    ports = stack.ports()
    assert len(pids) == len(stack.workers)
    assert len(ports) == 3  # gateway, sandbox, moto

    # WHEN it stops
    stack.stop()

    # THEN every container is gone, every port can be bound again, and the state file is removed
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _children_of_this_process_running_the_runtime() == []
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    assert not stack.state_path.exists()


def _children_of_this_process_running_the_runtime() -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == os.getpid() and b"lambda_runtime.py" in command:
            children.append(int(entry))
    return children
