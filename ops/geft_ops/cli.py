"""geft-ops: the operator's command line, against a deployed stack or the local stack.

Exit codes: 0 done, 1 the operation failed (not found, nothing to do, AWS error), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from geft_ops import commands
from geft_ops.resources import (
    DEFAULT_LOCAL_STATE,
    ResourceLookupError,
    StackResources,
    from_local_state,
    from_stack,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error (or the help)
        return EXIT_USAGE if exit_.code else EXIT_OK
    try:
        return int(args.run(args))
    except (commands.OperationError, ResourceLookupError) as error:
        print(f"geft-ops: {error}", file=sys.stderr)
        return EXIT_FAILED
    except _UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"geft-ops: {error}", file=sys.stderr)
        return EXIT_USAGE


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geft-ops", description=__doc__.splitlines()[0])
    where = parser.add_argument_group("where the stack is (one of)")
    where.add_argument("--stack", help="a deployed stack's name (resources from its outputs)")
    where.add_argument(
        "--local",
        nargs="?",
        const=str(DEFAULT_LOCAL_STATE),
        metavar="STATE_FILE",
        help=f"the local stack (`make local`), from its state file (default {DEFAULT_LOCAL_STATE})",
    )
    where.add_argument("--region", help="AWS region of the deployed stack")
    where.add_argument("--profile", help="AWS profile for the deployed stack")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="guarantees, newest first")
    listing.add_argument("--status", choices=[s.value for s in _statuses()])
    listing.add_argument("--decision", choices=["accept", "reject", "review"])
    listing.add_argument("--since", type=_since, help="e.g. 30m, 12h, 7d, or an ISO-8601 time")
    listing.add_argument("--limit", type=_positive, default=50)
    listing.set_defaults(run=_list)

    show = sub.add_parser("show", help="a session's whole history")
    show.add_argument("session_id", metavar="SESSION")
    show.set_defaults(run=_show)

    decide = sub.add_parser("decide", help="decide a guarantee waiting for manual review")
    decide.add_argument("session_id", metavar="SESSION")
    decide.add_argument("decision", choices=commands.REVIEW_DECISIONS)
    decide.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    decide.add_argument("--operator", default=None, help="who decides (default: your user name)")
    decide.add_argument("--guarantee", default=None, help="the guarantee key, when a session has several")
    decide.set_defaults(run=_decide)

    redrive = sub.add_parser("redrive", help="send dead-lettered guarantees through the decision path again")
    redrive.add_argument("--dry-run", action="store_true", help="show what would be redriven")
    redrive.add_argument("--max-messages", type=_positive, default=100)
    redrive.set_defaults(run=_redrive)

    replay = sub.add_parser("replay", help="send a session's stored webhook through the decision path again")
    replay.add_argument("session_id", metavar="SESSION")
    replay.set_defaults(run=_replay)

    policy = sub.add_parser("policy", help="decision policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser("check", help="validate a policy file offline")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=_policy_check)

    sign = sub.add_parser("sign", help="sign a body as Flinks would (for testing)")
    sign.add_argument("file", nargs="?", default="-", metavar="FILE", help="the body (default: stdin)")
    sign.add_argument("--secret", default=None, help="the webhook secret (default: $GEFT_WEBHOOK_SECRET)")
    sign.set_defaults(run=_sign)
    return parser


# -- commands -----------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    rows = commands.list_guarantees(
        _repository(args),
        status=args.status,
        decision=args.decision,
        since_ms=args.since,
        limit=args.limit,
    )
    columns = ("sessionId", "status", "decision", "rule", "receivedAt", "webhookToConfirmMs")
    _emit(args, rows, lambda: _table(rows, columns) if rows else "no guarantees match")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    session = commands.show_session(_repository(args), _session_id(args.session_id))

    def text() -> str:
        lines = [f"session {session['sessionId']}"]
        for guarantee in session["guarantees"]:
            lines.append(f"  guarantee {guarantee['guaranteeKey']}: {guarantee['status']}")
            lines.extend(f"    {e['at']}  {e['event']:<10} {e['detail']}" for e in guarantee["history"])
        final = session["finalStatus"]
        lines.append(
            f"  final status: {final['status']} {final['details'] or ''} ({final['source']}, {final['at']})"
            if final
            else "  final status: unknown yet"
        )
        return "\n".join(lines)

    _emit(args, session, text)
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise _UsageError("--reason must say why")
    operator = (args.operator or _current_user()).strip()
    if not operator:
        raise _UsageError("--operator is required when your user name is unknown")
    result = commands.decide(
        _repository(args),
        _session_id(args.session_id),
        decision=args.decision,
        reason=reason,
        operator=operator,
        guarantee_key=args.guarantee,
    )
    _emit(
        args,
        result,
        lambda: f"{result['sessionId']}: {result['decision']} recorded; the processor confirms it",
    )
    return EXIT_OK


def _redrive(args: argparse.Namespace) -> int:
    resources = _resources(args)
    results = commands.redrive_dead_letters(
        resources, _repository(args, resources), dry_run=args.dry_run, max_messages=args.max_messages
    )
    rows = [asdict(result) for result in results]
    _emit(
        args,
        rows,
        lambda: _table(rows, ("session_id", "guarantee_key", "result")) if rows else "DLQ is empty",
    )
    return EXIT_FAILED if any(r.result == "missing" for r in results) else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    results = commands.replay(_repository(args), _session_id(args.session_id))
    rows = [asdict(result) for result in results]
    _emit(args, rows, lambda: _table(rows, ("session_id", "guarantee_key", "result")))
    return EXIT_OK


def _policy_check(args: argparse.Namespace) -> int:
    from geft.policy import main as policy_main  # noqa: PLC0415

    return policy_main(["check", args.file])


def _sign(args: argparse.Namespace) -> int:
    from geft.signature import compute_signature  # noqa: PLC0415

    secret = args.secret or os.environ.get("GEFT_WEBHOOK_SECRET")
    if not secret:
        raise _UsageError("give --secret or set GEFT_WEBHOOK_SECRET")
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise _UsageError(f"cannot read {args.file}: {error.strerror}") from error
    print(compute_signature(body, secret))
    return EXIT_OK


# -- plumbing -----------------------------------------------------------------------------------------


def _resources(args: argparse.Namespace) -> StackResources:
    if args.stack and args.local:
        raise _UsageError("give --stack or --local, not both")
    if args.stack:
        return from_stack(args.stack, region=args.region, profile=args.profile)
    if args.local:
        return from_local_state(Path(args.local))
    raise _UsageError("say where the stack is: --stack NAME (deployed) or --local (make local)")


def _repository(args: argparse.Namespace, resources: StackResources | None = None) -> Any:
    from geft.repository import GuaranteeRepository  # noqa: PLC0415

    resources = resources or _resources(args)
    return GuaranteeRepository(
        resources.output("GuaranteesTableName"), retention_days=365, client=resources.client("dynamodb")
    )


def _emit(args: argparse.Namespace, data: Any, text: Any) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text())


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _session_id(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value):
        raise _UsageError(f"{value!r} is not a session id (a UUID)")
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


def _statuses() -> list[Any]:
    from geft.models import GuaranteeStatus  # noqa: PLC0415

    return list(GuaranteeStatus)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""
