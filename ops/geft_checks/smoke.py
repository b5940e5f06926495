"""``make smoke``: a short suite against a deployed stack (or the local one), the first thing to run
after ``sam deploy``. Each check prints one PASS/FAIL line with what it saw; exit 1 if any failed.

* ``bad-signature``: one delivery to ``WebhookUrl`` signed with a secret nobody has gets the receiver's
  401 refusal (a code and a request id, nothing else), and nothing is stored: no item under its session
  id, no quarantined copy of its body. The body is deliberately not shaped like a G-EFT webhook (its
  synthetic ``smoke-test-...`` session id is no UUID), as the pre-traffic probe's: a smoke test must
  never page anyone through SignatureRejected, and even a broken receiver could not turn it into a
  guarantee the processor would take to Flinks.
* ``alarms``: every alarm the stack owns exists in CloudWatch and none is in ALARM.
* ``dashboard``: the stack's dashboard exists and is valid JSON.
* ``stream-mapping``: the table stream's mapping to the processor invokes ``DecisionProcessorLiveAliasArn``
  (the ``live`` alias CodeDeploy moves, never ``$LATEST`` or a pinned version), every other mapping on
  the stream invokes its function's ``live`` alias, and none is disabled.

What the stack owns comes from CloudFormation (``list-stack-resources``, or the local stack's copy of
it), not from a name prefix: a prefix also matches another stack whose name starts the same
(``geft`` and ``geft-prod``) and misses a resource someone named otherwise.

Read-only by construction, apart from that one POST: every AWS client comes from a session that
refuses, before sending it, any call outside ``READ_OPERATIONS`` (``forbid_writes``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from geft_ops.render import clean
from geft_ops.resources import (
    ResourceLookupError,
    StackResources,
    locate,
)

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
READ_OPERATIONS: Final[dict[str, frozenset[str]]] = {
    "cloudformation": frozenset({"DescribeStacks", "ListStackResources"}),
    "cloudwatch": frozenset({"DescribeAlarms", "GetDashboard"}),
    "dynamodb": frozenset({"Query", "GetItem"}),
    "lambda": frozenset({"ListEventSourceMappings", "GetAlias"}),
}
"""Every AWS call the smoke test may make: all of them read."""
ALARM_TYPES: Final = frozenset({"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"})
DASHBOARD_TYPE: Final = "AWS::CloudWatch::Dashboard"
LIVE_ALIAS: Final = "live"
USER_AGENT: Final = "geft-smoke-test"
SESSION_ID_PREFIX: Final = "smoke-test-"
_DISABLED_STATES: Final = frozenset({"Disabled", "Disabling", "Deleting"})
_REFUSAL_KEYS: Final = frozenset({"code", "requestId"})


class ReadOnlyViolationError(RuntimeError):
    """The smoke test tried an AWS call that is not a read; it was not sent."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    saw: str

    def line(self, width: int) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name.ljust(width)}  {clean(self.saw)}"


Check = Callable[[StackResources], CheckResult]


def forbid_writes(session: Any) -> None:
    """Make every client ``session`` creates from now on refuse calls outside ``READ_OPERATIONS``."""

    def refuse(model: Any, **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        if operation not in READ_OPERATIONS.get(service, frozenset()):
            raise ReadOnlyViolationError(f"{service} {operation} is not a read: refused, nothing was sent")

    session.events.register("before-call", refuse, unique_id="geft-smoke-read-only")


# -- the checks -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmokeDelivery:
    """The one wrongly signed delivery: a synthetic session id, its body and a signature of it under a
    secret drawn here and thrown away."""

    session_id: str
    body: bytes
    signature: str

    @classmethod
    def new(cls, now: datetime) -> SmokeDelivery:
        from geft.signature import compute_signature  # noqa: PLC0415

        session_id = SESSION_ID_PREFIX + secrets.token_hex(12)
        document = {
            "type": "SmokeTest",
            "sessionId": session_id,
            "when": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "purpose": "make smoke: a wrongly signed delivery must get 401 and store nothing",
        }
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return cls(session_id, body, compute_signature(body, secrets.token_urlsafe(32)))


def bad_signature_rejected(resources: StackResources, *, timeout: float = 15.0) -> CheckResult:
    import requests  # noqa: PLC0415

    url = resources.output("WebhookUrl")
    delivery = SmokeDelivery.new(datetime.now(UTC))
    started = time.monotonic()
    response = requests.post(
        url,
        data=delivery.body,
        headers={
            "content-type": "application/json",
            "x-webhook-signature": delivery.signature,
            "user-agent": USER_AGENT,
        },
        timeout=(5.0, timeout),
        allow_redirects=False,
    )
    elapsed_ms = round((time.monotonic() - started) * 1000)
    problems = _refusal_problems(response.status_code, response.text)
    stored = _stored(resources, delivery)
    if stored:
        problems.append(f"stored {' and '.join(stored)}")
    answer = f"{response.status_code} in {elapsed_ms} ms"
    if not problems:
        return CheckResult(
            "bad-signature",
            True,
            f"wrongly signed POST to {url}: {answer}, invalid_signature; nothing stored for session "
            f"{delivery.session_id}",
        )
    return CheckResult(
        "bad-signature", False, f"wrongly signed POST to {url}: {answer}: {'; '.join(problems)}"
    )


def _refusal_problems(status: int, text: str) -> list[str]:
    if status != 401:
        return [_wrong_status(status)]
    try:
        document = json.loads(text)
        error = document["error"]
    except (ValueError, TypeError, KeyError):
        return ["401 without the receiver's refusal body"]
    if not isinstance(error, dict) or error.get("code") != "invalid_signature":
        return [f"401 with another refusal than invalid_signature: {text[:200]}"]
    extra = sorted((set(document) - {"error"}) | (set(error) - _REFUSAL_KEYS))
    if extra:
        return [f"the refusal tells an unauthenticated caller more than a code and a request id: {extra}"]
    return []


def _wrong_status(status: int) -> str:
    if 200 <= status < 300:
        return "a wrongly signed delivery was accepted: signature checking is broken"
    if status == 403:
        return "403: AllowedSourceCidrs refuses this machine; run the smoke test from an allowed network"
    if status >= 500:
        return f"{status}: the receiver cannot read its secret or table (its log says which)"
    return f"{status} instead of 401 (is WebhookUrl this stack's webhook route?)"


def _stored(resources: StackResources, delivery: SmokeDelivery) -> list[str]:
    """What the table holds for the delivery: items under its session id, a quarantined copy of it."""
    from geft.models import Actor  # noqa: PLC0415
    from geft.repository import GuaranteeRepository  # noqa: PLC0415

    repository = GuaranteeRepository(
        resources.output("GuaranteesTableName"),
        retention_days=int(resources.outputs.get("RetentionDays", "400")),
        actor=Actor("operator:smoke-test"),
        client=resources.client("dynamodb"),
    )
    guarantees, status = repository.session_records(delivery.session_id)
    found = [f"{len(guarantees)} guarantee item(s)"] if guarantees else []
    if status is not None:
        found.append("a session status item")
    if repository.quarantined_body(hashlib.sha256(delivery.body).hexdigest()) is not None:
        found.append("a quarantined copy of the body")
    return found


def alarms_quiet(resources: StackResources) -> CheckResult:
    owned = sorted(
        {row.physical_id for row in resources.stack_resources() if row.resource_type in ALARM_TYPES}
    )
    if not owned:
        return CheckResult("alarms", False, "the stack owns no alarms")
    states: dict[str, str] = {}
    pages = resources.client("cloudwatch").get_paginator("describe_alarms")
    for batch in _chunks(owned, 100):
        for page in pages.paginate(AlarmNames=batch, AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                states[alarm["AlarmName"]] = alarm["StateValue"]
    missing = [name for name in owned if name not in states]
    firing = sorted(name for name, state in states.items() if state == "ALARM")
    counts = ", ".join(f"{count} {state}" for state, count in sorted(Counter(states.values()).items()))
    problems = []
    if missing:
        problems.append(f"missing from CloudWatch: {', '.join(missing)}")
    if firing:
        problems.append(f"in ALARM: {', '.join(firing)}")
    saw = f"{len(owned)} alarms owned by the stack ({counts or 'none found'})"
    return CheckResult(
        "alarms", not problems, f"{saw}: {'; '.join(problems)}" if problems else f"{saw}, none in ALARM"
    )


def dashboard_exists(resources: StackResources) -> CheckResult:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    names = sorted({row.physical_id for row in resources.stack_resources(DASHBOARD_TYPE)})
    if not names:
        return CheckResult("dashboard", False, "the stack owns no dashboard")
    cloudwatch = resources.client("cloudwatch")
    seen, problems = [], []
    for name in names:
        try:
            body = cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFound":
                raise
            problems.append(f"{name} does not exist")
            continue
        try:
            widgets = json.loads(body).get("widgets", [])
        except (ValueError, AttributeError):
            problems.append(f"{name}'s body is not a JSON object")
            continue
        seen.append(f"{name} ({len(widgets)} widgets)")
        if not widgets:
            problems.append(f"{name} has no widgets")
    return CheckResult("dashboard", not problems, "; ".join([*seen, *problems]))


def stream_invokes_live_alias(resources: StackResources) -> CheckResult:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    stream = resources.output("GuaranteesTableStreamArn")
    processor = resources.output("DecisionProcessorFunctionName")
    live = resources.output("DecisionProcessorLiveAliasArn")
    lambda_client = resources.client("lambda")
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream)
    mappings = [mapping for page in pages for mapping in page.get("EventSourceMappings", [])]
    problems: list[str] = []
    if _qualifier(live) != LIVE_ALIAS:
        problems.append(f"DecisionProcessorLiveAliasArn is {live}, not a {LIVE_ALIAS} alias")
    try:
        version = lambda_client.get_alias(FunctionName=processor, Name=LIVE_ALIAS)["FunctionVersion"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        version = None
        problems.append(f"the processor has no {LIVE_ALIAS} alias")
    if not any(_function_name(mapping["FunctionArn"]) == processor for mapping in mappings):
        problems.append("no mapping on the table's stream invokes the processor")
    seen = []
    for mapping in mappings:
        arn, state = mapping["FunctionArn"], mapping.get("State", "?")
        is_processor = _function_name(arn) == processor
        target = _invoked(arn) + (f" = version {version}" if is_processor and arn == live and version else "")
        seen.append(f"{'processor' if is_processor else 'also'} invokes {target} ({state})")
        if is_processor and arn != live:
            problems.append(f"the processor's mapping invokes {_invoked(arn)}, not {live}")
        elif _qualifier(arn) != LIVE_ALIAS:
            problems.append(f"a mapping invokes {_invoked(arn)}, not its function's {LIVE_ALIAS} alias")
        if state in _DISABLED_STATES:
            problems.append(f"the mapping to {_invoked(arn)} is {state}: its records wait on the stream")
    saw = "; ".join(seen) or "no mapping on the table's stream"
    return CheckResult("stream-mapping", not problems, f"{saw}: {'; '.join(problems)}" if problems else saw)


CHECKS: Final[tuple[tuple[str, Check], ...]] = (
    ("bad-signature", bad_signature_rejected),
    ("alarms", alarms_quiet),
    ("dashboard", dashboard_exists),
    ("stream-mapping", stream_invokes_live_alias),
)


def run_checks(resources: StackResources, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[CheckResult]:
    """Every check, each on its own: one that raises fails with what went wrong, the others still run."""
    results = []
    for name, check in checks:
        try:
            results.append(check(resources))
        except Exception as error:  # any error is that check's failure, told in one line
            results.append(CheckResult(name, False, _one_line(error)))
    return results


def _one_line(error: BaseException) -> str:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"AWS refused: {info.get('Code', 'error')}: {info.get('Message', '')}".rstrip(": ")
    if isinstance(error, BotoCoreError | OSError):
        return f"unreachable: {type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


# -- the command -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        if os.environ.get(variable) == "":  # set but empty (make's test environment): unset
            del os.environ[variable]
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_PASSED
    given = [
        flag
        for flag, value in (("--stack", args.stack), ("--local", args.local or args.local_state))
        if value
    ]
    if len(given) != 1:
        parser.print_usage(sys.stderr)
        print(
            "geft-check smoke: say where the stack is: --stack NAME (make smoke STACK=name) or --local "
            "(make smoke LOCAL=1)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        resources = locate(args.stack, region=args.region, profile=args.profile, local_state=args.local_state)
    except ResourceLookupError as error:
        print(f"geft-check smoke: {clean(error)}", file=sys.stderr)
        return EXIT_FAILED
    forbid_writes(resources.session)
    where = f"stack {args.stack}" if args.stack else f"the local stack {resources.stack_name}"
    print(f"smoke test of {where}: read-only but for one wrongly signed POST to its webhook")
    results = run_checks(resources)
    width = max(len(result.name) for result in results)
    for result in results:
        print(result.line(width))
    failed = [result.name for result in results if not result.passed]
    print(
        f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}"
        if failed
        else f"all {len(results)} checks passed"
    )
    return EXIT_FAILED if failed else EXIT_PASSED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geft-check smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help="a deployed stack's name (its outputs and resources)")
    parser.add_argument("--local", action="store_true", help="the running local stack (make local)")
    parser.add_argument("--local-state", type=Path, metavar="PATH", help="a local stack's state file")
    parser.add_argument("--region", help="AWS region of the deployed stack")
    parser.add_argument("--profile", help="AWS profile for the deployed stack")
    return parser


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _function_name(arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:QUALIFIER]`` -> NAME."""
    return arn.split(":function:", 1)[-1].split(":", 1)[0]


def _qualifier(arn: str) -> str | None:
    rest = arn.split(":function:", 1)[-1]
    return rest.split(":", 1)[1] if ":" in rest else None


def _invoked(arn: str) -> str:
    qualifier = _qualifier(arn)
    if qualifier is None or qualifier == "$LATEST":
        return f"{_function_name(arn)} ($LATEST)"
    if qualifier.isdigit():
        return f"{_function_name(arn)} version {qualifier} (pinned)"
    return f"{_function_name(arn)}:{qualifier}"
