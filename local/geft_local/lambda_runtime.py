"""Inside one local Lambda container: import the handler once, then serve invokes until stdin closes.

``geft_local.workers`` starts it as ``python -P lambda_runtime.py --reply-fd N`` with PYTHONPATH set to
the function's CodeUri and its layers only (``-P`` keeps this file's folder off ``sys.path``), so the
function imports exactly what it would in Lambda. Stdlib only: nothing here is visible to the function.

Protocol (one JSON document per line):

* requests on **stdin**: ``{"requestId", "deadlineMs", "invokedFunctionArn", "event"}``;
* replies on the **reply fd** (never stdout, which is the function's log, as is stderr):
  ``{"type": "ready", "initMs"}`` once after the handler imported, or ``{"type": "init-error", "error"}``
  (then the process exits); per request ``{"type": "result", "requestId", "payload"}`` or
  ``{"type": "error", "requestId", "error": {"errorType", "errorMessage", "stackTrace"}}``.

Like the Lambda runtime, it logs START/END/REPORT lines, prints the error of a failed invoke, and turns
a result that is not JSON-serializable into ``Runtime.MarshalError``. The deadline (the function's
Timeout) is enforced by the parent, which kills a container that overruns it.
"""

from __future__ import annotations

import argparse
import decimal
import importlib
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

Handler = Callable[[Any, Any], Any]


class LambdaContext:
    """The context object the Python runtime passes to handlers (the attributes Powertools reads)."""

    function_version = "$LATEST"
    identity = None
    client_context = None

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        # A string, as in the AWS runtime (it reads the variable as is).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lambda_runtime")
    parser.add_argument("--reply-fd", type=int, required=True)
    args = parser.parse_args(argv)
    with os.fdopen(args.reply_fd, "wb") as replies:
        started = time.perf_counter()
        try:
            handler = _load_handler(os.environ["_HANDLER"])
        except Exception as error:  # reported to the parent, as Lambda reports init errors
            _log_error(error)
            document = _error_document(error, "Runtime.ImportModuleError")
            _reply(replies, {"type": "init-error", "error": document})
            return 1
        init_ms = (time.perf_counter() - started) * 1000
        _reply(replies, {"type": "ready", "initMs": round(init_ms, 2)})
        first = True
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            request = json.loads(line)
            _reply(replies, _invoke(handler, request, init_ms if first else None))
            first = False
    return 0


def _load_handler(name: str) -> Handler:
    module_name, _, function_name = name.rpartition(".")
    if not module_name:
        raise ValueError(f"bad handler {name!r}: use module.function")
    handler: Handler = getattr(importlib.import_module(module_name), function_name)
    return handler


def _invoke(handler: Handler, request: dict[str, Any], init_ms: float | None) -> dict[str, Any]:
    request_id = str(request["requestId"])
    context = LambdaContext(request_id, int(request["deadlineMs"]), str(request["invokedFunctionArn"]))
    print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
    started = time.perf_counter()
    reply: dict[str, Any]
    try:
        payload = handler(request["event"], context)
        try:
            text = json.dumps(payload, default=_decimal_serializer)
            reply = {"type": "result", "requestId": request_id, "payload": json.loads(text)}
        except (TypeError, ValueError) as error:
            message = f"Unable to marshal response: {error}"
            reply = _error_reply(request_id, TypeError(message), "Runtime.MarshalError")
            print(f"[ERROR] Runtime.MarshalError: {message}", file=sys.stderr, flush=True)
    except Exception as error:  # a handler's exception is the invoke's result, as in Lambda
        _log_error(error)
        reply = _error_reply(request_id, error, None)
    duration_ms = (time.perf_counter() - started) * 1000
    _report(request_id, duration_ms, init_ms)
    return reply


def _decimal_serializer(value: object) -> float:
    """The AWS runtime's marshaller turns Decimal into a number; anything else unknown is an error."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_reply(request_id: str, error: BaseException, error_type: str | None) -> dict[str, Any]:
    return {"type": "error", "requestId": request_id, "error": _error_document(error, error_type)}


def _error_document(error: BaseException, error_type: str | None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _log_error(error: BaseException) -> None:
    print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()


def _report(request_id: str, duration_ms: float, init_ms: float | None) -> None:
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    max_used_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {int(duration_ms) + 1} ms\tMemory Size: {memory} MB\t"
        f"Max Memory Used: {max_used_mb} MB"
    )
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    print(f"END RequestId: {request_id}", flush=True)
    print(report, flush=True)


def _reply(replies: BinaryIO, document: dict[str, Any]) -> None:
    replies.write(json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n")
    replies.flush()


if __name__ == "__main__":
    raise SystemExit(main())
