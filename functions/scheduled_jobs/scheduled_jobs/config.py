"""Configuration of the scheduled jobs, read once from the environment the template sets."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from geft.flinks_settings import FlinksSettings
from geft.repository import GuaranteeRepository
from geft.settings import (
    TableSettings,
    read_config,
    review_fallback_decision,
    review_timeout_seconds,
    secret_max_age_seconds,
)


class _TableJobConfig(Protocol):
    @property
    def table(self) -> TableSettings: ...


_JobConfig = TypeVar("_JobConfig", bound=_TableJobConfig)


def table_job_dependencies(
    from_env: Callable[[], _JobConfig],
) -> Callable[[], tuple[_JobConfig, GuaranteeRepository]]:
    """A job's composition root, built on its first invoke and kept for the container's life: its
    configuration and the repository that acts as the job."""

    @functools.cache
    def dependencies() -> tuple[_JobConfig, GuaranteeRepository]:
        config = from_env()
        return config, GuaranteeRepository.for_function(config.table)

    return dependencies


@dataclass(frozen=True)
class ReviewTimeoutConfig:
    table: TableSettings
    fallback_decision: str
    review_timeout_seconds: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReviewTimeoutConfig:
        return read_config(
            "review timeout",
            environ,
            lambda env: cls(
                table=TableSettings.read(env, function_name="review-timeout"),
                fallback_decision=review_fallback_decision(env),
                review_timeout_seconds=review_timeout_seconds(env),
            ),
        )


@dataclass(frozen=True)
class ReconcilerConfig:
    table: TableSettings  # the template sets no STUCK_GUARANTEE_AGE_SECONDS here: the default stands
    flinks: FlinksSettings
    secret_max_age_seconds: int
    retry_seconds: int
    max_attempts: int
    batch_limit: int
    workers: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReconcilerConfig:
        return read_config(
            "reconciler",
            environ,
            lambda env: cls(
                table=TableSettings.read(env, function_name="reconciler"),
                flinks=FlinksSettings.read(env),
                secret_max_age_seconds=secret_max_age_seconds(env),
                retry_seconds=env.integer("RECONCILE_RETRY_SECONDS", 900, minimum=1),
                max_attempts=env.integer("RECONCILE_MAX_ATTEMPTS", 96, minimum=1),
                batch_limit=env.integer("RECONCILE_BATCH_LIMIT", 100, minimum=1, maximum=1000),
                workers=env.integer("RECONCILE_WORKERS", 8, minimum=1, maximum=32),
            ),
        )


@dataclass(frozen=True)
class SweeperConfig:
    table: TableSettings
    batch_limit: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SweeperConfig:
        return read_config(
            "sweeper",
            environ,
            lambda env: cls(
                table=TableSettings.read(env, function_name="sweeper"),
                batch_limit=env.integer("SWEEP_BATCH_LIMIT", 500, minimum=1, maximum=5000),
            ),
        )
