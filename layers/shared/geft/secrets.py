"""Secrets Manager adapter: JSON secrets cached per container (Powertools parameters).

The client is created on first use, never at import, so importing this module costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geft.errors import SecretError


class JsonSecret:
    """One JSON secret, cached for ``max_age_seconds``; ``refresh()`` re-reads it at most once per
    ``min_refresh_interval_seconds`` so a flood of bad requests cannot hammer Secrets Manager."""

    def __init__(
        self,
        secret_id: str,
        *,
        max_age_seconds: int,
        min_refresh_interval_seconds: float = 5.0,
        provider: Any | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._max_age_seconds = max_age_seconds
        self._min_refresh_interval = min_refresh_interval_seconds
        self._provider = provider
        self._monotonic = monotonic
        self._last_forced_fetch: float | None = None
        self._lock = threading.Lock()

    def get(self) -> Mapping[str, Any]:
        return self._fetch(force=False)

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
        return self._fetch(force=True)

    def _fetch(self, *, force: bool) -> Mapping[str, Any]:
        from aws_lambda_powertools.utilities.parameters.exceptions import (  # noqa: PLC0415 - cold start
            GetParameterError,
            TransformParameterError,
        )

        try:
            value = self._secrets_provider().get(
                self._secret_id, max_age=self._max_age_seconds, transform="json", force_fetch=force
            )
        except TransformParameterError as error:
            raise SecretError(f"secret {self._secret_id} is not valid JSON") from error
        except GetParameterError as error:
            raise SecretError(f"secret {self._secret_id} could not be read") from error
        if not isinstance(value, dict):
            raise SecretError(f"secret {self._secret_id} must be a JSON object")
        return value

    def _secrets_provider(self) -> Any:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

            self._provider = SecretsProvider()
        return self._provider


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
