"""The audit trail function's configuration, read once from the environment the template sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from geft.settings import read_config, review_fallback_decision


@dataclass(frozen=True)
class AuditTrailConfig:
    audit_table_name: str
    audit_retention_days: int
    review_topic_arn: str | None
    ops_cli_target: str  # how the decide command in a notice names the stack: --stack NAME, or --local
    review_fallback_decision: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditTrailConfig:
        return read_config(
            "audit trail",
            environ,
            lambda env: cls(
                audit_table_name=env.text("AUDIT_TABLE_NAME"),
                audit_retention_days=env.integer("AUDIT_RETENTION_DAYS", 2557, minimum=1),
                review_topic_arn=env.optional_text("REVIEW_TOPIC_ARN"),
                ops_cli_target=env.text("OPS_CLI_TARGET", "--stack flinks-geft"),
                review_fallback_decision=review_fallback_decision(env),
            ),
        )
