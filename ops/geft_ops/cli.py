"""geft-ops: the operator's command line, against a deployed stack or the local stack.

Exit codes: 0 done, 1 the operation failed (not found, nothing to do, still in progress, AWS error),
2 bad usage. Every failure is one line on stderr, never a traceback (GEFT_OPS_DEBUG=1 shows one).
Where the stack is (``--stack NAME``, ``--local``, ``--local-state PATH``, ``--region``, ``--profile``)
and ``--json`` may come before or after the command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from geft_ops import commands, render
from geft_ops.resources import (
    ResourceLookupError,
    StackResources,
    locate,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SESSION_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DEFAULT_WINDOW = "30d"
_PROGRESS_EVERY = 10_000
_STATUSES = ("RECEIVED", "DECIDING", "REVIEW", "REVIEWED", "REDRIVE", "CONFIRMED", "FAILED")


class UsageError(Exception):
    """Bad usage found after parsing (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        if os.environ.get(variable) == "":  # set but empty (as make's test environment does): unset
            del os.environ[variable]
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error (or the help)
        return EXIT_USAGE if exit_.code else EXIT_OK
    try:
        return int(args.run(args))
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as error:
        _fail(str(error))
        return EXIT_USAGE
    except Exception as error:
        _fail(_one_line(error))
        if os.environ.get("GEFT_OPS_DEBUG"):
            traceback.print_exc()
        return EXIT_FAILED


def _one_line(error: BaseException) -> str:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415
    from geft.errors import GeftError  # noqa: PLC0415

    if isinstance(error, commands.OperationError | ResourceLookupError | GeftError):
        return str(error)
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"AWS refused: {info.get('Code', 'error')}: {info.get('Message', '')}".rstrip(": ")
    if isinstance(error, BotoCoreError):
        return f"AWS unreachable: {type(error).__name__}: {error}"
    if isinstance(error, OSError):
        return f"{error.strerror or type(error).__name__}: {error.filename or ''}".rstrip(": ")
    return f"unexpected error ({type(error).__name__}: {error}); GEFT_OPS_DEBUG=1 shows the traceback"


def _fail(message: str) -> None:
    print(f"geft-ops: {render.clean(message)}", file=sys.stderr)


# -- the parser ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, as every other failure is (argparse prints the whole usage
    first); ``--help`` still prints it. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {render.clean(message)} (see: {self.prog} --help)\n")


def _location_options(*, suppress: bool) -> _Parser:
    """Where the stack is and how to print: accepted before the command (defaults) and after it."""
    default: Callable[[Any], Any] = (lambda _: argparse.SUPPRESS) if suppress else (lambda value: value)
    options = _Parser(add_help=False)
    where = options.add_argument_group("where the stack is (one of)")
    where.add_argument("--stack", default=default(None), help="a deployed stack's name (its outputs)")
    where.add_argument(
        "--local", action="store_true", default=default(False), help="the running local stack (make local)"
    )
    where.add_argument(
        "--local-state", type=Path, default=default(None), metavar="PATH", help="a local stack's state file"
    )
    where.add_argument("--region", default=default(None), help="AWS region of the deployed stack")
    where.add_argument("--profile", default=default(None), help="AWS profile for the deployed stack")
    options.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    return options


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="geft-ops", description=__doc__.splitlines()[0], parents=[_location_options(suppress=False)]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, run: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text, parents=[_location_options(suppress=True)])
        child.set_defaults(run=run)
        return child

    listing = command("list", "guarantees, newest first", _list)
    listing.add_argument("--status", choices=_STATUSES)
    listing.add_argument("--decision", choices=["accept", "reject", "review"])
    listing.add_argument("--since", type=_since, help="e.g. 30m, 12h, 7d, or an ISO-8601 time")
    listing.add_argument("--limit", type=_positive, default=50)

    show = command("show", "a session's whole story: webhook, decision, review, confirm, history", _show)
    show.add_argument("session_id", metavar="SESSION")

    decide = command("decide", "decide a guarantee waiting for a person", _decide)
    decide.add_argument("session_id", metavar="SESSION")
    decide.add_argument("decision", choices=commands.REVIEW_DECISIONS)
    decide.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    decide.add_argument(
        "--operator", default=None, help="your name, shown next to your verified AWS identity"
    )
    decide.add_argument("--guarantee", default=None, help="the guarantee key, when a session has several")

    redrive = command("redrive", "send dead-lettered guarantees through the decision path again", _redrive)
    redrive.add_argument("--dry-run", action="store_true", help="show what would be redriven")
    redrive.add_argument("--max-messages", type=_positive, default=100)
    redrive.add_argument("--operator", default=None, help="your name, shown next to your AWS identity")

    replay = command("replay", "send a session's webhooks through the decision path again", _replay)
    replay.add_argument("session_id", metavar="SESSION")
    replay.add_argument("--operator", default=None, help="your name, shown next to your AWS identity")

    quarantine = command("quarantine", "signed bodies that could not be acted on", _usage_of("quarantine"))
    quarantine_sub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    quarantine_list = quarantine_sub.add_parser(
        "list", help="what is kept, newest last", parents=[_location_options(suppress=True)]
    )
    quarantine_list.set_defaults(run=_quarantine_list)
    quarantine_show = quarantine_sub.add_parser(
        "show", help="one body (account numbers masked)", parents=[_location_options(suppress=True)]
    )
    quarantine_show.add_argument("digest", metavar="DIGEST", help="its digest, or the first 8+ characters")
    quarantine_show.set_defaults(run=_quarantine_show)

    policy = command("policy", "decision policy tools", _usage_of("policy"))
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser(
        "check", help="validate a policy file offline", parents=[_location_options(suppress=True)]
    )
    check.add_argument("file", metavar="FILE", type=Path)
    check.add_argument("--facts", metavar="JSON", help='facts to decide, e.g. \'{"amount": "100.00"}\'')
    check.set_defaults(run=_policy_check)
    review = command("review", "how reviews are answered", _usage_of("review"))
    _policy_lab_parsers(
        policy_sub, review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    )

    sign = command("sign", "the X-Webhook-Signature Flinks would send for a body (testing)", _sign)
    sign.add_argument("file", nargs="?", default="-", metavar="FILE", help="the body (default: stdin)")
    sign.add_argument(
        "--secret", default=None, help="the webhook secret (default: the local stack's, or $WEBHOOK_SECRET)"
    )

    command("env", "shell variables for the local stack: WEBHOOK_URL, WEBHOOK_SECRET, SANDBOX", _env)
    return parser


def _policy_lab_parsers(policy_sub: Any, review_sub: Any) -> None:
    """``policy backtest``, ``policy shadow-report`` and ``review stats``: they read, never write."""
    backtest = policy_sub.add_parser(
        "backtest",
        help="re-decide past guarantees' recorded facts with a candidate policy (reads only)",
        parents=[_location_options(suppress=True)],
    )
    backtest.add_argument("file", metavar="FILE", type=Path, help="the candidate policy")
    _window_options(backtest)
    backtest.add_argument(
        "--status", nargs="+", action="extend", choices=_STATUSES, metavar="S", help="only these statuses"
    )
    backtest.add_argument(
        "--show-changed", type=_positive, default=0, metavar="N", help="list the N newest changed decisions"
    )
    backtest.set_defaults(run=_policy_backtest)
    shadow = policy_sub.add_parser(
        "shadow-report",
        help="how the shadow policy's decisions compare with the live ones",
        parents=[_location_options(suppress=True)],
    )
    _window_options(shadow)
    shadow.add_argument("--limit", type=_positive, default=20, help="disagreements listed (newest first)")
    shadow.set_defaults(run=_policy_shadow_report)

    stats = review_sub.add_parser(
        "stats",
        help="the queue now; time to answer, timeouts, reviewers and overturns",
        parents=[_location_options(suppress=True)],
    )
    _window_options(stats, until=False)
    stats.add_argument(
        "--fallback",
        choices=commands.REVIEW_DECISIONS,
        default="reject",
        help="the stack's ReviewFallbackDecision (default reject, the template's): an answer that differs "
        "from it overturns the review",
    )
    stats.set_defaults(run=_review_stats)


def _window_options(parser: argparse.ArgumentParser, *, until: bool = True) -> None:
    parser.add_argument(
        "--since", type=_since, default=None, help="received since: 30m, 12h, 7d or ISO-8601 (default 30d)"
    )
    if until:
        parser.add_argument("--until", type=_since, default=None, help="received until: ISO-8601 (or 2h)")


def _usage_of(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise UsageError(f"{name} needs an action")

    return run


# -- commands -----------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from geft.models import GuaranteeStatus, Verdict  # noqa: PLC0415

    views = commands.list_guarantees(
        _repository(args),
        status=GuaranteeStatus(args.status) if args.status else None,
        decision=Verdict(args.decision) if args.decision else None,
        since_ms=args.since,
        limit=args.limit,
    )
    rows = [commands.guarantee_row(view) for view in views]
    columns = (
        "sessionId",
        "guaranteeKey",
        "status",
        "decision",
        "rule",
        "reason",
        "receivedAt",
        "webhookToConfirmMs",
    )
    _emit(args, rows, lambda: render.table(rows, columns) if rows else "no guarantees match")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    resources = _resources(args)
    session_id = _session_id(args.session_id)
    story = commands.session_story(
        _repository(args, resources), commands.read_history(resources, session_id), session_id
    )
    _emit(args, story, lambda: render.story(story))
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    from geft.models import Verdict  # noqa: PLC0415

    reason = args.reason.strip()
    if not reason:
        raise UsageError("--reason must say why")
    resources = _resources(args)
    repository = _repository(args, resources, as_operator=True)
    ref = commands.decide(
        repository,
        _session_id(args.session_id),
        verdict=Verdict(args.decision),
        reason=reason,
        guarantee_key=args.guarantee,
    )
    result = {"sessionId": ref.session_id, "guaranteeKey": ref.guarantee_key, "decision": args.decision}
    _emit(args, result, lambda: f"{ref.session_id}: {args.decision} recorded; the processor confirms it")
    return EXIT_OK


def _redrive(args: argparse.Namespace) -> int:
    resources = _resources(args)
    repository = _repository(args, resources, as_operator=not args.dry_run)
    results = commands.redrive_dead_letters(
        resources, repository, dry_run=args.dry_run, max_messages=args.max_messages
    )
    rows = [_result_row(result) for result in results]
    _emit(
        args,
        rows,
        lambda: (
            render.table(rows, ("session_id", "guarantee_key", "result"))
            if rows
            else "DLQ is empty: nothing to do"
        ),
    )
    if not results:
        return EXIT_FAILED  # nothing to do
    unsettled = [row for row, result in zip(rows, results, strict=True) if not result.result.settled]
    return EXIT_FAILED if unsettled and not args.dry_run else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    resources = _resources(args)
    results = commands.replay(_repository(args, resources, as_operator=True), _session_id(args.session_id))
    rows = [_result_row(result) for result in results]
    _emit(args, rows, lambda: render.table(rows, ("session_id", "guarantee_key", "result")))
    sent = {commands.Resent.REDRIVEN, commands.Resent.STORED_FROM_QUARANTINE}
    return EXIT_OK if any(result.result in sent for result in results) else EXIT_FAILED


def _quarantine_list(args: argparse.Namespace) -> int:
    rows = commands.quarantine_list(_repository(args))
    for row in rows:
        row["digest"] = row["digest"][:16]
    _emit(
        args,
        rows,
        lambda: (
            render.table(rows, ("digest", "receivedAt", "reason", "sessionId", "bytes"))
            if rows
            else "quarantine is empty"
        ),
    )
    return EXIT_OK


def _quarantine_show(args: argparse.Namespace) -> int:
    entry = commands.quarantine_show(_repository(args), args.digest)

    def text() -> str:
        body = entry["body"]
        shown = render.as_json(body) if not isinstance(body, str) else render.clean(body)
        return "\n".join(
            [
                f"digest    {render.clean(entry['digest'])}",
                f"received  {render.clean(entry['receivedAt'])}",
                f"reason    {render.clean(entry['reason'])}",
                f"session   {render.clean(entry['sessionId'])}",
                f"body      {entry['bytes']} bytes, account numbers masked:",
                shown,
            ]
        )

    _emit(args, entry, text)
    return EXIT_OK


def _policy_check(args: argparse.Namespace) -> int:
    from geft.policy import encode_json  # noqa: PLC0415

    facts: object = None
    if args.facts is not None:
        try:
            facts = json.loads(args.facts, parse_float=Decimal)
        except ValueError as error:
            raise UsageError(f"--facts is not valid JSON: {error}") from error
        if not isinstance(facts, dict):
            raise UsageError("--facts must be a JSON object")
    policy = _read_policy(args.file)
    if policy is None:
        return EXIT_FAILED
    identity = policy.identity
    print(f"OK: {identity.label()}: {len(policy.rules)} rules, default {policy.default}")
    for warning in policy.warnings:
        print(f"warning: {warning}")
    if isinstance(facts, dict):
        decision = policy.decide(facts)
        print(
            encode_json(
                {
                    "decision": decision.verdict.value,
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "missingFacts": list(decision.missing_facts),
                    "inputs": decision.inputs,
                }
            )
        )
    return EXIT_OK


def _read_policy(path: Path) -> Any:
    """The validated policy in ``path``, or None once its problems are on stderr."""
    from geft.errors import PolicyError  # noqa: PLC0415
    from geft.policy import DecisionPolicy  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from error
    try:
        return DecisionPolicy.from_json(text)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return None


def _policy_backtest(args: argparse.Namespace) -> int:
    from geft.models import GuaranteeStatus  # noqa: PLC0415

    from geft_ops import policy_lab  # noqa: PLC0415

    policy = _read_policy(args.file)
    if policy is None:
        return EXIT_FAILED
    statuses = frozenset(GuaranteeStatus(status) for status in args.status or ())
    window, history = _history(args, statuses=statuses)
    report = {
        "window": window,
        **policy_lab.backtest(
            history.guarantees, history.final_statuses, policy, show_changed=args.show_changed
        ),
    }
    _emit(args, report, lambda: render.backtest(report))
    return EXIT_OK


def _policy_shadow_report(args: argparse.Namespace) -> int:
    from geft_ops import policy_lab  # noqa: PLC0415

    window, history = _history(args)
    report = {
        "window": window,
        **policy_lab.shadow_report(history.guarantees, history.final_statuses, limit=args.limit),
    }
    _emit(args, report, lambda: render.shadow_report(report))
    return EXIT_OK


def _review_stats(args: argparse.Namespace) -> int:
    from geft.models import GuaranteeStatus, Verdict  # noqa: PLC0415

    from geft_ops import policy_lab  # noqa: PLC0415

    # the queue as it stands, whenever its guarantees came in, and the window's answered reviews
    window, history = _history(args, also_statuses=frozenset({GuaranteeStatus.REVIEW}))
    stats = {
        "window": window,
        **policy_lab.review_stats(
            history.guarantees,
            now_ms=commands.now_ms(),
            since_ms=window["sinceMs"],
            fallback=Verdict(args.fallback),
        ),
    }
    unlike = sorted(set(stats["timeoutVerdicts"]) - {args.fallback})
    if unlike:
        print(
            f"geft-ops: the review timeout answered {', '.join(unlike)} in this window, not --fallback "
            f"{args.fallback}: is --fallback the stack's ReviewFallbackDecision?",
            file=sys.stderr,
        )
    _emit(args, stats, lambda: render.review_stats(stats))
    return EXIT_OK


def _history(args: argparse.Namespace, **selection: Any) -> tuple[dict[str, Any], Any]:
    """The window the options name (default: the last 30 days) and one read-only scan of it."""
    from geft_ops.decision_history import Window, read_history  # noqa: PLC0415

    since = args.since if args.since is not None else _since(_DEFAULT_WINDOW)
    until = getattr(args, "until", None)
    if until is not None and until < since:
        raise UsageError("--until is before --since")
    window = Window(since_ms=since, until_ms=until, **selection)
    resources = _resources(args)
    progress = _ScanProgress()
    history = read_history(
        resources.client("dynamodb"), resources.output("GuaranteesTableName"), window, progress=progress
    )
    progress.done()
    described = {
        "since": commands.iso(since),
        "until": commands.iso(until),
        "statuses": sorted(window.statuses),
        "sinceMs": since,
        "scannedItems": history.scanned,
    }
    return described, history


class _ScanProgress:
    """Scan progress on stderr, so stdout stays the report: on a terminal one line rewritten after every
    page (about 1,000 items), otherwise a line every 10,000 items; nothing for a one-page table."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._shown = 0
        self._pages = 0

    def __call__(self, scanned: int, kept: int) -> None:
        self._pages += 1
        line = f"scanned {scanned:,} items, {kept:,} guarantees so far"
        if self._tty and self._pages > 1:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif not self._tty and scanned // _PROGRESS_EVERY > self._shown // _PROGRESS_EVERY:
            print(line, file=sys.stderr, flush=True)
        self._shown = scanned

    def done(self) -> None:
        if self._tty and self._pages > 1:
            print(file=sys.stderr)


def _sign(args: argparse.Namespace) -> int:
    from geft.signature import compute_signature  # noqa: PLC0415

    secret = args.secret
    if not secret and _wants_local(args):
        secret = str(_resources(args).local.get("webhookSecret") or "")
    secret = secret or os.environ.get("WEBHOOK_SECRET")
    if not secret:
        raise UsageError("give --secret, use --local (the local stack's secret) or set WEBHOOK_SECRET")
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror}") from error
    print(compute_signature(body, secret))
    return EXIT_OK


def _env(args: argparse.Namespace) -> int:
    if not _wants_local(args):
        raise UsageError("env describes a local stack: use --local (or --local-state PATH)")
    state = _resources(args).local
    values = {
        "WEBHOOK_URL": state.get("webhookUrl"),
        "WEBHOOK_SECRET": state.get("webhookSecret"),
        "SANDBOX": state.get("flinksBaseUrl"),
    }
    import shlex  # noqa: PLC0415

    _emit(
        args,
        values,
        lambda: "\n".join(f"export {name}={shlex.quote(str(value))}" for name, value in values.items()),
    )
    return EXIT_OK


# -- plumbing -----------------------------------------------------------------------------------------


def _wants_local(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "local", False) or getattr(args, "local_state", None))


def _resources(args: argparse.Namespace) -> StackResources:
    cached: StackResources | None = getattr(args, "_resources", None)
    if cached is not None:
        return cached
    chosen = [name for name, given in (("--stack", args.stack), ("--local", _wants_local(args))) if given]
    if len(chosen) > 1:
        raise UsageError("give --stack or --local, not both")
    if not chosen:
        raise UsageError("say where the stack is: --stack NAME (deployed) or --local (make local)")
    local_state = getattr(args, "local_state", None)
    resources = locate(args.stack, region=args.region, profile=args.profile, local_state=local_state)
    args._resources = resources
    return resources


def _repository(
    args: argparse.Namespace, resources: StackResources | None = None, *, as_operator: bool = False
) -> Any:
    from geft.models import Actor  # noqa: PLC0415
    from geft.repository import GuaranteeRepository  # noqa: PLC0415

    resources = resources or _resources(args)
    actor = (
        Actor.operator(resources.caller_identity(), getattr(args, "operator", None))
        if as_operator
        else Actor("operator:read-only")
    )
    return GuaranteeRepository(
        resources.output("GuaranteesTableName"),
        retention_days=int(resources.outputs.get("RetentionDays", "400")),
        actor=actor,
        client=resources.client("dynamodb"),
    )


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(render.as_json(data) if args.json else text())


def _result_row(result: commands.RedriveResult) -> dict[str, Any]:
    return {**asdict(result), "result": result.result.value}


def _session_id(value: str) -> str:
    if not _SESSION_ID.fullmatch(value):
        raise UsageError(f"{value!r} is not a session id (a UUID)")
    return value.lower()


def _since(value: str) -> int:
    match = _DURATION.fullmatch(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match[2]]: int(match[1])})
        return int((datetime.now(UTC) - delta).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: use 30m, 12h, 7d or an ISO-8601 time") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
