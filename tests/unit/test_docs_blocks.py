"""The docs harness's reading of the docs, and what it checks of the blocks it does not run.

Every command block says whether a test runs it (tests/e2e/test_docs_commands.py runs the ``run``
ones against ``make local``); a ``not-run`` block still has to be valid shell, name ``make`` targets
that exist and ``bin/geft-ops`` command lines that parse.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from geft_ops import cli

from testkit.docs_blocks import CommandBlock, command_blocks, missing_lines, shape

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
BLOCKS = [block for path in DOCS for block in command_blocks(path)]
NOT_RUN = [block for block in BLOCKS if block.kind in ("not-run", "run-by")]
RUN_BY = [block for block in BLOCKS if block.kind == "run-by"]
MAKE_TARGETS = set(re.findall(r"^([A-Za-z0-9_.-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))


def test_every_command_block_says_whether_a_test_runs_it() -> None:
    unmarked = [block.where for block in BLOCKS if block.kind is None]

    assert unmarked == [], "add <!-- docs: run --> or <!-- docs: not-run: WHY --> before each"


def test_a_block_not_run_says_why() -> None:
    assert [block.where for block in NOT_RUN if not block.why] == []


@pytest.mark.parametrize("block", RUN_BY, ids=[block.where for block in RUN_BY])
def test_a_block_run_by_a_test_names_one_that_reads_its_page(block: CommandBlock) -> None:
    for name in str(block.why).split():
        test_file = REPO / name
        assert test_file.is_file(), f"{block.where}: no test {name}"
        page = block.path.relative_to(REPO).as_posix()
        assert page in test_file.read_text(), f"{block.where}: {name} does not read {page}"


@pytest.mark.parametrize("block", NOT_RUN, ids=[block.where for block in NOT_RUN])
def test_a_block_not_run_is_valid_shell_with_real_targets_and_commands(block: CommandBlock) -> None:
    # a <placeholder> stands for what the reader supplies (a session id): a word to the shell
    commands = [re.sub(r"<[^<>]+>", "PLACEHOLDER", command.text) for command in block.commands()]
    syntax = subprocess.run(
        ["bash", "-n"], input="\n".join(commands), capture_output=True, text=True, check=False
    )
    assert syntax.returncode == 0, f"{block.where}: {syntax.stderr}"
    for command in commands:
        words = shlex.split(command, comments=True)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VARIABLE=value before the command
        if words[:1] == ["make"]:
            targets = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
            assert set(targets) <= MAKE_TARGETS, f"{block.where}: `{command}` names a target make lacks"
        if words[:1] == ["bin/geft-ops"]:
            try:
                cli._parser().parse_args(words[1:])
            except SystemExit as refused:
                pytest.fail(f"{block.where}: `{command}` does not parse (exit {refused.code})")


# -- the reader itself -------------------------------------------------------------------------------------


def test_console_blocks_split_commands_outputs_and_exit_codes(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs: run -->\n"
        "```console\n"
        "$ bin/geft-ops --local list \\\n"
        "    --status REVIEW\n"
        "sessionId  status\n"
        "# a comment, not output\n"
        "$ bin/geft-ops --local redrive\n"
        "nothing to redrive\n"
        "# exits 1\n"
        "```\n"
        "```bash\n"
        "make local\n"
        "```\n"
        "<!-- docs: not-run: needs AWS -->\n"
        "```bash\n"
        "sam deploy \\\n"
        "  --guided   # first time\n"
        "```\n"
    )

    run, unmarked, not_run = command_blocks(page)

    first, second = run.commands()
    assert (first.text, first.shown_output, first.exit_code) == (
        "bin/geft-ops --local list --status REVIEW",
        ("sessionId  status",),
        0,
    )
    assert (second.text, second.shown_output, second.exit_code) == (
        "bin/geft-ops --local redrive",
        ("nothing to redrive",),
        1,
    )
    assert (run.kind, run.line) == ("run", 2)
    assert unmarked.kind is None
    assert (not_run.kind, not_run.why) == ("not-run", "needs AWS")
    assert [command.text for command in not_run.commands()] == ["sam deploy --guided   # first time"]


def test_generated_sections_are_left_to_their_generator(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- day-in-the-life:begin (generated) -->\n```console\n$ bin/geft-ops --local list\n```\n"
        "<!-- day-in-the-life:end -->\n"
    )

    (block,) = command_blocks(page)

    assert block.kind == "generated"


def test_shapes_keep_words_and_columns_but_not_what_changes_between_runs() -> None:
    shown = "4fef9dd2-a16f-4e62-a2f5-6f2c0e3c9b7d  CONFIRMED  accept  2026-11-23T20:34:13.764+00:00  9380"
    actual = "0c2a7b51-0f5e-4d61-9a7e-2a1d2e0a9f11  CONFIRMED  accept    2026-12-01T10:00:00.001+00:00  12"

    assert shape(shown) == shape(actual)
    assert shape(shown) != shape(actual.replace("CONFIRMED", "FAILED"))
    assert shape("------  ---") == shape("---  ---------")


def test_every_shown_line_must_appear_in_order() -> None:
    actual = ["header", "row one", "row two", "footer"]

    assert missing_lines(["header", "...", "footer"], actual) == []
    assert missing_lines(["row two", "row one"], actual) == ["row one"]
    assert missing_lines(["header", "row three"], actual) == ["row three"]
