"""The local Lambda containers as real processes: the reply pipe, warm state, the context object, the
timeout, crashes and restarts, and a clean stop. A tiny function written per test keeps them fast."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from geft_local.console import Console
from geft_local.workers import FunctionSpec, FunctionWorker

pytestmark = pytest.mark.e2e

FUNCTION = """
import json, os, sys, time

calls = 0  # module state: survives between invokes of one container


def handler(event, context):
    global calls
    calls += 1
    action = event.get("action")
    print(json.dumps({"level": "INFO", "message": "a log line on stdout"}))
    print("and one on stderr", file=sys.stderr)
    if action == "raise":
        raise ValueError("bad input")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "unserializable":
        return {"value": object()}
    return {
        "calls": calls,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "sys_path": sys.path,
        "env": {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "MY_SETTING", "PYTHONPATH")},
    }
"""


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[FunctionWorker]:
    code = tmp_path / "code"
    layer = tmp_path / "layer"
    code.mkdir()
    layer.mkdir()
    (code / "tiny.py").write_text(textwrap.dedent(FUNCTION))
    spec = FunctionSpec(
        logical_id="TinyFunction",
        function_name="local-TinyFunction",
        handler="tiny.handler",
        code_uri=code,
        layer_paths=(layer,),
        timeout_s=1.0,
        memory_mb=256,
        runtime="python3.13",
        environment={"MY_SETTING": "from-the-template"},
    )
    running = FunctionWorker(
        spec,
        aws_environment={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1"},
        log_path=tmp_path / "TinyFunction.log",
        console=Console(stream=None),
        kill_grace_s=1.0,
    )
    running.start()
    yield running
    running.stop()


def test_replies_travel_apart_from_the_logs_and_the_container_stays_warm(worker: FunctionWorker) -> None:
    first = worker.invoke({"action": "hello"}, request_id="req-1")
    second = worker.invoke({"action": "hello"})

    assert not first.function_error
    assert (first.payload["calls"], second.payload["calls"]) == (1, 2)
    log = worker.log_path.read_text()
    assert "a log line on stdout" in log
    assert "and one on stderr" in log
    assert "START RequestId: req-1 Version: $LATEST" in log
    assert "REPORT RequestId: req-1" in log
    assert "Init Duration" in log


def test_the_context_and_environment_are_lambdas(worker: FunctionWorker) -> None:
    result = worker.invoke({}, request_id="req-ctx")

    payload = result.payload
    assert payload["function_name"] == "local-TinyFunction"
    assert payload["memory_limit_in_mb"] == "256"  # a string, as the AWS runtime gives it
    assert (
        payload["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:local-TinyFunction"
    )
    assert payload["aws_request_id"] == "req-ctx"
    assert 0 < payload["remaining_ms"] <= 1000
    assert payload["env"]["MY_SETTING"] == "from-the-template"
    assert payload["env"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    # only the code and its layers are importable from the project: not the local stack's own code
    assert payload["env"]["PYTHONPATH"] == os.pathsep.join(
        str(path) for path in (worker.spec.code_uri, *worker.spec.layer_paths)
    )
    assert not any("geft_local" in entry or entry.endswith("/local") for entry in payload["sys_path"])


def test_an_exception_is_a_function_error_and_the_container_lives_on(worker: FunctionWorker) -> None:
    pid = worker.pid

    failed = worker.invoke({"action": "raise"})
    after = worker.invoke({})

    assert (failed.error_type, failed.error_message) == ("ValueError", "bad input")
    assert failed.payload["stackTrace"]
    assert worker.pid == pid
    assert after.payload["calls"] == 2


def test_an_unserializable_result_is_a_marshal_error(worker: FunctionWorker) -> None:
    result = worker.invoke({"action": "unserializable"})

    assert result.error_type == "Runtime.MarshalError"


def test_the_timeout_kills_the_container_and_a_new_one_serves_the_next_invoke(worker: FunctionWorker) -> None:
    # GIVEN a warm container with state
    worker.invoke({})
    old_pid = worker.pid

    # WHEN an invoke overruns the function's 1 s Timeout
    result = worker.invoke({"action": "sleep", "seconds": 5})

    # THEN it is a function error, the container is replaced (a cold start: state is gone)
    assert result.error_type == "Sandbox.Timedout"
    assert result.error_message == "Task timed out after 1.00 seconds"
    assert result.duration_ms < 4500  # killed at the 1 s Timeout, not after the 5 s sleep
    after = worker.invoke({})
    assert not after.function_error
    assert after.payload["calls"] == 1
    assert worker.pid != old_pid
    assert "Task timed out after 1.00 seconds" in worker.log_path.read_text()


def test_a_container_that_dies_mid_invoke_is_reported_and_replaced(worker: FunctionWorker) -> None:
    old_pid = worker.pid

    result = worker.invoke({"action": "exit"})

    assert result.error_type == "Runtime.ExitError"
    assert "exited with code 3" in (result.error_message or "")
    after = worker.invoke({})
    assert after.payload["calls"] == 1
    assert worker.pid != old_pid
    console = worker._console
    assert console.wait_for(f"container pid {old_pid} exited with code 3", timeout=5.0)


def test_stop_ends_every_process(worker: FunctionWorker) -> None:
    pids = worker.pids()
    assert pids

    worker.stop()

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert worker.invoke({}).error_type in {"Local.Stopped", "Runtime.ImportModuleError"}


def test_a_handler_that_cannot_be_imported_is_an_init_error(tmp_path: Path) -> None:
    spec = FunctionSpec(
        logical_id="Broken",
        function_name="local-Broken",
        handler="missing_module.handler",
        code_uri=tmp_path,
        layer_paths=(),
        timeout_s=1.0,
        memory_mb=128,
        runtime="python3.13",
        environment={},
    )
    worker = FunctionWorker(
        spec, aws_environment={}, log_path=tmp_path / "Broken.log", console=Console(stream=None)
    )
    try:
        result = worker.invoke({})
    finally:
        worker.stop()

    assert result.error_type == "Runtime.ImportModuleError"
    assert "No module named 'missing_module'" in (tmp_path / "Broken.log").read_text()
    assert json.dumps(result.payload) is not None
