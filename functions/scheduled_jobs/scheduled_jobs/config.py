"""Configuration of the scheduled jobs, read once from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from geft.flinks_settings import FlinksSettings
from geft.settings import EnvReader

REVIEW_FALLBACK_DECISIONS = frozenset({"accept", "reject"})


@dataclass(frozen=True)
class ReviewTimeoutConfig:
    table_name: str
    retention_days: int
    fallback_decision: str
    review_timeout_seconds: int
    stuck_after_seconds: int
    function_name: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReviewTimeoutConfig:
        env = EnvReader(os.environ if environ is None else environ)
        config = cls(
            table_name=env.text("TABLE_NAME"),
            retention_days=env.integer("RETENTION_DAYS", 365, minimum=1),
            fallback_decision=env.choice("REVIEW_FALLBACK_DECISION", "reject", REVIEW_FALLBACK_DECISIONS),
            review_timeout_seconds=env.integer("REVIEW_TIMEOUT_SECONDS", 300, minimum=1),
            stuck_after_seconds=env.integer("STUCK_GUARANTEE_AGE_SECONDS", 900, minimum=60),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", "review-timeout"),
        )
        env.raise_if_invalid("review timeout")
        return config


@dataclass(frozen=True)
class ReconcilerConfig:
    table_name: str
    retention_days: int
    flinks: FlinksSettings
    secret_max_age_seconds: int
    retry_seconds: int
    max_attempts: int
    batch_limit: int
    workers: int
    function_name: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReconcilerConfig:
        env = EnvReader(os.environ if environ is None else environ)
        config = cls(
            table_name=env.text("TABLE_NAME"),
            retention_days=env.integer("RETENTION_DAYS", 365, minimum=1),
            flinks=FlinksSettings.read(env),
            secret_max_age_seconds=env.integer("SECRET_CACHE_SECONDS", 300, maximum=3600),
            retry_seconds=env.integer("RECONCILE_RETRY_SECONDS", 900, minimum=1),
            max_attempts=env.integer("RECONCILE_MAX_ATTEMPTS", 96, minimum=1),
            batch_limit=env.integer("RECONCILE_BATCH_LIMIT", 100, minimum=1, maximum=1000),
            workers=env.integer("RECONCILE_WORKERS", 8, minimum=1, maximum=32),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", "reconciler"),
        )
        env.raise_if_invalid("reconciler")
        return config


@dataclass(frozen=True)
class SweeperConfig:
    table_name: str
    retention_days: int
    stuck_after_seconds: int
    batch_limit: int
    function_name: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SweeperConfig:
        env = EnvReader(os.environ if environ is None else environ)
        config = cls(
            table_name=env.text("TABLE_NAME"),
            retention_days=env.integer("RETENTION_DAYS", 365, minimum=1),
            stuck_after_seconds=env.integer("STUCK_GUARANTEE_AGE_SECONDS", 900, minimum=60),
            batch_limit=env.integer("SWEEP_BATCH_LIMIT", 500, minimum=1, maximum=5000),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", "sweeper"),
        )
        env.raise_if_invalid("sweeper")
        return config
