"""Helpers for the functions' typed, frozen configuration objects.

Each function reads its environment exactly once through these helpers and fails fast with every
missing or bad variable named, not just the first.
"""

from __future__ import annotations

from collections.abc import Mapping

from geft.errors import ConfigError


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

    def optional_text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self._environ.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer, got {raw!r}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.problems.append(f"{name} must be between {minimum}{upper}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._environ.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def choice(self, name: str, default: str, allowed: frozenset[str]) -> str:
        value = self._environ.get(name, default).strip() or default
        if value not in allowed:
            self.problems.append(f"{name} must be one of {sorted(allowed)}, got {value!r}")
        return value

    def raise_if_invalid(self, what: str) -> None:
        if self.problems:
            raise ConfigError(f"invalid {what} configuration: " + "; ".join(self.problems))
