"""``make local``'s entry point as a process: it serves until SIGINT or SIGTERM, then leaves no
container and no port behind; a taken port is one clear line and exit code 2."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from pathlib import Path

import pytest
import requests
from geft.signature import compute_signature

from testkit.webhooks import guarantee_body
from tests.e2e.helpers import READY_LINE, free_port, run_make_local, start_make_local

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serves_then_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    # GIVEN `make local`'s entry point on a free port
    port = free_port()
    process, output = start_make_local(port, tmp_path)
    try:
        assert output.wait_for(READY_LINE, timeout=30.0), "\n".join(output.lines)
        secret_line = output.wait_for("Webhook secret", timeout=1.0)
        assert secret_line is not None
        assert "local-dev-webhook-secret" in secret_line
        assert (tmp_path / str(port) / "stack.json").exists()
        containers = _children(process.pid)
        assert containers

        # WHEN a signed webhook arrives (for a session the sandbox does not know: it ends FAILED)
        session_id = str(uuid.uuid4())
        body = guarantee_body(session_id)
        signature = compute_signature(body, "local-dev-webhook-secret")
        response = requests.post(
            f"http://127.0.0.1:{port}/webhooks/flinks",
            data=body,
            headers={"content-type": "application/json", "x-webhook-signature": signature},
            timeout=5,
        )

        # THEN it is stored and flows to its end state on the console
        assert response.json() == {"outcome": "stored"}
        assert output.wait_for(f"{session_id} no decision -> FAILED", timeout=15.0), "\n".join(output.lines)

        # WHEN the stack is told to stop
        process.send_signal(stop_signal)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # THEN it exits cleanly, its containers are gone, the port is free and the state file removed
    assert code == 0
    assert output.wait_for("stopped: containers ended, ports closed", timeout=2.0)
    for pid in containers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert not (tmp_path / str(port) / "stack.json").exists()


def test_a_taken_port_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])

        result = run_make_local(port, tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"geft-local: port {port} on 127.0.0.1 is already in use: stop what uses it or set LOCAL_PORT"
    ]
    assert result.stdout == ""
    assert not (tmp_path / str(port)).exists()  # nothing written for a stack that never started


def test_an_invalid_policy_stops_the_start_with_the_validation_message(tmp_path: Path) -> None:
    # GIVEN a policy with an unknown decision
    port = free_port()

    # WHEN make local's entry point starts
    result = run_make_local(port, tmp_path, DECISION_POLICY='{"default": "maybe", "rules": []}')

    # THEN it exits 2 at once, saying what is wrong, and no stack was started
    assert result.returncode == 2
    assert "DECISION_POLICY is not a valid policy" in result.stderr
    assert 'policy: default: unknown decision "maybe"' in result.stderr
    assert not (tmp_path / str(port)).exists()


def test_a_parameter_outside_its_allowed_values_stops_the_start(tmp_path: Path) -> None:
    port = free_port()

    result = run_make_local(port, tmp_path, PARAM_StreamBatchSize="0")

    assert result.returncode == 2
    assert result.stderr.strip() == "geft-local: PARAM_StreamBatchSize must be at least 1, got 0"
