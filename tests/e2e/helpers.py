"""What the e2e tests share besides fixtures: reading the stack's stream, signing, sending, and
``make local``'s entry point as a process (started, or run to its exit)."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from geft.signature import compute_signature
from geft_local.config import make_local_environment as local_stack_environment
from geft_local.stack import LocalStack

from testkit.streams import read_all_records, streams_client
from tests.support.constants import TEST_WEBHOOK_SECRET

TIMEOUT_S = 5.0
REPO = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C stops everything."
MAKE_LOCAL = [sys.executable, "-m", "geft_local.stack"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_local_environment(port: int, run_dir: Path, **extra: str) -> dict[str, str]:
    """What `make local` passes (geft_local.config's), on this port and run folder, plus ``extra``."""
    return {**local_stack_environment(os.environ, port=port, run_dir=run_dir), **extra}


def run_make_local(port: int, run_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """``make local``'s entry point run to its exit (for starts that must fail)."""
    return subprocess.run(
        MAKE_LOCAL,
        cwd=REPO,
        env=make_local_environment(port, run_dir, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_make_local(port: int, run_dir: Path) -> tuple[subprocess.Popen[str], Output]:
    """``make local``'s entry point serving; its output read on a thread."""
    process = subprocess.Popen(
        MAKE_LOCAL,
        cwd=REPO,
        env=make_local_environment(port, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, Output(process)


class Output:
    """Reads a process's stdout on a thread, so waits for a line are bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stdout: object) -> None:
        for line in stdout:  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str | None:
        for line in self.lines:
            if text in line:
                return line
        give_up_at = time.monotonic() + timeout
        while (remaining := give_up_at - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            if text in line:
                return line
        return None


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
