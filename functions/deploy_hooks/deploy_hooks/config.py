"""The pre-traffic hook's configuration, read once from the environment the template sets."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from geft.settings import EnvReader, read_config, webhook_path


@dataclass(frozen=True)
class PreTrafficHookConfig:
    target_function_arn: str
    """The version being deployed (``WebhookReceiverFunction.Version``), qualified."""
    webhook_path: str
    probe_source_ip: str
    """An address the receiver's allow-list admits, so the probe reaches the signature check."""
    attempts: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PreTrafficHookConfig:
        return read_config("pre-traffic hook", environ, cls._read)

    @classmethod
    def _read(cls, env: EnvReader) -> PreTrafficHookConfig:
        config = cls(
            target_function_arn=env.text("TARGET_FUNCTION_ARN"),
            webhook_path=webhook_path(env),
            probe_source_ip=env.text("PROBE_SOURCE_IP", "192.0.2.10"),
            attempts=env.integer("PROBE_ATTEMPTS", 2, minimum=1, maximum=5),
        )
        if config.target_function_arn and config.target_function_arn.count(":") != 7:
            env.problems.append("TARGET_FUNCTION_ARN must be a qualified function ARN (a version)")
        try:
            ipaddress.ip_address(config.probe_source_ip)
        except ValueError:
            env.problems.append(f"PROBE_SOURCE_IP must be an IP address, got {config.probe_source_ip!r}")
        return config
