"""The receiver's configuration, read once from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from geft.settings import EnvReader

from webhook_receiver.edge import InvalidAllowListError, SourceAllowList

DEFAULT_MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ReceiverConfig:
    table_name: str
    webhook_secret_id: str
    secret_max_age_seconds: int
    replay_window_seconds: int
    max_clock_skew_seconds: int
    max_body_bytes: int
    retention_days: int
    webhook_path: str
    stuck_after_seconds: int
    function_name: str
    allowed_sources: SourceAllowList

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReceiverConfig:
        source = os.environ if environ is None else environ
        env = EnvReader(source)
        config = cls(
            table_name=env.text("TABLE_NAME"),
            webhook_secret_id=env.text("WEBHOOK_SECRET_ARN"),
            secret_max_age_seconds=env.integer("SECRET_CACHE_SECONDS", 300, maximum=3600),
            replay_window_seconds=env.integer("REPLAY_WINDOW_SECONDS", 86_400),
            max_clock_skew_seconds=env.integer("MAX_CLOCK_SKEW_SECONDS", 300),
            max_body_bytes=env.integer(
                "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1, maximum=6_000_000
            ),
            retention_days=env.integer("RETENTION_DAYS", 365, minimum=1),
            webhook_path=env.text("WEBHOOK_PATH", "/webhooks/flinks"),
            stuck_after_seconds=env.integer("STUCK_GUARANTEE_AGE_SECONDS", 900, minimum=60),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", "webhook-receiver"),
            allowed_sources=_allow_list(env, source),
        )
        env.raise_if_invalid("receiver")
        return config


def _allow_list(env: EnvReader, environ: Mapping[str, str]) -> SourceAllowList:
    """``ALLOWED_SOURCE_CIDRS``: comma-separated networks; unset or empty turns the check off."""
    try:
        return SourceAllowList.parse(environ.get("ALLOWED_SOURCE_CIDRS", ""))
    except InvalidAllowListError as error:
        env.problems.append(f"ALLOWED_SOURCE_CIDRS: {error}")
        return SourceAllowList()
