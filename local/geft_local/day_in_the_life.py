"""``make day-in-the-life``: the generated blocks of "A day in the life" in docs/operations.md and
README.md, from a real run (the prose around them is the docs' own).

    make day-in-the-life            # play the day, then rewrite the blocks between their markers
    make day-in-the-life CHECK=1    # play it again; exit 1 with a diff when the docs tell another story
    python -m geft_local.day_in_the_life [--write | --check]

It starts ``make local``'s own entry point (``python -m geft_local.stack``) as a process, on a free port
and in a temporary run folder (a running ``make local`` is never touched), with one extra policy rule
(``LARGE_AMOUNT_RULE``) and compressed time (``STACK_SETTINGS``), and plays a day with fixed session
ids through the sandbox's admin API and signed webhooks. Each command the docs show is run as a process
in exactly the form shown, from the repository, with nothing in its environment but ``PATH`` and
``LOCAL_RUN_DIR`` (which is how ``--local`` finds the stack); the docs show its real stdout. The console
excerpts are the stack's own stdout.

``--check`` compares after ``NORMALIZERS`` have replaced, by name, what differs from run to run
(times, durations, stream sequence numbers, request ids, pids, ports); everything else must match, so a
renamed column or state, or a missing history line, fails the check. Exit codes: 0 done (or the docs
are true), 1 the docs differ or the day did not go as scripted, 2 bad usage.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from geft.audit import session_history
from geft.items import GUARANTEE_SK_PREFIX, SESSION_SK
from geft.models import Actor
from geft.repository import GuaranteeRepository

from geft_local.aws import EndpointSession
from geft_local.config import make_local_environment
from geft_local.console import Console
from testkit.flinks import SandboxAdmin, emit_guarantee_webhook, guarantee_webhook_body
from testkit.template import REPO_ROOT, TEMPLATE_PATH, load_template

OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"
README_DOC = REPO_ROOT / "README.md"
READY_LINE = "Ctrl-C stops everything."  # the last line of make local's banner
OPS = "bin/geft-ops --local"

LARGE_AMOUNT_RULE: dict[str, Any] = {
    "name": "large-amount",
    "when": {"amount": {"gt": 2000}},
    "decision": "review",
    "reason": "LARGE_AMOUNT",
}
POLICY_NAME, POLICY_VERSION = "default+large-amount", "1"
# (variable, value, why): the stack's settings besides DECISION_POLICY, as the docs list them.
STACK_SETTINGS = (
    ("PARAM_StreamMaximumRetryAttempts", "1", "a failing batch is dead-lettered after one retry (default 5)"),
    (
        "PARAM_ReconcileDelaySeconds",
        "0",
        "an answered session is due for reconciliation at once (default 900 s)",
    ),
    (
        "LOCAL_SCHEDULE_SECONDS",
        "0",
        "schedules run when the day says so (`kill -USR1` on `make local`), not by the clock",
    ),
)

# Fixed session ids: the docs stay the same from run to run.
MORNING_SESSION = "a3688874-6804-426d-9e93-028c48e33312"
MIDDAY_SESSIONS = ("28258185-7a07-470e-accb-fd252149fd35", "4fef9dd2-a16f-4e62-a2f5-6f2c0e3c9b7d")
AFTERNOON_SESSION = "331530bd-30ad-4549-b6f9-8f0f466edc65"
SESSIONS = (MORNING_SESSION, *MIDDAY_SESSIONS, AFTERNOON_SESSION)
AMOUNTS = {
    MORNING_SESSION: "2500.00",
    MIDDAY_SESSIONS[0]: "180.00",
    MIDDAY_SESSIONS[1]: "75.00",
    AFTERNOON_SESSION: "320.00",
}
OUTAGE = ["503"] * 40  # planned per endpoint: more than the outage's calls, cleared when Flinks recovers
REVIEW_REASON = "salary deposit verified by phone"

START_TIMEOUT_S = 90.0
STEP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


class DayError(RuntimeError):
    """The day did not go as scripted (a step timed out, a command failed): nothing is written."""


# -- normalizing what changes from run to run -----------------------------------------------------------

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _other_uuid(match: re.Match[str]) -> str:
    """A request id (any UUID that is not one of the day's fixed sessions)."""
    return match[0] if match[0] in SESSIONS else "<request-id>"


NORMALIZERS: tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    ("iso-time", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<time>"),
    ("console-clock", re.compile(r"^\d\d:\d\d:\d\d\.\d{3}(?= )", re.MULTILINE), "<clock>"),
    ("milliseconds", re.compile(r"\b\d+(?:\.\d+)? ms\b"), "<n> ms"),
    ("ms-column", re.compile(r"(?<=  )\d+$", re.MULTILINE), "<ms>"),
    ("sequence-number", re.compile(r"\b\d{15,}\b"), "<seq>"),
    ("request-id", re.compile(_UUID), _other_uuid),
    ("pid", re.compile(r"\b(pid|-USR1) \d+\b"), r"\1 <pid>"),
    ("port", re.compile(r"\b127\.0\.0\.1:\d+\b"), "127.0.0.1:<port>"),
)


def normalize(text: str) -> str:
    """``text`` with every NORMALIZERS pattern replaced by its placeholder, each line's end trimmed, and
    each console excerpt's lines in ``console_order``."""
    for _name, pattern, replacement in NORMALIZERS:
        text = pattern.sub(replacement, text)
    lines = [line.rstrip() for line in text.split("\n")]
    ordered: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("<clock> "):
            run.append(line)
            continue
        ordered += sorted(run, key=console_order)  # sorted() is stable: each thread's order is kept
        run = []
        ordered.append(line)
    return "\n".join(ordered[:-1])


def console_order(line: str) -> tuple[str, str]:
    """The console's threads (gateway, stream pump, flow monitor per session, topics, scheduler) print
    concurrently, so their interleaving changes from run to run; the order within each does not. A
    console excerpt is compared thread by thread: lines sorted by (component, session of a flow line)."""
    parts = line.split(maxsplit=2)
    component = parts[1] if len(parts) > 1 else ""
    session = re.search(_UUID, line) if component == "flow" else None
    return component, session[0] if session else ""


# -- the docs' generated blocks ---------------------------------------------------------------------------

_BLOCK = re.compile(
    r"<!-- day-in-the-life:begin (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- day-in-the-life:end -->", re.DOTALL
)


def blocks_of(document: str, path: Path, names: Iterable[str]) -> dict[str, re.Match[str]]:
    """The document's generated blocks, by name: exactly ``names``, each once."""
    found: dict[str, list[re.Match[str]]] = {}
    for match in _BLOCK.finditer(document):
        found.setdefault(match["name"], []).append(match)
    wanted = list(names)
    if sorted(found) != sorted(wanted) or any(len(matches) != 1 for matches in found.values()):
        counts = {name: len(matches) for name, matches in found.items()}
        raise DayError(f"{path}: expected one day-in-the-life block each of {wanted}, found {counts}")
    return {name: found[name][0] for name in wanted}


def replace_blocks(document: str, path: Path, bodies: Mapping[str, str]) -> str:
    """``document`` with each named block's body replaced (the text around the blocks is left alone)."""
    matches = blocks_of(document, path, bodies)
    for name in sorted(bodies, key=lambda name: matches[name].start(), reverse=True):
        match = matches[name]
        document = document[: match.start("body")] + bodies[name] + document[match.end("body") :]
    return document


def blocks_diff(document: str, path: Path, bodies: Mapping[str, str]) -> str:
    """A unified diff of the normalized blocks (committed -> this run); empty when they agree."""
    matches = blocks_of(document, path, bodies)

    def lines(body_of: Callable[[str], str]) -> list[str]:
        return [
            line for name in bodies for line in [f"[{name}]\n", *normalize(body_of(name)).splitlines(True)]
        ]

    committed, generated = lines(lambda name: matches[name]["body"]), lines(lambda name: bodies[name])
    name = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    return "".join(difflib.unified_diff(committed, generated, f"{name} (committed)", f"{name} (this run)"))


# -- the stack, as make local runs it ---------------------------------------------------------------------


def day_policy(template_path: Path = TEMPLATE_PATH) -> str:
    """The template's default decision policy plus ``LARGE_AMOUNT_RULE`` (and a name), as DECISION_POLICY."""
    template = load_template(template_path)
    policy = json.loads(template["Parameters"]["DecisionPolicy"]["Default"])
    policy |= {"name": POLICY_NAME, "version": POLICY_VERSION}  # so that `show` names it
    policy["rules"] = [*policy.get("rules", []), LARGE_AMOUNT_RULE]
    return json.dumps(policy, separators=(",", ":"))


def stack_environment(run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """make local's environment on a free port and our run folder, with the day's policy and settings."""
    return {
        **make_local_environment(environ, port=0, run_dir=run_dir),
        "DECISION_POLICY": day_policy(),
        **{name: value for name, value, _why in STACK_SETTINGS},
    }


class StackProcess:
    """``python -m geft_local.stack`` as a process; its stdout (the console) is read on a thread."""

    def __init__(self, run_dir: Path, environ: Mapping[str, str]) -> None:
        self.run_dir = run_dir
        self._environment = stack_environment(run_dir, environ)
        self.console = Console(stream=None, keep=None)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.state: dict[str, Any] = {}

    def start(self) -> None:
        self.spawn([sys.executable, "-m", "geft_local.stack"])
        if self.wait_for(READY_LINE, timeout=START_TIMEOUT_S) is None:
            raise DayError("make local did not get ready:\n" + self.tail())
        states = list(self.run_dir.glob("*/stack.json"))
        if len(states) != 1:
            raise DayError(f"expected one stack.json under {self.run_dir}, found {len(states)}")
        self.state = json.loads(states[0].read_text(encoding="utf-8"))

    def spawn(self, command: Sequence[str]) -> None:
        """Run ``command`` with the stack's environment, its output read into the console."""
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter
            command,
            cwd=REPO_ROOT,
            env=self._environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._process,), name="stack-console", daemon=True
        )
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.console.record(line.rstrip("\n"))

    @property
    def mark(self) -> int:
        """The index of the next console line (to read what a step printed)."""
        return len(self.console.lines())

    def wait_for(self, text: str, *, timeout: float, start: int = 0) -> str | None:
        """The first console line from ``start`` containing ``text``; None after ``timeout`` s or once
        the stack has exited and every line it printed has been read."""
        reader = self._reader
        return self.console.wait_for(
            text, timeout=timeout, start=start, gone=lambda: reader is None or not reader.is_alive()
        )

    def expect(self, text: str, *, start: int) -> str:
        line = self.wait_for(text, timeout=STEP_TIMEOUT_S, start=start)
        if line is None:
            raise DayError(f"the console never said {text!r}:\n{self.tail()}")
        return line

    def run_schedules(self) -> None:
        """What EventBridge would do at the next tick of every schedule: make local's SIGUSR1."""
        assert self._process is not None
        self._process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C, as an operator stops make local
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.console.lines()[-count:])


# -- the stack's tables ------------------------------------------------------------------------------------


class Tables:
    """Reads the stack's guarantees and audit tables (moto) to know when a step has settled."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self._dynamodb = EndpointSession(str(state["endpointUrl"])).client("dynamodb")
        self._guarantees = GuaranteeRepository(
            str(state["outputs"]["GuaranteesTableName"]),
            retention_days=1,
            actor=Actor.operator("day-in-the-life"),  # reads only
            client=self._dynamodb,
        )
        self._audit = str(state["outputs"]["AuditTableName"])

    def settled(self, session_id: str, status: str, *, final_status: bool = False) -> bool:
        """The session's guarantee is in ``status`` (and its final status recorded, if asked), and the
        audit trail has recorded every item's latest change (``show`` reads history from it)."""
        guarantees, session = self._guarantees.session_records(session_id)
        if [guarantee.status.value for guarantee in guarantees] != [status]:
            return False
        if final_status and session is None:
            return False
        recorded = {
            (record.record_key, record.change, record.at_ms)
            for record in session_history(self._dynamodb, self._audit, session_id)
        }
        latest = [
            (f"{GUARANTEE_SK_PREFIX}{guarantee.ref.guarantee_key}", guarantee.last_change)
            for guarantee in guarantees
        ]
        if session is not None:
            latest.append((SESSION_SK, session.last_change))
        return all(
            (record_key, change.kind.value, change.at_ms) in recorded
            for record_key, change in latest
            if change is not None and change.kind is not None
        )


# -- the day ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command as the docs show it, and what it printed."""

    command: str
    stdout: str

    def transcript(self) -> str:
        return f"$ {self.command}\n{self.stdout.rstrip()}"


@dataclass
class Day:
    """What the day produced: each command's output, by name, and each scene's console lines."""

    steps: dict[str, Step] = field(default_factory=dict)
    console: dict[str, list[str]] = field(default_factory=dict)

    def console_excerpt(self, scene: str) -> str:
        """The scene's console lines, without the containers' start-up chatter, trailing blanks cut."""
        lines = [line.rstrip() for line in self.console[scene] if _component(line) in EXCERPT_COMPONENTS]
        return "\n".join(lines)


EXCERPT_COMPONENTS = frozenset({"gateway", "flow", "stream", "review", "schedule"})
_CONSOLE_LINE = re.compile(r"^(?P<clock>\S+) (?P<component>\S+)(?: +(?P<message>.*))?$")


def _component(line: str) -> str | None:
    match = _CONSOLE_LINE.match(line)
    return match["component"] if match else None


class Player:
    """Plays the day against a running stack, as Flinks (sandbox and webhooks) and as the operator."""

    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.sandbox = SandboxAdmin(str(stack.state["flinksBaseUrl"]))
        self.tables = Tables(stack.state)
        self.day = Day()
        # What --local needs, as an operator's shell would have it: the run folder, nothing of ours.
        self._operator_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LOCAL_RUN_DIR": str(stack.run_dir),
        }

    def run(self, name: str, arguments: str) -> Step:
        """An operator's command, run exactly as shown: ``bin/geft-ops --local`` + ``arguments``."""
        command = f"{OPS} {arguments}"
        result = subprocess.run(  # noqa: S603 - our own CLI, split as a shell splits it
            shlex.split(command),
            cwd=REPO_ROOT,
            env=self._operator_env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise DayError(f"`{command}` exited {result.returncode}: {result.stderr.strip()}")
        step = Step(command, result.stdout)
        self.day.steps[name] = step
        return step

    def deliver(self, session_id: str, *, status: bool = False) -> None:
        """Flinks' guarantee webhook for the session's offer, signed with the stack's secret; with
        ``status``, its ``SessionSetupStatusChanged`` webhook with the status the sandbox has."""
        state = self.sandbox.session(session_id)
        body = guarantee_webhook_body(
            session_id, reference_id=state["referenceId"], amount=Decimal(AMOUNTS[session_id])
        )
        if status:
            body |= {
                "type": "SessionSetupStatusChanged",
                "status": state["status"],
                "statusDetails": state["statusDetails"],
            }
        url, secret = str(self.stack.state["webhookUrl"]), str(self.stack.state["webhookSecret"])
        result = emit_guarantee_webhook(url, secret, session_id, body=body)
        if not result.delivered:
            raise DayError(f"a webhook of {session_id} was not accepted: {result.attempts}")

    def wait_settled(self, session_id: str, status: str, *, final_status: bool = False) -> None:
        give_up_at = time.monotonic() + STEP_TIMEOUT_S
        while not self.tables.settled(session_id, status, final_status=final_status):
            if time.monotonic() >= give_up_at:
                raise DayError(f"{session_id} did not settle in {status}:\n{self.stack.tail()}")
            time.sleep(0.1)

    @contextmanager
    def scene(self, name: str) -> Iterator[None]:
        start = self.stack.mark
        yield
        self.day.console[name] = self.stack.console.lines(start)

    def play(self) -> Day:
        with self.scene("morning"):
            self.morning()
        with self.scene("midday"):
            self.midday()
        self.afternoon()
        for sid in SESSIONS:  # what the docs say: each guarantee was confirmed with Flinks once, accepted
            confirms = self.sandbox.session(sid)["confirms"]
            if confirms != [True]:
                raise DayError(f"{sid}: Flinks received confirms {confirms}, expected exactly one (true)")
        return self.day

    def morning(self) -> None:
        sid = MORNING_SESSION
        start = self.stack.mark
        self.sandbox.add_session({"session_id": sid, "amount": AMOUNTS[sid]})
        self.deliver(sid)
        self.stack.expect(f"decide {sid} reject", start=start)  # the review notice's last line
        self.wait_settled(sid, "REVIEW")
        self.run("review-list", "list --status REVIEW")
        self.run("decide", f'decide {sid} accept --reason "{REVIEW_REASON}" --operator m.tremblay')
        self.wait_settled(sid, "CONFIRMED")
        self.deliver(sid, status=True)
        self.wait_settled(sid, "CONFIRMED", final_status=True)
        self.stack.expect(f"{sid} session final status", start=start)
        self.run("morning-show", f"show {sid}")

    def midday(self) -> None:
        for sid in MIDDAY_SESSIONS:  # one after the other: each batch and its console lines stay apart
            start = self.stack.mark
            self.sandbox.add_session({"session_id": sid, "amount": AMOUNTS[sid]})
            self.sandbox.add_faults(sid, {"details": OUTAGE, "confirm": OUTAGE})
            self.deliver(sid)
            self.stack.expect("DLQ <-", start=start)
            self.stack.expect(f"{sid} attempt 2 failed", start=start)
            self.wait_settled(sid, "RECEIVED")  # released: nothing reached Flinks' confirm
        for sid in MIDDAY_SESSIONS:  # Flinks has recovered
            self.sandbox.clear_faults(sid)
        self.run("received-list", "list --status RECEIVED")
        self.run("redrive-dry-run", "redrive --dry-run")
        start = self.stack.mark
        self.run("redrive", "redrive")
        for sid in MIDDAY_SESSIONS:
            self.wait_settled(sid, "CONFIRMED")
            self.deliver(sid, status=True)
        for sid in MIDDAY_SESSIONS:
            self.wait_settled(sid, "CONFIRMED", final_status=True)
            self.stack.expect(f"{sid} session final status", start=start)
        self.run("since-list", "list --since 1h")

    def afternoon(self) -> None:
        sid = AFTERNOON_SESSION
        with self.scene("afternoon"):
            start = self.stack.mark
            self.sandbox.add_session({"session_id": sid, "amount": AMOUNTS[sid]})
            self.deliver(sid)
            self.wait_settled(sid, "CONFIRMED")
            self.stack.expect(f"{sid} decided accept", start=start)
            self.run("afternoon-before", f"show {sid}")  # no status webhook comes for this one
        with self.scene("reconciler"):
            start = self.stack.mark
            self.stack.run_schedules()  # the reconciler's next run (every 5 minutes)
            self.stack.expect("ReconcilerFunction (rate(", start=start)
            self.wait_settled(sid, "CONFIRMED", final_status=True)
            self.stack.expect(f"{sid} session final status", start=start)
            self.run("afternoon-after", f"show {sid}")


def play_day(environ: Mapping[str, str]) -> Day:
    with tempfile.TemporaryDirectory(prefix="geft-day-") as run_dir:
        stack = StackProcess(Path(run_dir), environ)
        try:
            stack.start()
            return Player(stack).play()
        finally:
            stack.stop()


# -- rendering the blocks ---------------------------------------------------------------------------------


def _settings(day: Day) -> str:
    policy = (
        f"- `DECISION_POLICY`: the template's default policy, named `{POLICY_NAME}` version"
        f" `{POLICY_VERSION}`, plus\n  `{json.dumps(LARGE_AMOUNT_RULE)}`"
    )
    return "\n".join([policy, *(f"- `{name}={value}`: {why}" for name, value, why in STACK_SETTINGS)]) + "\n"


def _steps(*names: str) -> Callable[[Day], str]:
    """The steps' transcripts, as one console block."""
    return lambda day: (
        "```console\n" + "\n\n".join(day.steps[name].transcript() for name in names) + "\n```\n"
    )


def _scene(scene: str) -> Callable[[Day], str]:
    """The scene's console excerpt."""
    return lambda day: "```\n" + day.console_excerpt(scene) + "\n```\n"


def _readme(day: Day) -> str:
    steps = day.steps
    blocks = [
        "# morning: the policy sent a 2,500.00 guarantee to review; an operator decides it",
        steps["review-list"].transcript(),
        steps["decide"].transcript(),
        "",
        "# midday: Flinks answered 503 for a while and two guarantees were dead-lettered; it has recovered",
        steps["redrive"].transcript(),
        steps["since-list"].transcript(),
        "",
        "# afternoon: a session's status webhook never came; the reconciler asked Flinks",
        steps["afternoon-after"].transcript(),
    ]
    return "```console\n" + "\n".join(blocks) + "\n```\n"


# Each document's generated blocks, in order: what the day printed (the prose around them is the docs').
BLOCKS: dict[Path, dict[str, Callable[[Day], str]]] = {
    OPERATIONS_DOC: {
        "settings": _settings,
        "morning-console": _scene("morning"),
        "morning-review": _steps("review-list", "decide"),
        "morning-show": _steps("morning-show"),
        "midday-console": _scene("midday"),
        "midday-redrive": _steps("received-list", "redrive-dry-run", "redrive", "since-list"),
        "afternoon-console": _scene("afternoon"),
        "afternoon-before": _steps("afternoon-before"),
        "reconciler-console": _scene("reconciler"),
        "afternoon-after": _steps("afternoon-after"),
    },
    README_DOC: {"readme-day": _readme},
}


# -- the command line -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geft_local.day_in_the_life", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks (the default)")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when the docs differ")
    args = parser.parse_args(argv)
    started = time.monotonic()
    documents = {path: path.read_text(encoding="utf-8") for path in BLOCKS}
    try:
        for path, document in documents.items():
            blocks_of(document, path, BLOCKS[path])  # both files have their markers before the day is played
        day = play_day(os.environ)
    except (DayError, OSError, ValueError) as error:  # the sandbox's admin API raises URLError, bad JSON
        print(f"day-in-the-life: {error}", file=sys.stderr)
        return 1
    bodies = {
        path: {name: render(day) for name, render in renders.items()} for path, renders in BLOCKS.items()
    }
    elapsed = f"{time.monotonic() - started:.0f} s"
    if args.check:
        diffs = "".join(blocks_diff(documents[path], path, blocks) for path, blocks in bodies.items())
        if diffs:
            sys.stderr.write(diffs)
            print(
                "day-in-the-life: the docs differ from a new run (above, normalized); "
                "`make day-in-the-life` rewrites them",
                file=sys.stderr,
            )
            return 1
        print(f"day-in-the-life: docs/operations.md and README.md tell the day as it ran ({elapsed})")
        return 0
    for path, blocks in bodies.items():
        path.write_text(replace_blocks(documents[path], path, blocks), encoding="utf-8")
    print(f"day-in-the-life: rewrote the blocks of docs/operations.md and README.md ({elapsed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
