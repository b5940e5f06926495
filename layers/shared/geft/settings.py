"""Helpers for the functions' typed, frozen configuration objects.

Each function reads its environment exactly once through these helpers and fails fast with every
missing or bad variable named, not just the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from geft.errors import ConfigError

_Config = TypeVar("_Config")
_Number = TypeVar("_Number", int, float)


class EnvReader:
    """Collects problems while reading so one ConfigError can name all of them."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name, default)
        if value is None or not value.strip():
            self.problems.append(f"{name} is required")
            return ""
        return value.strip()

    def raw(self, name: str) -> str:
        """The variable as set (empty where unset), for a caller that parses it itself."""
        return self._environ.get(name, "")

    def optional_text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._parsed(name, int, "an integer")
        if value is None:
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.problems.append(f"{name} must be between {minimum}{upper}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._parsed(name, float, "a number")
        if value is None:
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def _parsed(self, name: str, parse: Callable[[str], _Number], kind: str) -> _Number | None:
        """The variable parsed; None where it is unset, empty or (a problem noted) not ``kind``."""
        raw = self._environ.get(name)
        if raw is None or not raw.strip():
            return None
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name} must be {kind}, got {raw!r}")
            return None

    def choice(self, name: str, default: str, allowed: frozenset[str]) -> str:
        value = self._environ.get(name, default).strip() or default
        if value not in allowed:
            self.problems.append(f"{name} must be one of {sorted(allowed)}, got {value!r}")
        return value

    def raise_if_invalid(self, what: str) -> None:
        if self.problems:
            raise ConfigError(f"invalid {what} configuration: " + "; ".join(self.problems))


def read_config(
    what: str, environ: Mapping[str, str] | None, build: Callable[[EnvReader], _Config]
) -> _Config:
    """``build`` the ``what`` configuration from ``environ`` (the process's by default); one ConfigError
    names every problem it met."""
    env = EnvReader(os.environ if environ is None else environ)
    config = build(env)
    env.raise_if_invalid(what)
    return config


@dataclass(frozen=True)
class TableSettings:
    """The guarantees table as every function that writes it reads it (the repository's arguments)."""

    table_name: str
    retention_days: int
    stuck_after_seconds: int
    function_name: str

    @classmethod
    def read(cls, env: EnvReader, *, function_name: str) -> TableSettings:
        """``function_name``: the actor's name where ``AWS_LAMBDA_FUNCTION_NAME`` is not set."""
        return cls(
            table_name=env.text("TABLE_NAME"),
            retention_days=env.integer("RETENTION_DAYS", 365, minimum=1),
            stuck_after_seconds=env.integer("STUCK_GUARANTEE_AGE_SECONDS", 900, minimum=60),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", function_name),
        )


# Variables that more than one function reads, with one meaning: one reading each, so the functions
# cannot disagree on a default or a bound.


def secret_max_age_seconds(env: EnvReader) -> int:
    """``SECRET_CACHE_SECONDS`` (SecretCacheSeconds): how long a container uses a secret it read."""
    return env.integer("SECRET_CACHE_SECONDS", 300, maximum=3600)


def review_timeout_seconds(env: EnvReader) -> int:
    """``REVIEW_TIMEOUT_SECONDS`` (ReviewTimeoutSeconds): how long a review waits for a person."""
    return env.integer("REVIEW_TIMEOUT_SECONDS", 300, minimum=1)


def webhook_path(env: EnvReader) -> str:
    """``WEBHOOK_PATH``: the receiver's route, which the pre-traffic hook probes."""
    return env.text("WEBHOOK_PATH", "/webhooks/flinks")


def review_fallback_decision(env: EnvReader) -> str:
    """``REVIEW_FALLBACK_DECISION`` (ReviewFallbackDecision): what a review nobody decided in time
    becomes; the review-timeout job applies it and the audit trail's notice announces it."""
    return env.choice("REVIEW_FALLBACK_DECISION", "reject", frozenset({"accept", "reject"}))
