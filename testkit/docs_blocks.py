"""The command blocks of the docs, as the docs harness runs them (tests/e2e/test_docs_commands.py).

Every fenced block whose language is ``bash``, ``sh`` or ``console`` carries an annotation on the line
before its fence, so no command can be added to the docs without saying whether a test runs it:

- ``<!-- docs: run -->``: the harness runs it against a running ``make local``. In a ``console``
  block, ``$ `` starts a command (a trailing ``\\`` continues it on the next line) and the lines
  after it, up to the next command, are its output as shown (``# exits N``: its exit code, 0 when
  not shown; other ``# `` lines are comments); in a ``bash`` block every line is a command, nothing
  is shown, and each must exit 0.
- ``<!-- docs: not-run: WHY -->``: needs what a test here does not have (an AWS account, Docker), or
  is the test suite itself. The harness still checks what it can: the shell syntax, that each
  ``make`` target exists and that each ``bin/geft-ops`` command line parses.
- ``<!-- docs: run-by: TEST_FILE ... -->``: needs a stack in a given state (a day of traffic, a
  deployed stack made by moto's CloudFormation), run verbatim by those tests, which read the lines
  from the page. The harness checks it as a ``not-run`` block, and that each test file exists and
  reads this page. ``<placeholders>`` in a block that is not run stand for what the reader supplies.

Blocks between ``<!-- day-in-the-life:begin`` and ``<!-- day-in-the-life:end -->`` are generated from a
real run and checked by ``make day-in-the-life CHECK=1`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

COMMAND_LANGUAGES = frozenset({"bash", "sh", "console"})
_ANNOTATION = re.compile(r"<!--\s*docs:\s*(?P<kind>run|not-run|run-by)(?::\s*(?P<why>.*?))?\s*-->")
_FENCE = re.compile(r"^(?P<fence>```+)(?P<language>[\w-]*)\s*$")
_EXITS = re.compile(r"# exits (?P<code>\d+)")
_GENERATED_BEGIN = "<!-- day-in-the-life:begin"
_GENERATED_END = "<!-- day-in-the-life:end -->"


@dataclass(frozen=True)
class Command:
    """One command as shown (continuation lines joined as the shell joins them) and its shown output."""

    text: str
    shown_output: tuple[str, ...]
    exit_code: int = 0
    """What the command must exit with: 0 unless its output shows ``# exits N``."""


@dataclass(frozen=True)
class CommandBlock:
    path: Path
    line: int
    """1-based line of the opening fence."""
    language: str
    kind: Literal["run", "not-run", "run-by", "generated"] | None
    why: str | None
    lines: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def commands(self) -> list[Command]:
        """The block's commands, with the output shown after each (console blocks only)."""
        if self.language != "console":
            return [Command(text, ()) for text in _joined(line for line in self.lines if _is_command(line))]
        commands: list[Command] = []
        pending: list[str] = []
        output: list[str] = []
        text: str | None = None
        exit_code = 0
        for line in self.lines:
            if pending:
                pending.append(line)
                if not line.rstrip().endswith("\\"):
                    text, pending = " ".join(_continued(pending)), []
                continue
            if line.startswith("$ "):
                if text is not None:
                    commands.append(Command(text, tuple(output), exit_code))
                text, output, exit_code = None, [], 0
                if line.rstrip().endswith("\\"):
                    pending = [line[2:]]
                else:
                    text = line[2:]
            elif (exits := _EXITS.fullmatch(line.strip())) is not None:
                exit_code = int(exits["code"])
            elif text is not None and line.strip() and not line.startswith("# "):
                output.append(line)
        if text is not None:
            commands.append(Command(text, tuple(output), exit_code))
        return commands


def command_blocks(path: Path) -> Iterator[CommandBlock]:
    """Every fenced ``bash``/``sh``/``console`` block of a Markdown file, with its annotation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    generated = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(_GENERATED_BEGIN):
            generated = True
        elif line.startswith(_GENERATED_END):
            generated = False
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].startswith(fence["fence"])), len(lines)
        )
        language = fence["language"]
        if language in COMMAND_LANGUAGES:
            annotation = _ANNOTATION.search(lines[index - 1]) if index else None
            kind: Literal["run", "not-run", "run-by", "generated"] | None
            if generated:
                kind, why = "generated", "make day-in-the-life"
            elif annotation is not None:
                kind, why = annotation["kind"], annotation["why"]  # type: ignore[assignment]
            else:
                kind, why = None, None
            yield CommandBlock(path, index + 1, language, kind, why, tuple(lines[index + 1 : end]))
        index = end + 1


# -- output shapes ---------------------------------------------------------------------------------------

_VARIABLE_PARTS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:\.\d+)?\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"-+(?:\s+-+)*"), "<rule>"),  # a table's dashed underline, whatever the widths
    (re.compile(r"\s+"), " "),
)


def shape(line: str) -> str:
    """A line with what changes from run to run (ids, times, digests, numbers, widths) replaced."""
    for pattern, placeholder in _VARIABLE_PARTS:
        line = pattern.sub(placeholder, line)
    return line.strip()


def missing_lines(shown: Sequence[str], actual: Sequence[str]) -> list[str]:
    """The shown lines (as shapes) that the actual output lacks, in order: every shown line must
    appear, in the order shown; lines the docs leave out (``...``) may be anywhere."""
    actual_shapes = [shape(line) for line in actual]
    position = 0
    missing: list[str] = []
    for line in shown:
        wanted = shape(line)
        if wanted in ("...", "…"):
            continue
        try:
            position = actual_shapes.index(wanted, position) + 1
        except ValueError:
            missing.append(line)
    return missing


def _is_command(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _joined(lines: Iterator[str]) -> Iterator[str]:
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if not line.rstrip().endswith("\\"):
            yield " ".join(_continued(pending))
            pending = []
    if pending:
        yield " ".join(_continued(pending))


def _continued(lines: Sequence[str]) -> list[str]:
    return [line.rstrip().removesuffix("\\").strip() for line in lines]
