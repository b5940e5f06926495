"""Capture everything the functions print or log while this package's tests run, for one scan.

Three taps, so that nothing a Lambda would ship to CloudWatch escapes: the Powertools logger's records
rendered by its own JSON formatter (exactly the lines Lambda prints), every record reaching the root
logger (botocore, urllib3, anything else) with its extra fields, and the tests' stdout/stderr (where
Powertools metrics print their EMF documents).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class CapturedLogs:
    chunks: list[str] = field(default_factory=list)
    streams: list[io.StringIO] = field(default_factory=list)
    sensitive: dict[str, set[str]] = field(default_factory=dict)
    flows: set[str] = field(default_factory=set)

    def text(self) -> str:
        return "\n".join([*self.chunks, *(stream.getvalue() for stream in self.streams)])

    def register(self, category: str, *values: str) -> None:
        """Values that must never appear in any log line (empty ones are ignored)."""
        self.sensitive.setdefault(category, set()).update(value for value in values if value)


class _EverythingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record) + " " + repr(vars(record))


@pytest.fixture(scope="package")
def captured_logs() -> Iterator[CapturedLogs]:
    from geft.observability import logger

    captured = CapturedLogs()
    powertools_stream, root_stream = io.StringIO(), io.StringIO()
    powertools_handler = logging.StreamHandler(powertools_stream)
    powertools_handler.setFormatter(logger.registered_formatter)
    root_handler = logging.StreamHandler(root_stream)
    root_handler.setFormatter(_EverythingFormatter())
    root = logging.getLogger()
    previous_level = root.level
    logger._logger.addHandler(powertools_handler)
    root.addHandler(root_handler)
    # INFO: stricter than a Lambda's default root level (WARNING). Not DEBUG: botocore's debug
    # records print whole API responses (a GetSecretValue's SecretString), which no deployment enables.
    root.setLevel(logging.INFO)
    captured.streams += [powertools_stream, root_stream]
    try:
        yield captured
    finally:
        root.setLevel(previous_level)
        root.removeHandler(root_handler)
        logger._logger.removeHandler(powertools_handler)


@pytest.fixture(autouse=True)
def _printed(captured_logs: CapturedLogs, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    out, err = capsys.readouterr()
    captured_logs.chunks += [out, err]
