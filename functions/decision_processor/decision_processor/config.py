"""The processor's configuration, read once from the environment the template sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from geft.flinks_settings import FlinksSettings
from geft.settings import (
    EnvReader,
    TableSettings,
    read_config,
    review_timeout_seconds,
    secret_max_age_seconds,
)


@dataclass(frozen=True)
class ProcessorConfig:
    table: TableSettings
    flinks: FlinksSettings
    decision_policy_json: str
    secret_max_age_seconds: int
    pool_size: int
    # Unused Flinks tokens kept per container, minted in the background (0 turns the pool off).
    token_pool_size: int
    # A pooled token is discarded this long before its expires_in runs out.
    token_pool_margin_seconds: float
    # Kept back from the invocation deadline for the final state write (or the release of a claim).
    finish_reserve_seconds: float
    review_timeout_seconds: int
    reconcile_delay_seconds: int
    # How long a confirm whose outcome is unknown may still be applied at Flinks before /details is
    # trusted to show it; at least the read timeout, by default twice it.
    confirm_settle_seconds: float
    shadow_policy_json: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProcessorConfig:
        return read_config("processor", environ, cls._read)

    @classmethod
    def _read(cls, env: EnvReader) -> ProcessorConfig:
        flinks = FlinksSettings.read(env)
        read_timeout = flinks.read_timeout_seconds
        settle = env.number("CONFIRM_SETTLE_SECONDS", 2 * read_timeout, minimum=0.1)
        if settle < read_timeout:
            env.problems.append(
                f"CONFIRM_SETTLE_SECONDS ({settle}) must be at least HTTP_READ_TIMEOUT_SECONDS "
                f"({read_timeout}): a confirm can still be applied that long after it was sent"
            )
        return cls(
            table=TableSettings.read(env, function_name="decision-processor"),
            flinks=flinks,
            decision_policy_json=env.text("DECISION_POLICY"),
            secret_max_age_seconds=secret_max_age_seconds(env),
            pool_size=env.integer("PROCESSOR_POOL_SIZE", 16, minimum=1, maximum=64),
            token_pool_size=env.integer("FLINKS_TOKEN_POOL_SIZE", 4, minimum=0, maximum=16),
            token_pool_margin_seconds=env.number("FLINKS_TOKEN_POOL_MARGIN_SECONDS", 30.0, minimum=1.0),
            finish_reserve_seconds=env.number("FINISH_RESERVE_SECONDS", 3.0, minimum=0.5),
            review_timeout_seconds=review_timeout_seconds(env),
            reconcile_delay_seconds=env.integer("RECONCILE_DELAY_SECONDS", 900, minimum=0),
            confirm_settle_seconds=settle,
            shadow_policy_json=env.optional_text("SHADOW_DECISION_POLICY"),
        )
