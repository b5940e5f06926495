"""Docs that cannot lie: every command block of README.md and docs/*.md
marked ``<!-- docs: run -->`` is run, as shown, against a ``make local`` this module starts, and its
output is checked for the shape shown (testkit/docs_blocks.py says how blocks are read).

The commands run in bash from the repository's root, with the environment of a plain shell: no AWS
variables, and only ``LOCAL_RUN_DIR`` set, so that ``--local`` finds this module's stack (in its own
folder, on a free port) rather than one a developer may be running in ``.local``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.docs_blocks import CommandBlock, command_blocks, missing_lines
from tests.e2e.helpers import READY_LINE, Output, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
RUN_BLOCKS = [block for path in DOCS for block in command_blocks(path) if block.kind == "run"]
_MARKER = "@@docs-harness"
_MARKED = re.compile(rf"^{_MARKER} (?P<what>start|exit) (?P<index>\d+)(?: (?P<code>\d+))?@@$")


def _plain_shell_environment(run_dir: Path) -> dict[str, str]:
    ours = ("AWS_", "PARAM_", "LOCAL_", "FLINKS_", "WEBHOOK_", "SANDBOX", "DECISION_POLICY", "PYTHONPATH")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    return {**environment, "LOCAL_RUN_DIR": str(run_dir)}


@pytest.fixture(scope="module")
def local_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``make local``, exactly the documented command, in its own folder and on a free port."""
    run_dir = tmp_path_factory.mktemp("docs-local")
    environment = {**_plain_shell_environment(run_dir), "LOCAL_PORT": str(free_port())}
    process = subprocess.Popen(
        ["make", "local"],
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    try:
        if output.wait_for(READY_LINE, timeout=180) is None:
            raise AssertionError("make local did not start:\n" + "\n".join(output.lines[-30:]))
        yield run_dir
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the docs say
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_docs_have_command_blocks_to_run() -> None:
    # a harness that finds nothing proves nothing
    assert len(RUN_BLOCKS) >= 3
    assert {block.path.name for block in RUN_BLOCKS} >= {"README.md", "local-stack.md"}


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.where for block in RUN_BLOCKS])
def test_a_documented_command_block_runs_as_shown(block: CommandBlock, local_run_dir: Path) -> None:
    commands = block.commands()
    script = ["exec 2>&1"]
    for index, command in enumerate(commands):
        # a newline first: the command's output may not end with one
        script += [
            f"echo '{_MARKER} start {index}@@'",
            command.text,
            f"printf '\\n{_MARKER} exit {index} %d@@\\n' $?",
        ]

    completed = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        check=False,  # each command's status is reported by its marker
        cwd=REPO,
        env=_plain_shell_environment(local_run_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )

    outputs: dict[int, list[str]] = {}
    exits: dict[int, int] = {}
    current: int | None = None
    for line in completed.stdout.splitlines():
        marked = _MARKED.match(line)
        if marked is None:
            if current is not None:
                outputs[current].append(line)
            continue
        index = int(marked["index"])
        if marked["what"] == "start":
            current, outputs[index] = index, []
        else:
            exits[index], current = int(marked["code"]), None
    for index, command in enumerate(commands):
        shown = "\n".join(outputs.get(index, []))
        exited = exits.get(index)
        assert exited == command.exit_code, (
            f"{block.where}: `{command.text}` exited {exited}, docs say {command.exit_code}:\n{shown}"
        )
        missing = missing_lines(command.shown_output, outputs[index])
        assert not missing, (
            f"{block.where}: `{command.text}` printed:\n{shown}\nnot the shown lines:\n" + "\n".join(missing)
        )
