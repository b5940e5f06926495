"""Secrets Manager adapter: JSON secrets cached per container.

The client is created on first use (``geft.aws``), never at import, so importing this module costs
nothing. It calls ``GetSecretValue`` directly rather than through Powertools parameters, whose package
imports every provider (AppConfig, SSM, DynamoDB) and whose default client starts a second boto3
session: together about 150 ms of the receiver's cold start (docs/performance.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from geft.aws import AwsClients, provider
from geft.errors import SecretError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class JsonSecret:
    """One JSON secret, cached for ``max_age_seconds``; ``refresh()`` re-reads it at most once per
    ``min_refresh_interval_seconds`` so a flood of bad requests cannot hammer Secrets Manager.

    Thread-safe: threads that find the cache empty or stale at the same time share one read.
    ``client``: the container's ``AwsClients`` (the client is made at the first read, where its failure
    is a ``SecretError``), or a ready Secrets Manager client.
    """

    def __init__(
        self,
        secret_id: str,
        *,
        max_age_seconds: int,
        min_refresh_interval_seconds: float = 5.0,
        client: SecretsManagerClient | AwsClients,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._max_age_seconds = max_age_seconds
        self._min_refresh_interval = min_refresh_interval_seconds
        self._secretsmanager = provider(client, AwsClients.secretsmanager)
        self._monotonic = monotonic
        self._last_forced_fetch: float | None = None
        self._value: object = None
        self._expires_at = 0.0
        self._lock = threading.Lock()  # guards the refresh rate limit
        self._fetch_lock = threading.Lock()  # one read at a time; waiters reuse its result

    def get(self) -> Mapping[str, Any]:
        value = self._fresh_value()
        if value is None:
            with self._fetch_lock:
                value = self._fresh_value()
                if value is None:
                    value = self._fetch()
        return _as_object(value, self._secret_id)

    def refresh(self) -> Mapping[str, Any] | None:
        """Re-read the secret now, or None when it was re-read too recently to try again."""
        with self._lock:
            now = self._monotonic()
            if (
                self._last_forced_fetch is not None
                and now - self._last_forced_fetch < self._min_refresh_interval
            ):
                return None
            self._last_forced_fetch = now
        with self._fetch_lock:
            return _as_object(self._fetch(), self._secret_id)

    def _fresh_value(self) -> object:
        if self._value is not None and self._monotonic() < self._expires_at:
            return self._value
        return None

    def _fetch(self) -> object:
        """Read and parse the secret, and cache what it holds (any JSON but null, as Powertools did)."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with the client

        try:
            response = self._secretsmanager().get_secret_value(SecretId=self._secret_id)
        except (BotoCoreError, ClientError) as error:
            raise SecretError(f"secret {self._secret_id} could not be read") from error
        fetched_at = self._monotonic()
        raw = response.get("SecretString", response.get("SecretBinary"))
        try:
            value = json.loads(raw) if isinstance(raw, str | bytes) else None
        except (ValueError, RecursionError) as error:
            raise SecretError(f"secret {self._secret_id} is not valid JSON") from error
        if value is not None:
            self._value, self._expires_at = value, fetched_at + self._max_age_seconds
        return value


def _as_object(value: object, secret_id: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SecretError(f"secret {secret_id} must be a JSON object")
    return value


@dataclass(frozen=True)
class WebhookSecrets:
    """``{"current": "...", "previous": "..."}``: ``previous`` lets a rotation lose no delivery."""

    current: str
    previous: str | None = None

    def __repr__(self) -> str:
        return f"WebhookSecrets(current=***, previous={'***' if self.previous else None})"

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.current, self.previous) if self.previous else (self.current,)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> WebhookSecrets:
        current = document.get("current")
        previous = document.get("previous")
        if not isinstance(current, str) or not current:
            raise SecretError('webhook secret must be JSON {"current": "...", "previous": "..."}')
        if previous is not None and not isinstance(previous, str):
            raise SecretError('webhook secret "previous" must be a string when present')
        return cls(current=current, previous=previous or None)
