"""Capture everything the functions print or log while this package's tests run, for one scan.

Three taps, so that nothing a Lambda would ship to CloudWatch escapes: the Powertools logger's records
rendered by its own JSON formatter (exactly the lines Lambda prints), every record reaching the root
logger (botocore, urllib3, anything else) with its extra fields, and the tests' stdout/stderr (where
Powertools metrics print their EMF documents).

Everything runs at DEBUG: POWERTOOLS_LOG_LEVEL=DEBUG for the functions' logger and the root logger at
DEBUG (what Lambda's ApplicationLogLevel=DEBUG does). geft.observability pins the AWS SDK's and the
HTTP libraries' loggers at WARNING, so their debug records (a GetSecretValue response, request lines)
never reach a handler. Only the test harness's own loggers (moto and the HTTP mocking it uses, which
do not exist in Lambda) are left out of the scan.
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


_HARNESS_LOGGERS = ("moto", "responses", "werkzeug")


class _EverythingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record) + " " + repr(vars(record))


def _not_harness(record: logging.LogRecord) -> bool:
    return not record.name.startswith(_HARNESS_LOGGERS)


@pytest.fixture(scope="package")
def captured_logs() -> Iterator[CapturedLogs]:
    from geft.observability import logger

    captured = CapturedLogs()
    powertools_stream, root_stream = io.StringIO(), io.StringIO()
    powertools_handler = logging.StreamHandler(powertools_stream)
    powertools_handler.setFormatter(logger.registered_formatter)
    root_handler = logging.StreamHandler(root_stream)
    root_handler.setFormatter(_EverythingFormatter())
    root_handler.addFilter(_not_harness)
    root = logging.getLogger()
    previous_root_level, previous_level = root.level, logger.log_level
    logger._logger.addHandler(powertools_handler)
    root.addHandler(root_handler)
    with pytest.MonkeyPatch.context() as patch:
        # The level a function reads at start (the logger was built at import, so set it the same way).
        patch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
        logger.setLevel("DEBUG")
        root.setLevel(logging.DEBUG)
        captured.streams += [powertools_stream, root_stream]
        try:
            yield captured
        finally:
            root.setLevel(previous_root_level)
            logger.setLevel(previous_level)
            root.removeHandler(root_handler)
            logger._logger.removeHandler(powertools_handler)


@pytest.fixture(autouse=True)
def _printed(captured_logs: CapturedLogs, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    out, err = capsys.readouterr()
    captured_logs.chunks += [out, err]
