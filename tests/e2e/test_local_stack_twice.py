"""`make local` twice: a second start on the same port stops before touching the running stack; one on
another port keeps its own state and logs; the operator CLI finds the one running or asks which."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    READY_LINE,
    REPO,
    Output,
    free_port,
    make_local_environment,
    run_make_local,
    start_make_local,
)

pytestmark = pytest.mark.e2e


def _start(port: int, run_dir: Path) -> tuple[subprocess.Popen[str], Output]:
    process, output = start_make_local(port, run_dir)
    assert output.wait_for(READY_LINE, timeout=60.0), "\n".join(output.lines)
    return process, output


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def _files(folder: Path) -> dict[str, tuple[bytes, float]]:
    return {
        str(path): (path.read_bytes(), path.stat().st_mtime) for path in folder.rglob("*") if path.is_file()
    }


def _ops(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = make_local_environment(0, run_dir)
    return subprocess.run(
        [str(REPO / "bin" / "geft-ops"), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_stack_on_a_taken_port_touches_nothing_and_one_on_another_port_is_separate(
    tmp_path: Path,
) -> None:
    first_port, second_port = free_port(), free_port()
    first, _ = _start(first_port, tmp_path)
    try:
        first_dir = tmp_path / str(first_port)
        before = _files(first_dir)
        assert _ops(tmp_path, "--local", "list").returncode == 0

        # WHEN make local is started again on the same port
        again = run_make_local(first_port, tmp_path)

        # THEN it exits 2 and the running stack's state and logs are exactly as they were
        assert again.returncode == 2
        assert "already in use" in again.stderr
        assert _files(first_dir) == before
        assert _ops(tmp_path, "--local", "list").stdout.strip() == "no guarantees match"

        # WHEN a second stack starts on another port
        second, _ = _start(second_port, tmp_path)
        try:
            # THEN each has its own state and logs; --local asks which; --local-state picks one
            second_dir = tmp_path / str(second_port)
            assert (second_dir / "stack.json").exists()
            assert (second_dir / "logs" / "WebhookReceiverFunction.log").exists()
            ambiguous = _ops(tmp_path, "--local", "list")
            assert ambiguous.returncode == 1
            assert "several local stacks are running" in ambiguous.stderr
            chosen = _ops(tmp_path, "--local-state", str(second_dir / "stack.json"), "list")
            assert chosen.returncode == 0, chosen.stderr
        finally:
            _stop(second)

        # THEN stopping the second leaves the first stack's files alone
        assert not (second_dir / "stack.json").exists()
        assert (first_dir / "stack.json").exists()
        assert _ops(tmp_path, "--local", "list").returncode == 0
    finally:
        _stop(first)
