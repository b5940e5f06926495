"""``make contract``: Flinks' answers (UAT, or any base URL) next to what this code reads from them.

With the credentials in the environment and a session id you give, it calls authorize, then
``GET /status`` and ``GET /details`` of that session, and prints for each answer the fields the code
reads (learnt from its own parsers: ``geft_checks.shapes``) beside the JSON types Flinks sent, the
fields Flinks sent that nothing reads, and the shape of the whole answer (types only: no value is
printed, except the documented words the code compares, such as a risk level, through geft.masking).

Read-only by construction: the client is ``FlinksClient(read_only=True)``, which refuses a confirm
before anything is sent, whoever asks for one.

Environment (the names the functions use): ``FLINKS_BASE_URL``, ``FLINKS_USERNAME``, ``FLINKS_PASSWORD``
(required); ``FLINKS_CLIENT_ID``, ``FLINKS_API_KEY``, ``FLINKS_CREDENTIAL_TRANSPORT`` (basic or form),
``FLINKS_TRUST_ENV``, ``HTTP_CONNECT_TIMEOUT_SECONDS``, ``HTTP_READ_TIMEOUT_SECONDS``,
``FLINKS_MAX_RESPONSE_BYTES`` (optional).

Exit codes: 0 the answers give the code what it needs; 1 a field the code needs is missing or of
another type, a field it reads came as a type it cannot use, or Flinks could not be asked (credentials
refused, unknown session, an answer that is not JSON); 2 bad usage (a variable missing, a bad session id).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from geft.errors import ConfigError, FlinksError, PolicyError
from geft.flinks_client import CallObservation, FlinksClient, FlinksCredentials
from geft.flinks_settings import FlinksSettings
from geft.policy import DEFAULT_POLICY_JSON, DecisionPolicy
from geft.settings import EnvReader
from geft_ops.render import clean, table

from geft_checks.shapes import EndpointReport, Expectation, Verdict, compare, expected_fields

EXIT_MATCHES, EXIT_DIFFERS, EXIT_USAGE = 0, 1, 2
CALL_BUDGET_SECONDS: Final = 60.0
_SESSION_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# The functions name their credentials' secret; the contract reads the credentials themselves instead.
_NO_SECRET: Final = {"FLINKS_CREDENTIALS_SECRET_ARN": "(credentials from the environment)"}


@dataclass(frozen=True)
class ContractSettings:
    """How to reach Flinks (read as the functions read it) and whom to authorize as."""

    flinks: FlinksSettings
    credentials: FlinksCredentials

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> ContractSettings:
        """Every missing or bad variable named in one ``ConfigError``."""
        env = EnvReader({**environ, **_NO_SECRET})
        flinks = FlinksSettings.read(env)
        username, password = env.text("FLINKS_USERNAME"), env.text("FLINKS_PASSWORD")
        client_id, api_key = env.optional_text("FLINKS_CLIENT_ID"), env.optional_text("FLINKS_API_KEY")
        env.raise_if_invalid("make contract")
        return cls(flinks, FlinksCredentials(username, password, client_id, api_key))


@dataclass
class ContractRun:
    """What was asked and what came back."""

    calls: list[CallObservation] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


def ask_flinks(settings: ContractSettings, session_id: str) -> ContractRun:
    """authorize, ``GET /status``, ``GET /details``, with a client that cannot confirm."""
    run = ContractRun()
    client = FlinksClient(
        settings.flinks.base_url,
        lambda: settings.credentials,
        credential_transport=settings.flinks.credential_transport,
        connect_timeout=settings.flinks.connect_timeout_seconds,
        read_timeout=settings.flinks.read_timeout_seconds,
        max_response_bytes=settings.flinks.max_response_bytes,
        trust_env=settings.flinks.trust_env,
        on_call=run.calls.append,
        read_only=True,
    )
    try:
        session = client.for_session(session_id, deadline=time.monotonic() + CALL_BUDGET_SECONDS)
        run.answers["status"] = session.status()
        run.answers["details"] = session.details()
    except FlinksError as error:
        run.error = str(error)
    finally:
        client.close()
    return run


def report(
    run: ContractRun, expectation: Expectation, policy: DecisionPolicy
) -> tuple[list[EndpointReport], list[str]]:
    """Each answer compared with what the code reads, and the problems that make the check fail."""
    reports = [
        compare(endpoint, run.answers[endpoint], expectation, policy_reads=policy.fields_read)
        for endpoint in ("status", "details")
        if endpoint in run.answers
    ]
    problems = [problem for endpoint_report in reports for problem in endpoint_report.failures]
    if run.error is not None:
        problems.insert(0, run.error)
    return reports, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geft-check contract", description=__doc__.splitlines()[0])
    parser.add_argument("--session", required=True, metavar="ID", help="a session id Flinks knows (a UUID)")
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the decision policy whose facts must be present (default: the shipped policy)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_MATCHES
    try:
        settings = ContractSettings.read(os.environ)
        if not _SESSION_ID.fullmatch(args.session.strip()):
            raise ConfigError(
                f"--session {args.session!r} is not a session id (a UUID); make contract SESSION=<id>"
            )
        policy = DecisionPolicy.from_json(
            args.policy.read_text(encoding="utf-8") if args.policy else DEFAULT_POLICY_JSON
        )
    except (ConfigError, PolicyError, OSError) as error:
        print(f"geft-check contract: {clean(error)}", file=sys.stderr)
        return EXIT_USAGE
    session_id = args.session.strip().lower()
    print(
        f"Flinks contract check of {settings.flinks.base_url}, session {session_id}: read-only "
        "(this client cannot send a confirm)"
    )
    print(f"policy {policy.identity.label()} reads: {', '.join(sorted(policy.fields_read)) or 'nothing'}")
    run = ask_flinks(settings, session_id)
    print("calls: " + ", ".join(_call(observation) for observation in run.calls))
    reports, problems = report(run, expected_fields(), policy)
    for endpoint_report in reports:
        print()
        print(render(endpoint_report))
    print()
    if problems:
        print(f"result: {len(problems)} problem(s) the code cannot work with:")
        for problem in problems:
            print(f"  - {clean(problem)}")
        return EXIT_DIFFERS
    notes = [
        f"/{r.endpoint} {f.expected.name} {f.verdict.value}"
        for r in reports
        for f in r.fields
        if f.verdict is not Verdict.OK
    ]
    tail = f" ({len(notes)} difference(s) nothing needs: {'; '.join(notes)})" if notes else ""
    print(f"result: the answers give the code what it needs{tail}")
    return EXIT_MATCHES


def render(endpoint_report: EndpointReport) -> str:
    rows = [
        {
            "field": item.expected.name,
            "code reads": "/".join(sorted(item.expected.types)),
            "Flinks sent": item.sent or "absent",
            "for": f"{item.expected.purpose}: {', '.join(item.expected.feeds)}",
            "needed": "yes" if item.required else "",
            "verdict": item.verdict.value + (f" {item.shown_value}" if item.shown_value else ""),
        }
        for item in endpoint_report.fields
    ]
    columns = ("field", "code reads", "Flinks sent", "for", "needed", "verdict")
    lines = [f"GET /{endpoint_report.endpoint}", _indented(table(rows, columns))]
    for computed in endpoint_report.computed:
        inputs = " and ".join(".".join(path) for path in computed.computed.inputs)
        needed = ", needed" if computed.required else ""
        state = "known" if computed.known else "unknown"
        lines.append(f"  {computed.computed.output} (computed from {inputs}{needed}): {state}")
    if endpoint_report.read_elsewhere:
        lines.append("  read from another shape: " + _paths(endpoint_report.read_elsewhere))
    if endpoint_report.ignored:
        count = len(endpoint_report.ignored)
        lines.append(f"  sent, read by nothing ({count}): " + _paths(endpoint_report.ignored))
    lines.append("  shape sent: " + json.dumps(endpoint_report.sent_shape, separators=(", ", ": ")))
    return "\n".join(lines)


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _paths(paths: Sequence[tuple[str, ...]]) -> str:
    return clean(", ".join(".".join(path) for path in paths))


def _call(observation: CallObservation) -> str:
    answer = observation.status_code if observation.status_code is not None else observation.status_class
    return f"{observation.operation} {answer} ({observation.latency_ms:.0f} ms)"
