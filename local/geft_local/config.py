"""The local stack's configuration: all optional environment variables, with documented defaults.

| Variable | Default | Meaning |
| --- | --- | --- |
| ``LOCAL_PORT`` | 3000 | the HTTP API's port on 127.0.0.1 (0: a free port) |
| ``WEBHOOK_SECRET`` | ``local-dev-webhook-secret`` | the signing secret (events/*.json are signed with it) |
| ``FLINKS_BASE_URL`` | unset | a Flinks (or sandbox) URL for the processor; unset: the built-in sandbox |
| ``FLINKS_SANDBOX_PORT`` | 0 (free) | the built-in sandbox's port |
| ``FLINKS_USERNAME`` / ``FLINKS_PASSWORD`` | ``sandbox-user`` / ``sandbox-pass`` | API credentials |
| ``DECISION_POLICY`` | the template's default | JSON policy; overrides the DecisionPolicy parameter |
| ``PARAM_<Name>`` | the template's default | any parameter, e.g. ``PARAM_StreamMaximumRetryAttempts=1`` |
| ``LOCAL_RUN_DIR`` | ``.local`` | per stack ``<port>/stack.json`` and ``<port>/logs/<Function>.log`` |
| ``LOCAL_SCHEDULE_SECONDS`` | unset (as written) | every ``rate(...)``'s interval; 0: only on SIGUSR1 |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geft.errors import PolicyError
from geft.policy import DecisionPolicy

from testkit.flinks import DEFAULT_PASSWORD, DEFAULT_USERNAME
from testkit.template import REPO_ROOT, TEMPLATE_PATH, parameter_values

DEFAULT_PORT = 3000
DEFAULT_WEBHOOK_SECRET = "local-dev-webhook-secret"  # noqa: S105 - the local stack's well-known test value
DEFAULT_RUN_DIR = REPO_ROOT / ".local"
PARAMETER_PREFIX = "PARAM_"
_SECONDS = re.compile(r"\d{1,6}(\.\d{1,3})?")


class LocalConfigError(ValueError):
    """The local stack's configuration is invalid; the message names every problem."""


@dataclass(frozen=True)
class LocalConfig:
    port: int = DEFAULT_PORT
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    flinks_base_url: str | None = None
    flinks_username: str = DEFAULT_USERNAME
    flinks_password: str = field(default=DEFAULT_PASSWORD, repr=False)
    sandbox_port: int = 0
    decision_policy: str | None = None
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    run_dir: Path = DEFAULT_RUN_DIR
    stack_name: str = "geft-local"
    template_path: Path = TEMPLATE_PATH
    schedule_seconds: float | None = None
    """Every ``rate(...)`` schedule's interval instead of its own (0: only on request); None: as written."""
    # CloudFormation's own checks of the parameters (MinValue and the like). Tests that compress time
    # (a one-second review timeout) turn them off; make local never does.
    check_parameter_constraints: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **defaults: Any) -> LocalConfig:
        """Read the variables above; ``defaults`` replaces this class's defaults (e.g. ``port=0``)."""
        problems: list[str] = []

        def port(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 0 <= int(raw) <= 65535:
                problems.append(f"{name} must be a port number (0-65535), got {raw!r}")
                return default
            return int(raw)

        def text(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        def seconds(name: str, default: float | None) -> float | None:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if _SECONDS.fullmatch(raw) is None:
                problems.append(f"{name} must be a number of seconds (0 or more, e.g. 5 or 0.5), got {raw!r}")
                return default
            return float(raw)

        base = cls(**defaults)
        base_url = environ.get("FLINKS_BASE_URL", "").strip().rstrip("/") or base.flinks_base_url
        if base_url and not base_url.startswith(("http://", "https://")):
            problems.append(f"FLINKS_BASE_URL must be an http(s) URL, got {base_url!r}")
        policy = environ.get("DECISION_POLICY", "").strip() or base.decision_policy
        overrides = dict(base.parameter_overrides)
        overrides |= {
            name[len(PARAMETER_PREFIX) :]: value
            for name, value in environ.items()
            if name.startswith(PARAMETER_PREFIX) and len(name) > len(PARAMETER_PREFIX)
        }
        config = cls(
            port=port("LOCAL_PORT", base.port),
            webhook_secret=text("WEBHOOK_SECRET", base.webhook_secret),
            flinks_base_url=base_url,
            flinks_username=text("FLINKS_USERNAME", base.flinks_username),
            flinks_password=text("FLINKS_PASSWORD", base.flinks_password),
            sandbox_port=port("FLINKS_SANDBOX_PORT", base.sandbox_port),
            decision_policy=policy,
            parameter_overrides=overrides,
            run_dir=Path(text("LOCAL_RUN_DIR", str(base.run_dir))),
            stack_name=base.stack_name,
            template_path=base.template_path,
            schedule_seconds=seconds("LOCAL_SCHEDULE_SECONDS", base.schedule_seconds),
            check_parameter_constraints=base.check_parameter_constraints,
        )
        if problems:
            raise LocalConfigError("; ".join(problems))
        return config

    def parameters(self, template: Mapping[str, Any]) -> dict[str, str]:
        """Template parameter values: defaults, then PARAM_* overrides, then DECISION_POLICY; each checked
        as CloudFormation would (AllowedValues, MinValue, MaxValue, AllowedPattern), the policies by the
        policy language itself, so a bad value stops the start instead of failing every invoke."""
        overrides = dict(self.parameter_overrides)
        if self.decision_policy is not None:
            overrides["DecisionPolicy"] = self.decision_policy
        declared = template.get("Parameters", {})
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise LocalConfigError(
                f"template has no parameter {', '.join(unknown)} (check the PARAM_<Name> variables)"
            )
        values = parameter_values(template, overrides)
        problems = [
            problem
            for name in overrides
            if self.check_parameter_constraints
            and (problem := parameter_problem(name, declared[name], values[name])) is not None
        ]
        for name, variable in (
            ("DecisionPolicy", "DECISION_POLICY"),
            ("ShadowDecisionPolicy", "PARAM_ShadowDecisionPolicy"),
        ):
            if values.get(name):
                try:
                    DecisionPolicy.from_json(values[name])
                except PolicyError as error:
                    problems.append(f"{variable} is not a valid policy: {error}")
        if problems:
            raise LocalConfigError("; ".join(problems))
        return values


# Variables `make local` sets or reads: a caller's own values for them must not leak into a stack.
_OURS = ("AWS_", PARAMETER_PREFIX, "LOCAL_", "FLINKS_", "WEBHOOK_SECRET", "DECISION_POLICY", "PYTHONPATH")


def make_local_environment(environ: Mapping[str, str], *, port: int, run_dir: Path) -> dict[str, str]:
    """The environment `make local` gives the stack (the Makefile's LOCAL_ENV: fake AWS credentials, no
    profile or endpoint, our code only), on ``port`` with its files under ``run_dir``, for a process
    that starts the stack the way `make local` does."""
    kept = {name: value for name, value in environ.items() if not name.startswith(_OURS)}
    return {
        **kept,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": "",
        "AWS_PROFILE": "",
        "POWERTOOLS_DEV": "false",
        "PYTHONPATH": "local:layers/shared",
        "LOCAL_PORT": str(port),
        "LOCAL_RUN_DIR": str(run_dir),
    }


def parameter_problem(name: str, spec: Mapping[str, Any], value: str) -> str | None:
    """What CloudFormation would refuse about ``value`` for the parameter ``spec``, or None."""
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(choice) for choice in allowed]:
        return f"PARAM_{name} must be one of {[str(choice) for choice in allowed]}, got {value!r}"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"PARAM_{name} must be a number, got {value!r}"
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return f"PARAM_{name} must be at least {spec['MinValue']}, got {value}"
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return f"PARAM_{name} must be at most {spec['MaxValue']}, got {value}"
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        return f"PARAM_{name} does not match {pattern}, got {value!r}"
    return None
