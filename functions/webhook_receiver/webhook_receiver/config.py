"""The receiver's configuration, read once from the environment the template sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from geft.settings import EnvReader, TableSettings, read_config, secret_max_age_seconds, webhook_path

from webhook_receiver.edge import InvalidAllowListError, SourceAllowList

DEFAULT_MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ReceiverConfig:
    table: TableSettings
    webhook_secret_id: str
    secret_max_age_seconds: int
    replay_window_seconds: int
    max_clock_skew_seconds: int
    max_body_bytes: int
    webhook_path: str
    allowed_sources: SourceAllowList

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReceiverConfig:
        return read_config("receiver", environ, cls._read)

    @classmethod
    def _read(cls, env: EnvReader) -> ReceiverConfig:
        return cls(
            table=TableSettings.read(env, function_name="webhook-receiver"),
            webhook_secret_id=env.text("WEBHOOK_SECRET_ARN"),
            secret_max_age_seconds=secret_max_age_seconds(env),
            replay_window_seconds=env.integer("REPLAY_WINDOW_SECONDS", 86_400),
            max_clock_skew_seconds=env.integer("MAX_CLOCK_SKEW_SECONDS", 300),
            max_body_bytes=env.integer(
                "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1, maximum=6_000_000
            ),
            webhook_path=webhook_path(env),
            allowed_sources=_allow_list(env),
        )


def _allow_list(env: EnvReader) -> SourceAllowList:
    """``ALLOWED_SOURCE_CIDRS``: comma-separated networks; unset or empty turns the check off."""
    try:
        return SourceAllowList.parse(env.raw("ALLOWED_SOURCE_CIDRS"))
    except InvalidAllowListError as error:
        env.problems.append(f"ALLOWED_SOURCE_CIDRS: {error}")
        return SourceAllowList()
